"""The gradient-ranked pixel attack of Bečková et al. 2020 (section 3.3)."""

from __future__ import annotations

from itertools import product
from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench.attack import AttackOutput, MinimizationAttack, misclassified
from rbench.plugins.attacks.gradients import loss_gradient

Pixel = Annotated[float, Field(ge=0, le=1)]


class PixelParams(BaseModel):
    """``pixels``: change up to this many pixels; ``values``: what a changed pixel is set to (the paper: its
    lowest and highest value, 0 and 1)."""

    model_config = ConfigDict(extra="forbid")
    pixels: Annotated[int, Field(ge=1, le=6)] = 3
    values: Annotated[list[Pixel], Field(min_length=1, max_length=4)] = [0.0, 1.0]


class PixelAttack(MinimizationAttack):
    """Rank the pixels by the absolute loss gradient at the input (summed over channels); for m = 1, 2, ...,
    ``pixels``, set the top-m pixels (all their channels) to every combination of ``values`` until the model
    misclassifies; the first success is returned. An input the model already misclassifies is returned as it
    is. ``extras["pixels"]``: how many pixels the returned adversarial changed (0: none, or none found)."""

    name = "pixel"
    Params = PixelParams

    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: PixelParams, *,
            generator: torch.Generator | None = None) -> AttackOutput:
        x = x.detach()
        score = loss_gradient(model, x, y).abs().sum(1).flatten(1)  # (N, H * W)
        top = score.argsort(dim=1, descending=True, stable=True)[:, :params.pixels]
        x_adv = x.clone()
        found = misclassified(model, x, y)
        for m in range(1, params.pixels + 1):
            for combo in product(params.values, repeat=m):
                todo = (~found).nonzero().flatten()
                if len(todo) == 0:
                    break
                cand = x[todo].flatten(2).clone()  # (n, C, H * W)
                for j, value in enumerate(combo):
                    cand[torch.arange(len(todo), device=x.device), :, top[todo, j]] = value
                cand = cand.view_as(x[todo])
                fooled = misclassified(model, cand, y[todo])
                hit = todo[fooled]
                x_adv[hit] = cand[fooled]
                found[hit] = True
        # the pixels that differ, not m: a top pixel set to the value it had changes nothing (an audit: 2 for 1)
        used = (x_adv != x).any(dim=1).flatten(1).sum(dim=1)
        return AttackOutput(x_adv, extras={"pixels": used})

    def key_revision(self, params: PixelParams) -> str:
        """Re-keys the sets stored while ``extras["pixels"]`` counted the pixels set rather than those changed."""
        return "pixels-changed.2"
