"""Data-augmentation trainers (the MLSS MNIST report, section VI): mixup, CutMix, random rotation, Gaussian noise.

Each is the standard loop (:class:`~rbench.plugins.trainers.standard.StandardTrainer`) with its own
:meth:`batch_loss`: the first ``fraction`` of every batch (rounded to whole samples; the batches are shuffled,
so this is a random subset) is augmented, the rest is used as it is. Every random draw comes from the job's
generator, so a run is reproducible from its seed. An augmentation that changes nothing (``fraction`` rounding
to no sample, ``degrees = 0``, ``sigma = 0``) draws nothing and trains bit-identically to ``standard``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from rbench.plugins.trainers.standard import StandardParams, StandardTrainer

Fraction = Annotated[float, Field(ge=0, le=1)]
Alpha = Annotated[float, Field(gt=0, le=100)]


class MixupParams(StandardParams):
    """``alpha``: the mixing weight is drawn from Beta(alpha, alpha), once per batch; ``fraction``: share of
    each batch that is mixed (with partners drawn from the whole batch)."""

    alpha: Alpha = 0.2
    fraction: Fraction = 1.0


class CutmixParams(StandardParams):
    """``alpha``: the box's area share is ``1 - lam``, lam ~ Beta(alpha, alpha), one box per batch;
    ``fraction``: share of each batch that gets a box pasted from a partner."""

    alpha: Alpha = 1.0
    fraction: Fraction = 1.0


class RotationParams(StandardParams):
    """``degrees``: each augmented image is rotated about its centre by an angle uniform in
    [-degrees, degrees] (bilinear, zeros outside); ``fraction``: share of each batch that is rotated."""

    degrees: Annotated[float, Field(ge=0, le=180)] = 15.0
    fraction: Fraction = 1.0


class NoiseParams(StandardParams):
    """``sigma``: standard deviation of the additive Gaussian noise (the result is clamped to [0, 1]);
    ``fraction``: share of each batch that gets noise."""

    sigma: Annotated[float, Field(ge=0, le=1)] = 0.1
    fraction: Fraction = 1.0


def n_augmented(fraction: float, batch: int) -> int:
    """How many samples of a batch of ``batch`` are augmented (``fraction`` of it, rounded half up)."""
    return min(batch, math.floor(fraction * batch + 0.5))


def beta(alpha: float, generator: torch.Generator) -> float:
    """One draw of Beta(alpha, alpha), from a numpy generator seeded by one draw of ``generator``."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _partners(n: int, k: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The partners of the first ``k`` samples: the first ``k`` entries of a random permutation of the batch."""
    return torch.randperm(n, generator=generator)[:k].to(device)


