"""Projected gradient descent (Madry et al. 2018) and the basic iterative method (Kurakin et al. 2017)."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rbench.attack import AttackOutput, FixedBudgetAttack
from rbench.plugins.attacks.gradients import l2_normalize, loss_gradient, project, random_in_ball

#: the most steps an iterative attack takes: a step count no run ends (10^14 was accepted and ran until killed)
MAX_STEPS = 100_000


class PgdParams(BaseModel):
    """``step_size`` defaults to ``2.5 * eps / steps``; ``random_start`` draws the start uniformly in the ball;
    ``loss``: ascend the cross-entropy (``ce``) or the logit margin (``margin``, Carlini & Wagner's, which keeps a
    useful gradient where the softmax saturates)."""

    model_config = ConfigDict(extra="forbid")
    norm: Literal["linf", "l2"] = "linf"
    eps: Annotated[float, Field(gt=0)]
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 40
    step_size: Annotated[float, Field(gt=0)] | None = None
    random_start: bool = True
    loss: Literal["ce", "margin"] = "ce"

    @model_validator(mode="after")
    def _linf_within_the_box(self) -> PgdParams:
        if self.norm == "linf" and self.eps > 1:  # as fgsm's: pixels in [0, 1], any image is within 1
            raise ValueError(f"eps: a Linf budget of {self.eps:g} exceeds 1, the whole [0, 1] pixel range")
        return self


class BimParams(PgdParams):
    random_start: bool = False
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 10


def step_of(params: PgdParams) -> float:
    """The step size pgd takes: ``step_size``, else ``2.5 * eps / steps``."""
    return params.step_size if params.step_size is not None else 2.5 * params.eps / params.steps


class Pgd(FixedBudgetAttack):
    """Iterated gradient steps (sign steps for Linf, normalized steps for L2), each projected back onto the
    ``eps`` ball around ``x`` and the [0, 1] box. Returns the last iterate."""

    name = "pgd"
    Params = PgdParams

    def gradient_loss(self, params: PgdParams) -> str:
        return params.loss

    def batch_invariant(self, params: PgdParams) -> bool:
        """An L2 random start draws the batch's directions, then its radii: the draws follow the batches (a Linf
        start draws one number per pixel in order, the same however the inputs are split on the CPU; a CUDA
        generator's draws may follow the batches, as they differ from the CPU's anyway: CONTRIBUTING, keys)."""
        return not (params.random_start and params.norm == "l2")

    def key_revision(self, params: PgdParams) -> str | None:
        """Re-keys the L2 sets made before a vanishing gradient gave a full step (:func:`l2_normalize`); the Linf
        steps (signs) did not change, nor did their keys."""
        return "l2-unit-step.2" if params.norm == "l2" else None

    def resolved_params(self, params: PgdParams) -> dict[str, float]:
        return {} if params.step_size is not None else {"step_size": step_of(params)}

    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: PgdParams, *,
            generator: torch.Generator | None = None) -> AttackOutput:
        eps, norm = params.eps, params.norm
        alpha = step_of(params)
        x = x.detach()
        x_adv = x.clone()
        if params.random_start:
            x_adv = (x + random_in_ball(x, norm, eps, generator)).clamp(0, 1)
        if norm == "linf":  # the eps-ball and the [0, 1] box intersect in one box: clamp once per step
            lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
            for _ in range(params.steps):
                step = loss_gradient(model, x_adv, y, params.loss).sign_()
                x_adv = torch.clamp(x_adv.add_(step, alpha=alpha), lo, hi)
        else:
            for _ in range(params.steps):
                step = l2_normalize(loss_gradient(model, x_adv, y, params.loss))
                x_adv = (x + project(x_adv + alpha * step - x, norm, eps)).clamp(0, 1)
        return AttackOutput(x_adv)


class Bim(Pgd):
    """The basic iterative method: PGD without random start (defaults: 10 steps of ``2.5 * eps / 10``)."""

    name = "bim"
    Params = BimParams
