"""The denoising autoencoder of Uličný, Lundström and Byttner (2016): a trained input transform."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from rbench.defense import Defense
from rbench.plugins.models.layers import MNIST_SHAPE, Shape, flat_size

PositiveInt = Annotated[int, Field(gt=0)]


class DaeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    widths: Annotated[list[PositiveInt], Field(min_length=1)] = [1000, 500, 250, 30]
    #: the hidden units' nonlinearity (the output is always a sigmoid)
    activation: Literal["sigmoid", "relu"] = "sigmoid"
    input_shape: Shape = MNIST_SHAPE


class DenoisingAutoencoder(nn.Module):
    """``decoder(encoder(x))``: fully connected layers of the given widths down to the code and mirrored back up,
    hidden units logistic (sigmoid) or ReLU, the sigmoid output reshaped to the input's shape."""

    def __init__(self, widths: list[int], input_shape: list[int], activation: str = "sigmoid"):
        super().__init__()
        n = flat_size(input_shape)
        down, up = [n, *widths], [*reversed(widths), n]
        self.encoder = nn.Sequential(nn.Flatten(), *_dense(down, activation))
        decoder = _dense(up, activation)
        decoder[-1] = nn.Sigmoid()  # the reconstruction lies in (0, 1), whatever the hidden units
        self.decoder = nn.Sequential(*decoder, nn.Unflatten(1, tuple(input_shape)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _dense(sizes: list[int], activation: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.Sigmoid() if activation == "sigmoid" else nn.ReLU()]
    return layers


class Dae(Defense):
    """Uličný et al. (2016)'s denoising autoencoder in front of the classifier: fully connected
    784-1000-500-250-30-250-500-1000-784 (the widths mirrored), logistic (or ReLU) hidden units, the sigmoid output
    reshaped to the input's shape, so it maps an image to a reconstruction in (0, 1). Train it with the
    ``denoising`` trainer (reconstruction of clean images from inputs with dropped pixels).

    Params: ``widths`` (default [1000, 500, 250, 30]: the encoder's layer widths, the last one the code; the
    decoder mirrors them); ``activation`` of the hidden units (default ``sigmoid``; ``relu``: the paper does not
    name its units, and a sigmoid autoencoder of this depth trained with Nesterov SGD stays at the mean image for
    thousands of steps, while ReLU units learn the digits in a few thousand: see CONTRIBUTING); ``input_shape``
    (default [1, 28, 28]).

    Trained: its weights come from its own train job (the suite gives ``dataset``, ``n_train``, ``trainer``).
    Differentiable: a composition of linear maps and sigmoids. Deterministic, does not aggregate."""

    name = "dae"
    Params = DaeParams
    trained = True

    def build(self, params: DaeParams) -> DenoisingAutoencoder:
        return DenoisingAutoencoder(params.widths, params.input_shape, params.activation)
