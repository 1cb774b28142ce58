"""Madry et al.'s adversarial training with Linf PGD, on a schedule of phases (the MLSS MNIST report, section II).

Per batch: Linf PGD adversarials are crafted on the model as it is (eval mode, random start, gradients taken
with respect to the inputs only, so the parameters accumulate nothing), then the model is updated in train
mode on ``(1 - w) * CE(clean) + w * CE(adversarial)``, where ``w`` is the current phase's ``adv_weight``. A
phase with ``adv_weight = 0`` crafts nothing and trains exactly as ``standard`` does.

Works on composed models too: ``run_train`` loads an ensemble's trained members before calling the trainer, so
``trainer = { plugin = "adversarial" }`` on an ``ensemble`` fine-tunes all its members through the ensemble's
output.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from rbench.plugins.attacks.gradients import loss_gradient, random_in_ball
from rbench.plugins.trainers.standard import OptimizerParams, StandardTrainer


class Phase(BaseModel):
    """``epochs`` passes over the data with the adversarial loss weighted by ``adv_weight``."""

    model_config = ConfigDict(extra="forbid")
    epochs: Annotated[int, Field(ge=1, le=10_000)]
    adv_weight: Annotated[float, Field(ge=0, le=1)]


def report_schedule() -> list[Phase]:
    """The MLSS report's schedule: 1 epoch at weight 0.1, then 3 at 0.5, then 3 at 0.75."""
    return [Phase(epochs=1, adv_weight=0.1), Phase(epochs=3, adv_weight=0.5), Phase(epochs=3, adv_weight=0.75)]


class AdversarialParams(OptimizerParams):
    """``phases``: the schedule (default: the report's, 7 epochs); ``eps``: the Linf radius (Madry et al.'s MNIST
    0.3); ``steps``: PGD iterations per batch (10; Madry et al. used 40); ``step_size``: per-step size, default
    ``2.5 * eps / steps`` (0.075 for the defaults, the repo's ``pgd`` attack rule: 10 steps of 0.01 would reach
    only a third of the ball); ``random_start``: start uniformly in the ball (Madry et al.)."""

    phases: Annotated[list[Phase], Field(min_length=1)] = Field(default_factory=report_schedule)
    eps: Annotated[float, Field(gt=0, le=1)] = 0.3
    steps: Annotated[int, Field(ge=1, le=1000)] = 10
    step_size: Annotated[float, Field(gt=0, le=1)] | None = None
    random_start: bool = True


def pgd_linf(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float,
             *, random_start: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Linf PGD adversarials (the last iterate, in the ``eps`` box and [0, 1]) of ``x`` on ``model`` as it is now.

    The model is put in eval mode while crafting and given back in the mode it was in; gradients are taken with
    respect to the inputs only (the parameters' ``.grad`` stay as they were). The random start is drawn on the
    CPU from ``generator`` and moved to ``x``'s device."""
    was_training = model.training
    model.eval()
    try:
        x = x.detach()
        lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
        x_adv = x.clone()
        if random_start:
            start = random_in_ball(torch.empty(x.shape, dtype=x.dtype), "linf", eps, generator)
            x_adv = (x + start.to(x.device)).clamp(0, 1)
        for _ in range(steps):
            x_adv = torch.clamp(x_adv + step_size * loss_gradient(model, x_adv, y).sign(), lo, hi)
    finally:
        model.train(was_training)
    return x_adv.detach()


def _count(tally: dict[str, Any], key: str, value: torch.Tensor | int) -> None:
    tally[key] = tally.get(key, 0) + value


class AdversarialTrainer(StandardTrainer):
    """Madry et al. (2018) PGD adversarial training, mixed with clean training by a phase schedule. Returns the
    standard statistics plus each phase's final epoch loss and the last epoch's clean and adversarial training
    accuracy (of the train-mode forward passes during that epoch; adversarial is None when its weight is 0)."""

    name = "adversarial"
    Params = AdversarialParams

    def epochs(self, params: AdversarialParams) -> int:
        return sum(p.epochs for p in params.phases)

    def phase_of(self, params: AdversarialParams, epoch: int) -> int:
        end = 0
        for i, phase in enumerate(params.phases):
            end += phase.epochs
            if epoch < end:
                return i
        raise IndexError(f"epoch {epoch} is past the schedule")

    def batch_loss(self, model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor, params: AdversarialParams, *,
                   generator: torch.Generator, epoch: int, tally: dict[str, Any], state: Any = None
                   ) -> torch.Tensor:
        w = params.phases[self.phase_of(params, epoch)].adv_weight
        if w == 0:
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
        else:
            step = params.step_size if params.step_size is not None else 2.5 * params.eps / params.steps
            x_adv = pgd_linf(model, xb, yb, params.eps, params.steps, step, random_start=params.random_start,
                             generator=generator)
            logits, adv_logits = model(xb), model(x_adv)
            loss = (1 - w) * F.cross_entropy(logits, yb) + w * F.cross_entropy(adv_logits, yb)
            _count(tally, "adv_correct", (adv_logits.detach().argmax(1) == yb).sum())
        _count(tally, "clean_correct", (logits.detach().argmax(1) == yb).sum())
        _count(tally, "n", len(yb))
        return loss

    def summary(self, params: AdversarialParams, stats: dict[str, Any], epoch_losses: list[float],
                tally: dict[str, Any], state: Any = None) -> dict[str, Any]:
        ends = torch.tensor([p.epochs for p in params.phases]).cumsum(0) - 1
        phases = [{"epochs": p.epochs, "adv_weight": p.adv_weight, "final_loss": epoch_losses[int(end)]}
                  for p, end in zip(params.phases, ends, strict=True)]
        n = max(tally.get("n", 0), 1)
        adv = tally.get("adv_correct")
        return {**stats, "phases": phases, "clean_train_accuracy": float(tally.get("clean_correct", 0)) / n,
                "adv_train_accuracy": None if adv is None else float(adv) / n}
