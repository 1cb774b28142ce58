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


class Amplify(Transform):
    """``x + d * size / |d|`` for each perturbation ``d = x_adv - x`` (up or down), then clipped to [0, 1], so
    the stored distortion can end below ``size`` where clipping bites. Samples with ``d = 0`` (the attack
    found nothing) are left unchanged."""

    name = "amplify"
    Params = AmplifyParams

    def apply(self, x, x_adv, params, *, generator=None):
        d = (x_adv - x).flatten(1)
        if params.norm == "linf":
            size = d.abs().amax(1)
        else:
            size = d.norm(dim=1) / (d.shape[1] ** 0.5 if params.norm == "rms" else 1.0)
        scale = torch.where(size > 0, params.size / size.clamp_min(1e-12), torch.zeros_like(size))
        return (x + (d * scale[:, None]).view_as(x)).clamp(0, 1).to(torch.float32)
