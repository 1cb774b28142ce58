"""The fully connected network of Bečková et al. 2020: hidden layers of logistic sigmoids of temperature T."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from rbench.model import ModelPlugin
from rbench.plugins.models.layers import MNIST_SHAPE, Shape, TemperedSigmoid, flat_size

PositiveInt = Annotated[int, Field(gt=0)]


class SigmoidMlpParams(BaseModel):
    """``widths``: hidden layer sizes (the paper: one layer of 256); ``temperature``: T of every hidden sigmoid
    (the paper's grid for MNIST: 1/64, 1/32, ..., 4, 16)."""

    model_config = ConfigDict(extra="forbid")
    widths: Annotated[list[PositiveInt], Field(min_length=1)] = [256]
    temperature: Annotated[float, Field(gt=0, le=1e3)] = 1.0
    input_shape: Shape = MNIST_SHAPE
    num_classes: PositiveInt = 10


class SigmoidMlpNet(nn.Module):
    def __init__(self, p: SigmoidMlpParams):
        super().__init__()
        sizes = [flat_size(p.input_shape), *p.widths, p.num_classes]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(TemperedSigmoid(p.temperature))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SigmoidMlp(ModelPlugin):
    """Flatten, ``widths`` hidden layers of sigmoids of temperature ``temperature``, linear logits (softmax in
    the loss)."""
    sized_on_meta = True  # build() only makes modules from its params

    name = "sigmoid_mlp"
    Params = SigmoidMlpParams

    def build(self, params: SigmoidMlpParams) -> nn.Module:
        return SigmoidMlpNet(params)
