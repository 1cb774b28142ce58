"""An example third-party rbench plugin: the momentum iterative fast gradient sign method.

rbench finds this module through the entry point ``mifgsm = "rbench_example_mifgsm"`` of the group ``rbench``
(see ``pyproject.toml``) and calls the hook below, which returns the attack plugin objects.
"""

from __future__ import annotations

import rbench
from rbench_example_mifgsm.attack import MiFgsm, MiFgsmParams

__version__ = "0.1.0"
__all__ = ["MiFgsm", "MiFgsmParams", "rbench_attacks"]


@rbench.hookimpl
def rbench_attacks():
    return [MiFgsm()]
