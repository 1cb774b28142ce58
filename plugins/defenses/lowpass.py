"""The Gaussian low-pass filter of Uličný, Lundström and Byttner (2016), optionally after noise injection."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rbench.defense import Defense, DefenseModule

#: the variance Uličný et al. use with each kernel size
PAPER_VARIANCE: dict[int, float] = {3: 7.0, 5: 1.3, 7: 0.6}


class LowpassParams(BaseModel):
    """``variance`` defaults to the paper's value for ``size`` (7 for 3x3, 1.3 for 5x5, 0.6 for 7x7); the
    validated params always hold the number, so leaving it out and writing the paper's value give one key."""

    model_config = ConfigDict(extra="forbid")
    size: Literal[3, 5, 7] = 5
    variance: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    noise_sigma: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0

    @model_validator(mode="after")
    def _paper_variance(self) -> LowpassParams:
        if self.variance is None:
            self.variance = PAPER_VARIANCE[self.size]
        return self


def gaussian_factor(size: int, variance: float) -> np.ndarray:
    """The 1-D factor of the kernel: ``exp(-u^2 / (2 variance))`` on the grid ``linspace(-3, 3, size)`` (both ends
    included), normalized to sum 1; float64. The kernel is its outer product with itself."""
    grid = np.linspace(-3.0, 3.0, size)
    g = np.exp(-(grid**2) / (2.0 * variance))
    return g / g.sum()


def gaussian_kernel(size: int, variance: float) -> torch.Tensor:
    """The ``size`` x ``size`` kernel: ``exp(-(u^2 + v^2) / (2 variance))`` on the grid ``linspace(-3, 3, size)``
    (both ends included) in each direction, normalized to sum 1 (the outer product of :func:`gaussian_factor` with
    itself); float32."""
    factor = gaussian_factor(size, variance)
    return torch.tensor(np.outer(factor, factor), dtype=torch.float32)


def blur_matrix(factor: np.ndarray, n: int) -> torch.Tensor:
    """The (n, n) matrix B for which ``B @ v`` is ``v`` (length n) correlated with ``factor`` under 'replicate'
    padding (an index past either end reads the end); float64."""
    size = len(factor)
    columns = (np.arange(n)[:, None] + np.arange(size)[None, :] - size // 2).clip(0, n - 1)
    matrix = np.zeros((n, n))
    np.add.at(matrix, (np.repeat(np.arange(n), size), columns.ravel()), np.tile(factor, n))
    return torch.from_numpy(matrix)


class LowpassModule(DefenseModule):
    """Optional noise (``noise_sigma`` > 0), then the kernel applied to each channel with 'replicate' padding,
    clamped to [0, 1]. The kernel is separable, so the filter is ``B_h @ x @ B_w.T`` (:func:`blur_matrix` of its
    1-D factor for the image's height and width): the same sums as the depthwise convolution, in 1.0 ms instead of
    7.9 ms forward and backward for 250 MNIST images (a one-channel convolution is a slow path of torch's CPU
    kernels; 2-core CPU, 2026-12-02). The products are computed in float32 at least, outside autocast: rounded to
    bfloat16, the matrices' rows would sum to 0.998 and darken every image (the convolution's kernel, rounded,
    stayed unbiased); the output has the input's dtype."""

    def __init__(self, size: int, variance: float, noise_sigma: float):
        super().__init__()
        self.size, self.variance, self.noise_sigma = size, variance, noise_sigma
        self._factor = gaussian_factor(size, variance)
        self._matrices: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

    def __getstate__(self) -> dict[str, Any]:
        return dict(super().__getstate__(), _matrices={})  # a copy or a pickle rebuilds them where it runs

    def _blur(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (n, dtype, device)
        if key not in self._matrices:
            with torch.inference_mode(False):  # made under inference mode, a tensor could never enter a graph
                self._matrices[key] = blur_matrix(self._factor, n).to(dtype=dtype, device=device)
        return self._matrices[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"the low-pass filter takes images (..., height, width), not inputs of shape "
                             f"{tuple(x.shape)}")
        if self.noise_sigma > 0:
            x = x + self.noise_sigma * self.normal(x)
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            rows, columns = self._blur(x.shape[-2], dtype, x.device), self._blur(x.shape[-1], dtype, x.device)
            out = (rows @ x.to(dtype) @ columns.T).clamp(0, 1).to(x.dtype)
        return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(
            memory_format=torch.channels_last) else out

    def extra_repr(self) -> str:
        return f"size={self.size}, variance={self.variance}, noise_sigma={self.noise_sigma}"


class Lowpass(Defense):
    """Uličný et al. (2016)'s Gaussian low-pass filter: each channel convolved with a ``size`` x ``size``
    Gaussian kernel -- the Gaussian function of variance ``variance`` evaluated on an evenly spaced grid over
    [-3, 3] (both ends included), normalized to sum 1 -- with 'replicate' padding, so the output has the input's
    shape and a constant image passes unchanged; the output is clamped to [0, 1].

    Params: ``size`` (3, 5 or 7; default 5); ``variance`` (> 0; default the paper's for the size: 7 for 3x3, 1.3
    for 5x5, 0.6 for 7x7); ``noise_sigma`` (>= 0, default 0): Gaussian noise of this standard deviation added
    before filtering.

    Differentiable: products of matrices (and additive noise). Randomized only when ``noise_sigma`` > 0
    (:meth:`is_randomized`; the noise is drawn through :meth:`DefenseModule.normal`). Not trained, does not
    aggregate."""

    name = "lowpass"
    #: 2: a product of matrices instead of a convolution (2026-12-02): the same filter, outputs that differ from
    #: version 1's in the last bits of float32
    version = "2"
    Params = LowpassParams

    def is_randomized(self, params: LowpassParams) -> bool:
        return params.noise_sigma > 0

    def build(self, params: LowpassParams) -> LowpassModule:
        assert params.variance is not None  # filled in by LowpassParams
        return LowpassModule(params.size, params.variance, params.noise_sigma)
