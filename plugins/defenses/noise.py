"""Gaussian noise injection: a randomized input transform."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench.defense import Defense, DefenseModule


class NoiseInjectionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sigma: Annotated[float, Field(gt=0, allow_inf_nan=False)]


class NoiseInjectionModule(DefenseModule):
    """``clamp(x + sigma * N(0, 1), 0, 1)``, the noise drawn through :meth:`DefenseModule.normal`."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.sigma * self.normal(x)).clamp(0, 1)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class NoiseInjection(Defense):
    """Adds i.i.d. Gaussian noise to every pixel, then clamps to [0, 1]: ``clamp(x + sigma * N(0, 1), 0, 1)``.

    Params: ``sigma`` (> 0, required): the noise's standard deviation, in pixel units (the box is [0, 1]).

    Randomized: a fresh draw at every forward pass (through :meth:`DefenseModule.normal`, so the engine seeds it
    from the job's key); an adaptive attack averages gradients over draws (EOT). Differentiable: the noise is
    additive, so the input gradient is the identity on every pixel the clamp leaves inside (0, 1). Not trained,
    does not aggregate."""

    name = "noise_injection"
    Params = NoiseInjectionParams
    randomized = True

    def build(self, params: NoiseInjectionParams) -> NoiseInjectionModule:
        return NoiseInjectionModule(params.sigma)
