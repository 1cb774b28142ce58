"""Bit-depth reduction, the first squeezer of Xu, Evans and Qi's feature squeezing (NDSS 2018)."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from rbench.defense import Defense


class BitDepthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bits: Annotated[int, Field(ge=1, le=8)] = 1


class BitDepthModule(nn.Module):
    """Each pixel rounded to the nearest of ``2^bits`` evenly spaced levels of [0, 1] (halves round up)."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits
        self.levels = 2**bits - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.floor(x * self.levels + 0.5) / self.levels).clamp(0, 1)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class BitDepth(Defense):
    """Xu et al. (2018)'s bit-depth reduction: ``round(x * (2^bits - 1)) / (2^bits - 1)``, each pixel squeezed to
    one of ``2^bits`` levels (``bits = 1``: ``x >= 0.5``, a binarization). Halves round up; on 8-bit images no
    pixel lies exactly half-way between two levels, so this equals Xu et al.'s ``numpy.rint``.

    Params: ``bits`` (1..8; default 1, Xu et al.'s setting for MNIST).

    Not differentiable: a step function, whose gradient is zero almost everywhere, so a white-box gradient attack
    needs BPDA (with the identity: :meth:`approximation` returns None, as Athalye et al. 2018 do for
    quantization). Deterministic, not trained, does not aggregate."""

    name = "bit_depth"
    Params = BitDepthParams
    differentiable = False

    def build(self, params: BitDepthParams) -> BitDepthModule:
        return BitDepthModule(params.bits)
