"""The transform contract: a new adversarial set derived from a stored one, without re-running the attack.

``apply(x, x_adv, params, *, generator=None) -> torch.Tensor`` maps clean inputs ``x`` and a stored set's
``x_adv`` (float32 (N, C, H, W) in [0, 1]) to new adversarial inputs of the same shape in [0, 1]. The engine
then re-predicts success on the source model (the base set's targets, if any, are kept). A transform that
bounds its output (a projection onto a norm ball) declares that budget with ``budget(params)``, which the engine
checks when the set is made and whenever it is loaded.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from rbench.attack import Budget


class Transform:
    """Base of every transform plugin."""

    name: ClassVar[str]
    #: the pydantic params model; methods get a validated instance (typed Any here: each plugin annotates its own)
    Params: ClassVar[type[BaseModel]]
    version: ClassVar[str | None] = None

    def budget(self, params: Any) -> Budget | None:
        """The norm ball every output lies in, or None (the default: no budget)."""
        return None

    def apply(self, x: torch.Tensor, x_adv: torch.Tensor, params: Any, *,
              generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError
