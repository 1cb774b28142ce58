"""Additive Gaussian noise: the random-perturbation baseline an adversarial attack should beat."""

from __future__ import annotations

from typing import Annotated, Literal, cast

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rbench.attack import AttackOutput, Budget, FixedBudgetAttack
from rbench.plugins.attacks.gradients import TINY


class NoiseParams(BaseModel):
    """Either ``sigma`` (i.i.d. N(0, sigma^2) per pixel) or ``norm`` + ``eps`` (Gaussian noise rescaled so each
    sample's perturbation has exactly that norm before clipping, as foolbox's additive-noise attacks do)."""

    model_config = ConfigDict(extra="forbid")
    sigma: Annotated[float, Field(gt=0)] | None = None
    norm: Literal["linf", "l2"] | None = None
    eps: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> NoiseParams:
        if (self.sigma is None) == (self.eps is None) or (self.eps is None) != (self.norm is None):
            raise ValueError("give either 'sigma', or both 'norm' and 'eps'")
        return self


def split_stable_randn(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x`` whose values for a sample do not depend on how the samples are split
    into batches. torch's CPU normal sampler fills blocks of 16 and redraws the last 16 values of a tensor whose
    size is not a multiple of 16, so a plain ``randn(x.shape)`` follows the batches unless one sample's size is
    such a multiple; each sample draws a whole number of blocks here (the same bits as ``randn`` where it is)."""
    per = x[0].numel() if len(x) else 0
    padded = -(-per // 16) * 16
    noise = torch.randn((len(x), padded), generator=generator, device=x.device, dtype=x.dtype)
    return noise[:, :per].reshape(x.shape)


class GaussianNoise(FixedBudgetAttack):
    """Adds one draw of Gaussian noise per sample and clips to [0, 1]; success = the model errs."""

    name = "gaussian_noise"

    Params = NoiseParams

    def uses_gradients(self, params: NoiseParams) -> bool:
        return False

    def budget(self, params: NoiseParams) -> Budget | None:
        return None if params.eps is None else Budget(params.norm, params.eps)  # type: ignore[arg-type]

    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: NoiseParams, *,
            generator: torch.Generator | None = None) -> AttackOutput:
        noise = split_stable_randn(x, generator)
        if params.sigma is not None:
            noise = noise * params.sigma
        else:
            flat = noise.flatten(1)
            size = flat.abs().amax(1) if params.norm == "linf" else flat.norm(dim=1)
            noise = noise * (cast(float, params.eps) / size.clamp_min(TINY)).view(-1, *([1] * (x.dim() - 1)))
        x_adv = (x + noise).clamp(0, 1)
        return AttackOutput(x_adv)
