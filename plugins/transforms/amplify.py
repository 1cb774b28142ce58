"""Amplification (Szegedy et al. 2013, cross-training-set table): rescale each perturbation to a given size."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench.transform import Transform


class AmplifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: The size each perturbation is scaled to, in the chosen norm (``rms``: sqrt(sum d^2 / n), per pixel).
    size: Annotated[float, Field(gt=0)]
    norm: Literal["rms", "l2", "linf"] = "rms"
    #: ``each``: every perturbation to exactly ``size`` (those larger than ``size`` are shrunk); ``up``: only those
    #: smaller than ``size`` are scaled (to ``size``), none is shrunk; ``set``: one factor for the whole set, the one
    #: that brings the mean size of its non-zero perturbations to ``size`` (every perturbation keeps its size
    #: relative to the others).
    scale: Literal["each", "up", "set"] = "each"


class Amplify(Transform):
    """``x + d * k`` for each perturbation ``d = x_adv - x``, then clipped to [0, 1], so the stored distortion can
    end below ``size`` where clipping bites; ``k`` per ``scale``: ``size / |d|`` (``each``: up or down),
    ``max(1, size / |d|)`` (``up``), or ``size / mean |d|`` over the set's non-zero perturbations (``set``).
    Samples with ``d = 0`` (the attack found nothing) are left unchanged."""

    name = "amplify"
    Params = AmplifyParams

    def apply(self, x: torch.Tensor, x_adv: torch.Tensor, params: AmplifyParams, *,
              generator: torch.Generator | None = None) -> torch.Tensor:
        d = (x_adv - x).flatten(1)
        if params.norm == "linf":
            size = d.abs().amax(1)
        else:
            size = d.norm(dim=1) / (d.shape[1] ** 0.5 if params.norm == "rms" else 1.0)
        moved = size > 0
        if params.scale == "set":
            factor = params.size / size[moved].mean() if moved.any() else torch.zeros(())
            scale = torch.where(moved, factor, torch.zeros_like(size))
        else:
            scale = torch.where(moved, params.size / size.clamp_min(1e-12), torch.zeros_like(size))
            if params.scale == "up":
                scale = torch.where(moved, scale.clamp_min(1.0), scale)
        return (x + (d * scale[:, None]).view_as(x)).clamp(0, 1).to(torch.float32)
