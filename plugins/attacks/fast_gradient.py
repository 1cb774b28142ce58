"""One-step gradient attacks: the fast gradient sign method and the fast gradient value method."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench.attack import AttackOutput, FixedBudgetAttack
from rbench.plugins.attacks.gradients import loss_gradient


class EpsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eps: Annotated[float, Field(gt=0, le=1)]


class Fgsm(FixedBudgetAttack):
    """FGSM (Goodfellow et al. 2015): ``x + eps * sign(grad_x loss)``, clipped to [0, 1]. Linf budget ``eps``."""

    name = "fgsm"
    Params = EpsParams
    norm = "linf"

    def gradient_loss(self, params: EpsParams) -> str:
        return "ce"

    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: EpsParams, *,
            generator: torch.Generator | None = None) -> AttackOutput:
        x_adv = (x + params.eps * loss_gradient(model, x, y).sign()).clamp(0, 1)
        return AttackOutput(x_adv)


class FastGradientValue(FixedBudgetAttack):
    """Fast gradient value (Rozsa et al. 2016): ``x + eps * g / max|g|`` per sample, clipped to [0, 1].

    The raw gradient, scaled so its largest pixel moves by ``eps``: Linf budget ``eps``.
    """

    name = "fgv"
    Params = EpsParams
    norm = "linf"

    def gradient_loss(self, params: EpsParams) -> str:
        return "ce"

    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: EpsParams, *,
            generator: torch.Generator | None = None) -> AttackOutput:
        g = loss_gradient(model, x, y)
        peak = g.flatten(1).abs().amax(dim=1).view(-1, *([1] * (x.dim() - 1)))
        # a tiny gradient (a saturated softmax's) still moves its largest pixel by eps: clamping its peak to 1e-12
        # (as before) scaled the step down to almost nothing; a zero gradient moves nothing
        scale = torch.where(peak > 0, peak, torch.ones_like(peak))
        x_adv = (x + params.eps * (g / scale)).clamp(0, 1)
        return AttackOutput(x_adv.to(torch.float32))

    def key_revision(self, params: EpsParams) -> str:
        """Re-keys every fgv set made before a vanishing gradient gave a full step (see :meth:`run`)."""
        return "unit-step.2"
