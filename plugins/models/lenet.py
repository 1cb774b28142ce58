"""A LeNet-style CNN: conv -> act -> 2x2 max-pool blocks, one hidden fully connected layer, logits."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator
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

#: Params added after models were stored, with the values that build the network exactly as before: a params
#: dump leaves them out at these values, so the cache keys of existing suites do not change.
_LATER_DEFAULTS: dict[str, Any] = {"input_dropout": 0.0, "logit_dropout": 0.0, "init": "default"}


class LeNetParams(BaseModel):
    """``channels``: output channels of each conv block; ``dropout``: one rate, or one per layer
    (each conv block, then the hidden layer: ``len(channels) + 1`` values), applied after that layer;
    ``input_dropout``: dropout on the input pixels; ``logit_dropout``: dropout on the output layer's nodes (the
    logits, in training only); ``init``: ``"default"`` (torch's layer initialisation) or ``"xavier"`` (Glorot &
    Bengio's uniform weights, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), and zero biases)."""

    model_config = ConfigDict(extra="forbid")
    channels: Annotated[list[PositiveInt], Field(min_length=1)] = [20, 50]
    kernel_size: PositiveInt = 5
    hidden: PositiveInt = 500
    activation: Activation = "relu"
    dropout: Rate | list[Rate] = [0.0, 0.0, 0.5]
    input_dropout: Rate = 0.0
    logit_dropout: Rate = 0.0
    init: Literal["default", "xavier"] = "default"
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

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        """The params as a dict, without the later params left at the values that change nothing (so a default
        LeNet's job keys are those it had before they existed)."""
        data = handler(self)
        for name, default in _LATER_DEFAULTS.items():
            if name in data and data[name] == default:
                del data[name]
        return data


class LeNetNet(nn.Module):
    def __init__(self, p: LeNetParams):
        super().__init__()
        drops = per_layer(p.dropout, len(p.channels) + 1, "dropout")
        layers: list[nn.Module] = []
        if p.input_dropout > 0:
            layers.append(nn.Dropout(p.input_dropout))
        c_in, size = p.input_shape[0], p.input_shape[1]
        self.weighted: list[nn.Conv2d | nn.Linear] = []
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
        if p.logit_dropout > 0:
            layers.append(nn.Dropout(p.logit_dropout))
        self.net = nn.Sequential(*layers)
        self.weight_decay = p.weight_decay
        if p.init == "xavier":  # after torch's own initialisation: "default" draws exactly what it always did
            for layer in self.weighted:
                nn.init.xavier_uniform_(layer.weight)
                assert layer.bias is not None  # every weighted layer is built with a bias
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def param_groups(self) -> list[dict[str, Any]]:
        return decay_groups(self.weighted, [self.weight_decay] * len(self.weighted))


class LeNet(ModelPlugin):
    """LeNet-style CNN (defaults: Caffe's LeNet's layers, 20-50 channels of 5x5 and 500 hidden, plus dropout 0.5
    before the logits and an activation after each convolution, which Caffe's has not).

    Uličný, Lundström & Byttner 2016 ("Robustness of deep convolutional neural networks for image
    recognition") use this network (two 5x5 conv layers of 20 and 50 channels, two 2x2 max-pools, 500 hidden
    units, 10 outputs; Xavier initialisation, SGD with momentum and L2). Their Table 1 gives dropout rates for
    five places; they map onto the params as:

    ============  =========================================  ============  ==========================
    Table 1       param                                      "Inp" model   "All" model
    ============  =========================================  ============  ==========================
    Input         ``input_dropout`` (on the input pixels)    0.2           0.2
    Conv1         ``dropout[0]`` (after conv1's pool)        0             0.2
    Conv2         ``dropout[1]`` (after conv2's pool)        0             0.2
    Full          ``dropout[2]`` (after the hidden layer)    0             0.5
    Output        ``logit_dropout`` (on the output nodes)    0             0.5
    ============  =========================================  ============  ==========================

    so "All" is ``{ input_dropout = 0.2, dropout = [0.2, 0.2, 0.5], logit_dropout = 0.5, init = "xavier" }`` and
    the undefended LeNet is ``{ dropout = 0, init = "xavier" }`` (this plugin's default ``dropout`` has 0.5 on the
    hidden layer, which Caffe's LeNet does not). The L2 penalty is the model's ``weight_decay`` (the model's own
    optimizer groups take precedence over a trainer's ``weight_decay``; biases are not decayed). Caffe's
    ``xavier`` filler scales by the fan-in only (U(-a, a), a = sqrt(3 / fan_in)); ``init = "xavier"`` is
    Glorot & Bengio's (fan-in + fan-out), which the paper cites. Caffe's example also applies no nonlinearity
    after its convolutions; this plugin applies ``activation`` after each.

    With the defaults (``input_dropout = 0``, ``logit_dropout = 0``, ``init = "default"``) the network, its
    parameter names and its random draws are exactly those of the plugin before these params existed, and
    its params dump (hence every job key) is unchanged too.
    """
    sized_on_meta = True  # build() only makes modules from its params

    name = "lenet"
    Params = LeNetParams

    def build(self, params: LeNetParams) -> nn.Module:
        return LeNetNet(params)
