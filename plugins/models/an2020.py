"""The simple CNNs of An et al. 2020, "An ensemble of simple convolutional neural network models for MNIST digit
recognition" (arXiv:2008.10400): unpadded k x k convolutions, each followed by batch norm and the activation,
no pooling, then one linear layer (with batch norm) to the logits."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from rbench.model import ModelPlugin
from rbench.plugins.models.layers import MNIST_SHAPE, Shape, activation

#: the paper's channel widths per kernel size (M3: 10 layers, M5: 5 layers, M7: 4 layers)
CHANNELS = {3: [32, 48, 64, 80, 96, 112, 128, 144, 160, 176], 5: [32, 64, 96, 128, 160], 7: [48, 96, 144, 192]}


class An2020Params(BaseModel):
    """``layers`` keeps the first that many convolutions of the paper's model (the shallower ensemble members
    of the MLSS report); ``activation`` is the paper's ReLU or the report's GELU."""

    model_config = ConfigDict(extra="forbid")
    kernel_size: Literal[3, 5, 7] = 3
    activation: Literal["relu", "gelu"] = "relu"
    layers: Annotated[int, Field(ge=1)] | None = None
    input_shape: Shape = MNIST_SHAPE
    num_classes: Annotated[int, Field(gt=0)] = 10

    @model_validator(mode="after")
    def _check(self) -> An2020Params:
        full = len(CHANNELS[self.kernel_size])
        if self.layers is not None and self.layers > full:
            raise ValueError(f"the kernel-{self.kernel_size} model has {full} layers; 'layers' is {self.layers}")
        return self


class An2020Net(nn.Module):
    def __init__(self, p: An2020Params):
        super().__init__()
        widths = CHANNELS[p.kernel_size][: p.layers]
        layers: list[nn.Module] = []
        c_in, size = p.input_shape[0], p.input_shape[1]
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, p.kernel_size, bias=False), nn.BatchNorm2d(c_out),
                       activation(p.activation)]
            c_in, size = c_out, size - p.kernel_size + 1
        layers += [nn.Flatten(), nn.Linear(c_in * size * size, p.num_classes, bias=False),
                   nn.BatchNorm1d(p.num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class An2020(ModelPlugin):
    """One member of An et al.'s ensemble (M3, M5 or M7 by ``kernel_size``)."""
    sized_on_meta = True  # build() only makes modules from its params

    name = "an2020_cnn"
    Params = An2020Params

    def build(self, params: An2020Params) -> nn.Module:
        return An2020Net(params)
