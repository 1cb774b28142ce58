"""A configurable multi-layer perceptron (also the pixel-level softmax when ``widths = []``)."""

from __future__ import annotations

from typing import Annotated, Any

import torch
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
    flat_size,
    per_layer,
)

PositiveInt = Annotated[int, Field(gt=0)]
Rate = Annotated[float, Field(ge=0, lt=1)]
NonNegative = Annotated[float, Field(ge=0)]


class MlpParams(BaseModel):
    """``widths``: hidden layer sizes; ``weight_decay`` and ``dropout``: one value or one per linear layer
    (``len(widths) + 1`` layers; dropout is applied to each layer's input)."""

    model_config = ConfigDict(extra="forbid")
    widths: list[PositiveInt] = [256, 256]
    activation: Activation = "relu"
    dropout: Rate | list[Rate] = 0.0
    weight_decay: NonNegative | list[NonNegative] = 0.0
    input_shape: Shape = MNIST_SHAPE
    num_classes: PositiveInt = 10

    @model_validator(mode="after")
    def _lengths(self) -> MlpParams:
        check_per_layer(self.dropout, len(self.widths) + 1, "dropout")
        check_per_layer(self.weight_decay, len(self.widths) + 1, "weight_decay")
        return self


class MlpNet(nn.Module):
    def __init__(self, p: MlpParams):
        super().__init__()
        sizes = [flat_size(p.input_shape), *p.widths, p.num_classes]
        drops = per_layer(p.dropout, len(sizes) - 1, "dropout")
        self.linears = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, linear in enumerate(self.linears):
            if drops[i] > 0:
                layers.append(nn.Dropout(drops[i]))
            layers.append(linear)
            if i < len(self.linears) - 1:
                layers.append(activation(p.activation))
        self.net = nn.Sequential(*layers)
        self.decays = per_layer(p.weight_decay, len(self.linears), "weight_decay")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def param_groups(self) -> list[dict[str, Any]]:
        return decay_groups(self.linears, self.decays)


class Mlp(ModelPlugin):
    """Fully connected network: flatten, ``widths`` hidden layers with ``activation``, linear logits."""
    sized_on_meta = True  # build() only makes modules from its params

    name = "mlp"
    Params = MlpParams

    def build(self, params: MlpParams) -> nn.Module:
        return MlpNet(params)
