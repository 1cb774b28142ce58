"""A LeNet-style CNN: conv -> act -> 2x2 max-pool blocks, one hidden fully connected layer, logits."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from rbench.model import ModelPlugin
from rbench.plugins.models.layers import (
    MNIST_SHAPE,
    Activation,
    Shape,
    activation,
    check_per_layer,
    decay_groups,
    per_layer,
)

PositiveInt = Annotated[int, Field(gt=0)]
Rate = Annotated[float, Field(ge=0, lt=1)]


class LeNetParams(BaseModel):
    """``channels``: output channels of each conv block; ``dropout``: one rate, or one per layer
    (each conv block, then the hidden layer: ``len(channels) + 1`` values), applied after that layer."""

    model_config = ConfigDict(extra="forbid")
    channels: Annotated[list[PositiveInt], Field(min_length=1)] = [20, 50]
    kernel_size: PositiveInt = 5
    hidden: PositiveInt = 500
    activation: Activation = "relu"
    dropout: Rate | list[Rate] = [0.0, 0.0, 0.5]
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    input_shape: Shape = MNIST_SHAPE
    num_classes: PositiveInt = 10

    @model_validator(mode="after")
    def _check(self) -> LeNetParams:
        check_per_layer(self.dropout, len(self.channels) + 1, "dropout")
        size = self.input_shape[1]
        for _ in self.channels:
            size = (size - self.kernel_size + 1) // 2
        if size < 1:
            raise ValueError(f"{len(self.channels)} conv blocks of kernel {self.kernel_size} do not fit a "
                             f"{self.input_shape[1]}-pixel input")
        return self


class LeNetNet(nn.Module):
    def __init__(self, p: LeNetParams):
        super().__init__()
        drops = per_layer(p.dropout, len(p.channels) + 1, "dropout")
        layers: list[nn.Module] = []
        c_in, size = p.input_shape[0], p.input_shape[1]
        self.weighted: list[nn.Module] = []
        for c_out, rate in zip(p.channels, drops, strict=False):
            conv = nn.Conv2d(c_in, c_out, p.kernel_size)
            self.weighted.append(conv)
            layers += [conv, activation(p.activation), nn.MaxPool2d(2)]
            if rate > 0:
                layers.append(nn.Dropout(rate))
            c_in, size = c_out, (size - p.kernel_size + 1) // 2
        hidden, out = nn.Linear(c_in * size * size, p.hidden), nn.Linear(p.hidden, p.num_classes)
        self.weighted += [hidden, out]
        layers += [nn.Flatten(), hidden, activation(p.activation)]
        if drops[-1] > 0:
            layers.append(nn.Dropout(drops[-1]))
        layers.append(out)
        self.net = nn.Sequential(*layers)
        self.weight_decay = p.weight_decay

    def forward(self, x):
        return self.net(x)

    def param_groups(self) -> list[dict[str, Any]]:
        return decay_groups(self.weighted, [self.weight_decay] * len(self.weighted))


class LeNet(ModelPlugin):
    """LeNet-style CNN (defaults: Caffe's LeNet, 20-50 channels of 5x5, 500 hidden, dropout 0.5 before logits)."""

    name = "lenet"
    Params = LeNetParams

    def build(self, params: LeNetParams) -> nn.Module:
        return LeNetNet(params)
