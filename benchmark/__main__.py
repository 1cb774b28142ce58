"""``python -m rbench``: the ``rbench`` command, for where no console script was installed (a ``pip --target``
install, as the GPU check script makes on a device machine)."""

from rbench.cli import main

main()
