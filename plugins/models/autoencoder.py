"""A single-layer autoencoder's code with a softmax on top (Szegedy et al.'s AE400-10)."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from rbench.model import ModelPlugin
from rbench.plugins.models.layers import MNIST_SHAPE, Activation, Shape, activation, flat_size

PositiveInt = Annotated[int, Field(gt=0)]


class AeSoftmaxParams(BaseModel):
    """``weight_decay``: the softmax layer's weights'; the encoder's decay is the trainer's (its ``weight_decay``;
    ``autoencoder_pretrain``'s ``ae_weight_decay`` while it pretrains, none when it fine-tunes)."""

    model_config = ConfigDict(extra="forbid")
    hidden: PositiveInt = 400
    activation: Activation = "sigmoid"
    weight_decay: Annotated[float, Field(ge=0)] = 1e-6
    input_shape: Shape = MNIST_SHAPE
    num_classes: PositiveInt = 10


class AeSoftmaxNet(nn.Module):
    """``encoder`` (flatten, linear, activation) -> ``classifier`` (linear logits); ``decoder`` (linear,
    sigmoid, back to the input shape) is used only by the autoencoder-pretraining trainer."""

    def __init__(self, p: AeSoftmaxParams):
        super().__init__()
        n = flat_size(p.input_shape)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(n, p.hidden), activation(p.activation))
        self.decoder = nn.Sequential(nn.Linear(p.hidden, n), nn.Sigmoid(), nn.Unflatten(1, tuple(p.input_shape)))
        self.classifier = nn.Linear(p.hidden, p.num_classes)
        self.weight_decay = p.weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.classifier.weight], "weight_decay": self.weight_decay},
                {"params": [self.classifier.bias], "weight_decay": 0.0}]


class AeSoftmax(ModelPlugin):
    """Autoencoder code + softmax: train it with the ``autoencoder_pretrain`` trainer."""
    sized_on_meta = True  # build() only makes modules from its params

    name = "ae_softmax"
    Params = AeSoftmaxParams
    #: 2: trainers other than ``autoencoder_pretrain`` train the encoder too (1: the softmax layer alone, the
    #: encoder left at its random start: stored results of version 1 under those trainers are not reused)
    version = "2"

    def build(self, params: AeSoftmaxParams) -> nn.Module:
        return AeSoftmaxNet(params)
