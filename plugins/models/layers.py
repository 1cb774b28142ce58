"""Small pieces shared by the built-in models."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

Activation = Literal["relu", "sigmoid", "tanh", "gelu", "linear"]
#: (channels, height, width) of the input; a list because suites are TOML (arrays) validated strictly
Shape = Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=3, max_length=3)]
MNIST_SHAPE = [1, 28, 28]

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity}


def activation(name: Activation) -> nn.Module:
    return _ACTIVATIONS[name]()


def per_layer(value: float | list[float], n: int, what: str) -> list[float]:
    """``value`` for each of ``n`` layers: a scalar is repeated, a list must have length ``n``."""
    if isinstance(value, list):
        if len(value) != n:
            raise ValueError(f"{what} lists {len(value)} values for {n} layers")
        return value
    return [value] * n


def decay_groups(layers: Sequence[nn.Linear | nn.Conv2d], decays: list[float]) -> list[dict[str, Any]]:
    """Optimizer groups: each layer's weights with its own weight decay, all biases without decay."""
    groups: list[dict[str, Any]] = [{"params": [layer.weight], "weight_decay": wd} for layer, wd in zip(
        layers, decays, strict=True)]
    groups.append({"params": [layer.bias for layer in layers if layer.bias is not None], "weight_decay": 0.0})
    return groups


def check_per_layer(value: Any, n: int, what: str) -> None:
    if isinstance(value, list) and len(value) != n:
        raise ValueError(f"{what} must be one number or a list of {n} (one per layer), got {len(value)}")


def flat_size(shape: list[int]) -> int:
    return math.prod(shape)


class TemperedSigmoid(nn.Module):
    """The logistic sigmoid of temperature T: f(net) = 1 / (1 + exp(-net / T)) (Bečková et al. 2020, eq. 1).
    Small T approaches a step function, large T a linear one around 0."""

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, net: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(net / self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}"
