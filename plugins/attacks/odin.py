"""ODIN's input preprocessing (Liang et al. 2018): one signed-gradient step that raises the temperature-scaled
softmax of the class the model predicts. Used for out-of-distribution detection, not to fool the model."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from rbench.attack import AttackOutput, FixedBudgetAttack


class OdinParams(BaseModel):
    """``eps``: the step (Linf, in [0, 1] pixel units); ``temperature``: T in ``softmax(f(x) / T)``. The defaults
    are the MLSS MNIST report's best setting (T = 0.33, eps = 0.1); Liang et al. use T = 1000 and small eps."""

    model_config = ConfigDict(extra="forbid")
    eps: Annotated[float, Field(ge=0, le=1)] = 0.1
    temperature: Annotated[float, Field(gt=0)] = 0.33


def odin_perturb(model: torch.nn.Module, x: torch.Tensor, eps: float, temperature: float) -> torch.Tensor:
    """``clamp(x - eps * sign(-grad_x log softmax(f(x) / T)[argmax f(x)]), 0, 1)``: the predicted class is the
    model's own on ``x`` (labels play no part); the gradient is taken w.r.t. ``x`` only."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        predicted = logits.argmax(dim=1, keepdim=True).detach()
        log_p = F.log_softmax(logits / temperature, dim=1).gather(1, predicted).sum()
        (grad,) = torch.autograd.grad(log_p, x)
    return (x.detach() + eps * grad.sign()).clamp(0, 1).to(torch.float32)


class Odin(FixedBudgetAttack):
    """ODIN input perturbation: ``x' = clamp(x - eps * sign(-grad_x log S_yhat(x; T)), 0, 1)`` with ``yhat`` the
    predicted class and ``S(x; T) = softmax(f(x) / T)``. Linf budget ``eps``.

    It makes in-distribution inputs more confident than out-of-distribution ones, so run it in the in-distribution
    evaluation and in the out-of-distribution one, and score both with the ``ood_auroc`` metric (its
    ``temperature`` param should match). Labels are ignored by the step; ``success`` is the engine's usual
    re-prediction check (the model misclassifies ``x'`` w.r.t. ``y``), which a confidence-raising step rarely makes
    True on inputs the model classifies correctly.
    """

    name = "odin"
    Params = OdinParams
    norm = "linf"

    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: OdinParams, *,
            generator: torch.Generator | None = None) -> AttackOutput:
        x_adv = odin_perturb(model, x, params.eps, params.temperature)
        return AttackOutput(x_adv)
