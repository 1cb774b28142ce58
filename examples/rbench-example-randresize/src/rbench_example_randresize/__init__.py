"""rbench-example-randresize: a third-party rbench defense plugin (random resizing and padding).

rbench finds this module through the entry point ``randresize = "rbench_example_randresize"`` of the group
``rbench`` (see ``pyproject.toml``) and calls the hook below, which returns the defense plugin objects.
"""

from __future__ import annotations

import rbench
from rbench_example_randresize.defense import RandomResizePad, RandomResizePadModule, RandomResizePadParams

__version__ = "0.1.0"
__all__ = ["RandomResizePad", "RandomResizePadModule", "RandomResizePadParams", "rbench_defenses"]


@rbench.hookimpl
def rbench_defenses():
    return [RandomResizePad()]
