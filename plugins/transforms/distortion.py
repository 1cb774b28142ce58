"""Equal-distortion sets (Uličný, Lundström & Byttner 2016, section 3.2): ``scale_to_distortion``.

The paper compares perturbations of different kinds (gradient sign noise, Gaussian noise) at equal *distortion*,
its equation 2: the mean absolute per-pixel difference over the whole set,
``dist = 1/(n c h w) * sum |x_adv - x|``. This transform takes a stored base set made at a small size (FGSM at a
small ``eps``, Gaussian noise at a small ``sigma``) and returns ``clip(x + alpha * (x_adv - x), 0, 1)`` with one
``alpha >= 1`` for the whole set, found by bisection so that the set's distortion is ``mean_abs`` (to a relative
1e-6; the engine's stored ``distortion["mean_abs"]``, averaged over the set, is within 1e-3 of it).

Why scaling up is exact. Per pixel, ``d = clip(x + delta) - x`` is ``delta`` cut at the edge of [0, 1] it
points to; for ``alpha >= 1``, either ``d = delta`` (so ``x + alpha d = x + alpha delta``) or ``d`` was cut and
``x + alpha d`` lies at or beyond that same edge, as ``x + alpha delta`` does, so both clip to it:
``clip(x + alpha (clip(x + delta) - x)) = clip(x + alpha delta)``. With ``delta = eps0 * sign(grad)`` the result
is FGSM at ``eps = alpha * eps0`` (same gradient sign); with ``delta = sigma0 * z`` it is clipped Gaussian noise
at ``sigma = alpha * sigma0`` with the same draws ``z`` (tests/test_ulicny_parts.py checks both). Scaling down
(``alpha < 1``) has no such identity, so a target below the base set's own distortion is an error; so is a
target above what the set can reach when every moved pixel is pushed to the edge of [0, 1]. Either fails the
transform job with a one-line ValueError.

In a suite::

    [attacks.fgsm_base]
    plugin = "fgsm"
    params = { eps = 0.02 }

    [attacks.fgsm_dist]
    transform = "scale_to_distortion"
    input = "fgsm_base"
    grid = { mean_abs = [0.1, 0.2] }
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench.transform import Transform

#: how close (relative) the set's distortion must come to the target, and how close the bisection brings it
TOLERANCE = 1e-3
PRECISION = 1e-6
#: alpha at which every moved pixel of any float32 set sits on the edge of [0, 1] (|d| >= 2^-24 * 2^-1)
MAX_ALPHA = 2.0**40


class ScaleToDistortionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: the set's mean absolute per-pixel distortion (the paper's equation 2), pixels in [0, 1]
    mean_abs: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


def set_distortion(x: torch.Tensor, x_adv: torch.Tensor) -> float:
    """The paper's equation 2: the mean absolute per-pixel difference over the whole set (in float64)."""
    return float((x_adv.double() - x.double()).abs().mean())


def solve_alpha(x: torch.Tensor, x_adv: torch.Tensor, mean_abs: float) -> float:
    """The ``alpha >= 1`` for which ``clip(x + alpha * (x_adv - x), 0, 1)`` has distortion ``mean_abs``
    (:func:`set_distortion`) to a relative :data:`PRECISION`. ValueError (one line) when the target is below the
    base set's own distortion (beyond :data:`TOLERANCE`) or above what clipping lets the set reach."""
    x64 = x.double().flatten()
    d = x_adv.double().flatten() - x64
    moved = d != 0
    size, xs = d[moved].abs(), x64[moved]
    room = torch.where(d[moved] > 0, 1 - xs, xs)  # how far each moved pixel can go before its edge
    # per pixel |clip(x + alpha d) - x| = min(alpha |d|, room) (alpha >= 1, x_adv in [0, 1]): a piecewise linear
    # sum with a kink at alpha = room / |d|; sorted once, each evaluation is a binary search
    kinks, order = (room / size).sort()
    sizes_after = size[order].flip(0).cumsum(0).flip(0)  # sum of |d| over the kinks from i on
    rooms_before = torch.cat([room.new_zeros(1), room[order].cumsum(0)])  # sum of room over the kinks before i
    total = x64.numel()

    def dist(alpha: float) -> float:
        i = int(torch.searchsorted(kinks, torch.tensor(alpha, dtype=kinks.dtype), right=True))
        above = float(sizes_after[i]) if i < len(kinks) else 0.0
        return (alpha * above + float(rooms_before[i])) / total

    base = dist(1.0)
    if base > mean_abs * (1 + TOLERANCE):
        raise ValueError(f"scale_to_distortion: the base set's mean absolute distortion {base:.6g} is already above "
                         f"mean_abs = {mean_abs:g}, and scaling down is not exact; make the base set with a smaller "
                         "eps or sigma")
    if base >= mean_abs * (1 - PRECISION):
        return 1.0
    if not len(kinks):
        raise ValueError(f"scale_to_distortion: mean_abs = {mean_abs:g} cannot be reached: the base set does not "
                         "differ from its clean inputs")
    ceiling = float(room.sum()) / total  # every moved pixel at its edge
    if ceiling < mean_abs * (1 - TOLERANCE):
        raise ValueError(f"scale_to_distortion: mean_abs = {mean_abs:g} cannot be reached: clipping to [0, 1] "
                         f"saturates this base set at {ceiling:.6g}")
    lo, hi = 1.0, 2.0
    while dist(hi) < mean_abs and hi < MAX_ALPHA:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = (lo + hi) / 2
        value = dist(mid)
        if abs(value - mean_abs) <= PRECISION * mean_abs:
            return mid
        if value < mean_abs:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    if dist(hi) < mean_abs * (1 - TOLERANCE):  # not saturated even at MAX_ALPHA (pixels moved by ~1e-12)
        raise ValueError(f"scale_to_distortion: mean_abs = {mean_abs:g} cannot be reached: scaling by up to "
                         f"{MAX_ALPHA:g} gives {dist(hi):.6g}")
    return hi


class ScaleToDistortion(Transform):
    """``clip(x + alpha * (x_adv - x), 0, 1)`` with one ``alpha >= 1`` for the whole set, so that its mean absolute
    per-pixel distortion (Uličný et al. 2016, eq. 2) is ``mean_abs``: a base FGSM set at ``eps0`` becomes FGSM at
    ``alpha * eps0``, a base Gaussian-noise set at ``sigma0`` clipped noise at ``alpha * sigma0`` (see the module
    docstring). A target below the base set's distortion, or beyond what clipping allows, is a ValueError."""

    name = "scale_to_distortion"
    Params = ScaleToDistortionParams

    def apply(self, x: torch.Tensor, x_adv: torch.Tensor, params: ScaleToDistortionParams, *,
              generator: torch.Generator | None = None) -> torch.Tensor:
        alpha = solve_alpha(x, x_adv, params.mean_abs)
        x64 = x.double()
        return (x64 + alpha * (x_adv.double() - x64)).clamp(0, 1).to(torch.float32)
