"""Fooling images by gradient ascent from noise (Nguyen et al. 2015, section 3.6 idea; our form of it).

Each input starts as uniform noise in [0, 1] and climbs the log-probability of its target class by signed
gradient steps of ``step_size`` (``steps`` of them), clipped to [0, 1]; the output is the best image seen (highest
target probability), so the stored confidence never falls below an earlier step's. The whole batch climbs at
once (one forward and one backward pass per step). Extras: ``trace`` (N, steps + 1), the best target confidence
after each step (0: the starting noise).
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench.attack import AttackOutput, GeneratorAttack


class GradientAscentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: Annotated[int, Field(ge=0, le=100_000)] = 100
    step_size: Annotated[float, Field(gt=0, le=1)] = 0.01


class GradientAscent(GeneratorAttack):
    """Signed gradient ascent on the target class's log-probability from uniform noise."""

    name = "gradient_ascent"
    Params = GradientAscentParams

    def run(self, model: torch.nn.Module, targets: torch.Tensor, params: GradientAscentParams, *,  # type: ignore[override]
            shape: tuple[int, ...], generator: torch.Generator | None = None) -> AttackOutput:
        n = len(targets)
        rows = torch.arange(n, device=targets.device)
        x = torch.rand(n, *shape, generator=generator, device=targets.device)
        best = x.clone()
        best_conf = torch.full((n,), -1.0, device=targets.device)
        trace = []
        for step in range(params.steps + 1):  # step k evaluates the image after k steps (0: the noise)
            climbing = step < params.steps
            x.requires_grad_(climbing)
            with torch.set_grad_enabled(climbing):
                logp = torch.log_softmax(model(x).float(), dim=1)[rows, targets]
            with torch.no_grad():
                conf = logp.detach().exp()
                better = conf > best_conf
                best[better], best_conf[better] = x.detach()[better], conf[better]
                trace.append(best_conf.clone())
            if climbing:
                (grad,) = torch.autograd.grad(logp.sum(), x)
                x = (x.detach() + params.step_size * grad.sign()).clamp(0, 1)
        with torch.no_grad():
            success = model(best).argmax(dim=1) == targets
        return AttackOutput(best.contiguous(), success, {"trace": torch.stack(trace, dim=1)})
