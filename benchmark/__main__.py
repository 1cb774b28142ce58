"""The ``rbench`` command (its console script) and ``python -m rbench``, for where no console script was installed
(a ``pip --target`` install, as the GPU check script makes on a device machine)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line. It is imported here, not by the console script itself, so that Ctrl-C while its
    modules load (half a second) is the one line it is afterwards, not a traceback of the import."""
    try:
        from rbench.cli import main as command_line

        command_line()  # it makes Ctrl-C in a command one line itself; this covers its import and its exit
    except KeyboardInterrupt:
        print("rbench: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
