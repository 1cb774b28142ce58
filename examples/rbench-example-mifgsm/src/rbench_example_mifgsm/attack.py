"""MI-FGSM: the momentum iterative fast gradient sign method (Dong et al., "Boosting Adversarial Attacks with
Momentum", CVPR 2018), as an rbench fixed-budget Linf attack.

Each step accumulates the L1-normalized input gradient into a velocity ``g = mu * g + grad / ||grad||_1`` (per
sample) and moves by ``alpha * sign(g)``, projecting back onto the ``eps`` Linf ball around ``x`` and the
[0, 1] box. The momentum stabilizes the update direction, which makes the adversarials transfer better
between models than those of plain iterative FGSM (``mu = 0`` is exactly BIM without random start).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from rbench import AttackOutput, FixedBudgetAttack

TINY = 1e-12


class MiFgsmParams(BaseModel):
    """``eps``: Linf radius; ``steps``: iterations; ``decay``: momentum factor mu; ``step_size``: alpha,
    defaults to ``eps / steps`` (so that ``steps`` sign steps can just reach the edge of the ball)."""

    model_config = ConfigDict(extra="forbid")
    eps: Annotated[float, Field(gt=0, le=1)]
    steps: Annotated[int, Field(ge=1)] = 10
    decay: Annotated[float, Field(ge=0)] = 1.0
    step_size: Annotated[float, Field(gt=0)] | None = None


def _input_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy w.r.t. ``x`` only (rbench freezes the model's parameters)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


class MiFgsm(FixedBudgetAttack):
    """Momentum iterative FGSM under a Linf budget ``eps``. Deterministic: it draws no random numbers."""

    name = "mifgsm"
    Params = MiFgsmParams
    norm = "linf"

    def run(self, model, x, y, params, *, generator=None) -> AttackOutput:
        eps, mu = params.eps, params.decay
        alpha = params.step_size if params.step_size is not None else eps / params.steps
        x = x.detach()
        x_adv = x.clone()
        velocity = torch.zeros_like(x)
        shape = (-1, *([1] * (x.dim() - 1)))
        for _ in range(params.steps):
            grad = _input_gradient(model, x_adv, y)
            l1 = grad.flatten(1).abs().sum(dim=1).clamp_min(TINY).view(shape)
            velocity = mu * velocity + grad / l1
            delta = (x_adv + alpha * velocity.sign() - x).clamp(-eps, eps)
            x_adv = (x + delta).clamp(0, 1)
        return AttackOutput(x_adv)  # success None: rbench predicts the flags in one pass of the model