def mixup(x: torch.Tensor, y: torch.Tensor, k: int, alpha: float, generator: torch.Generator
          ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Zhang et al.'s mixup of the first ``k`` samples: ``lam * x_i + (1 - lam) * x_j`` with a shuffled partner
    ``j``. Returns the batch, the partners' labels (``k``) and the partners' label weight ``1 - lam``."""
    lam = beta(alpha, generator)
    partner = _partners(len(x), k, generator, x.device)
    out = x.clone()
    out[:k] = lam * x[:k] + (1 - lam) * x[partner]
    return out, y[partner], 1.0 - lam


def cutmix_box(height: int, width: int, alpha: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    """Yun et al.'s box (top, bottom, left, right): sides ``sqrt(1 - lam)`` of the image's, lam ~ Beta(alpha,
    alpha), centred uniformly at random and clipped to the image (so its area share may be smaller)."""
    r = math.sqrt(1.0 - beta(alpha, generator))
    cut_h, cut_w = int(height * r), int(width * r)
    cy, cx = int(torch.randint(height, (1,), generator=generator)), int(torch.randint(width, (1,), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def cutmix(x: torch.Tensor, y: torch.Tensor, k: int, alpha: float, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix of the first ``k`` samples: one box (:func:`cutmix_box`) pasted from a shuffled partner. Returns
    the batch, the partners' labels and their label weight: the box's share of the image area."""
    height, width = x.shape[-2:]
    top, bottom, left, right = cutmix_box(height, width, alpha, generator)
    partner = _partners(len(x), k, generator, x.device)
    out = x.clone()
    out[:k, :, top:bottom, left:right] = x[partner, :, top:bottom, left:right]
    return out, y[partner], (bottom - top) * (right - left) / (height * width)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) rotated about its centre by its angle in ``degrees`` (N,; positive is
    counter-clockwise as displayed, rows downwards), bilinear, zeros where the rotated image has no source."""
    a = degrees.to(device=x.device, dtype=x.dtype) * (math.pi / 180)
    cos, sin = torch.cos(a), torch.sin(a)
    height, width = x.shape[-2:]
    theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
    # output -> input coordinates in affine_grid's normalised [-1, 1] frame, corrected for the aspect ratio
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_rotation(x: torch.Tensor, k: int, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """The first ``k`` images rotated by angles uniform in [-degrees, degrees]."""
    angles = (2 * torch.rand(k, generator=generator) - 1) * degrees
    out = x.clone()
    out[:k] = rotate(x[:k], angles)
    return out


def gaussian_noise(x: torch.Tensor, k: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """The first ``k`` images plus N(0, sigma^2) noise per pixel, clamped to [0, 1]."""
    noise = torch.randn(x[:k].shape, generator=generator).to(device=x.device, dtype=x.dtype)
    out = x.clone()
    out[:k] = (x[:k] + sigma * noise).clamp(0, 1)
    return out


class _AugmentTrainer(StandardTrainer):
    """Standard training on batches whose first ``fraction`` is augmented by :meth:`augment`."""

    def changes_nothing(self, params: Any) -> bool:
        return False

    def augment(self, xb: torch.Tensor, yb: torch.Tensor, k: int, params: Any, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """(batch, partners' labels or None, partners' label weight) with the first ``k`` samples augmented."""
        raise NotImplementedError

    def batch_loss(self, model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor, params: Any, *,
                   generator: torch.Generator, epoch: int, tally: dict[str, Any], state: Any = None
                   ) -> torch.Tensor:
        k = n_augmented(params.fraction, len(xb))
        if k == 0 or self.changes_nothing(params):
            return super().batch_loss(model, xb, yb, params, generator=generator, epoch=epoch, tally=tally)
        xa, partner_y, weight = self.augment(xb, yb, k, params, generator)
        logits = model(xa)
        if partner_y is None:
            return F.cross_entropy(logits, yb)
        loss = F.cross_entropy(logits, yb, reduction="none")
        mixed = (1 - weight) * loss[:k] + weight * F.cross_entropy(logits[:k], partner_y, reduction="none")
        return torch.cat([mixed, loss[k:]]).mean()


class MixupTrainer(_AugmentTrainer):
    """Mixup (Zhang et al. 2018): convex combinations of image pairs, trained on the same combination of their
    labels' cross-entropies."""

    name = "mixup"
    Params = MixupParams

    def augment(self, xb: torch.Tensor, yb: torch.Tensor, k: int, params: MixupParams, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        return mixup(xb, yb, k, params.alpha, generator)


class CutmixTrainer(_AugmentTrainer):
    """CutMix (Yun et al. 2019): a box cut from a partner image, labels weighted by the box's area share."""

    name = "cutmix"
    Params = CutmixParams

    def augment(self, xb: torch.Tensor, yb: torch.Tensor, k: int, params: CutmixParams, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        return cutmix(xb, yb, k, params.alpha, generator)


class RotationTrainer(_AugmentTrainer):
    """Random rotations (labels unchanged)."""

    name = "rotation"
    Params = RotationParams

    def changes_nothing(self, params: RotationParams) -> bool:
        return params.degrees == 0

    def augment(self, xb: torch.Tensor, yb: torch.Tensor, k: int, params: RotationParams, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        return random_rotation(xb, k, params.degrees, generator), None, 0.0


class NoiseTrainer(_AugmentTrainer):
    """Additive Gaussian noise (labels unchanged)."""

    name = "noise"
    Params = NoiseParams

    def changes_nothing(self, params: NoiseParams) -> bool:
        return params.sigma == 0

    def augment(self, xb: torch.Tensor, yb: torch.Tensor, k: int, params: NoiseParams, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        return gaussian_noise(xb, k, params.sigma, generator), None, 0.0
