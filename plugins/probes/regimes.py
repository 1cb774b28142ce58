"""Operating regimes of a sigmoid layer (Bečková et al. 2020, section 3.1): the fractions of its net values in
the linear, nonlinear and saturated parts of the logistic sigmoid of temperature T."""

from __future__ import annotations

import math
from functools import cache
from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from rbench.estimate import mean
from rbench.plugins.models.layers import TemperedSigmoid
from rbench.plugins.probes.robustness import CHUNK
from rbench.probe import Measurement, Probe, measured


@cache
def regime_bounds(temperature: float, delta1: float, delta2: float) -> tuple[float, float]:
    """(r1, r2) for f(net) = 1 / (1 + exp(-net / T)).

    r1: the smallest net > 0 whose point (net, f(net)) lies farther than ``delta1`` (Euclidean distance) from
    the tangent at 0, y = 1/2 + net / (4T). That distance grows monotonically with net > 0 (f bends away from
    its tangent), so the crossing is found by bracketing root search.
    r2: the largest net > 0 with f'(net) > ``delta2``; f'(net) = s (1 - s) / T with s = f(net) decreases for
    net > 0, so r2 solves s (1 - s) = T delta2 in closed form: s = (1 + sqrt(1 - 4 T delta2)) / 2,
    net = T log(s / (1 - s)). Where f'(0) = 1 / (4T) <= delta2 nothing is above the threshold: r2 = 0.
    """
    slope = 1.0 / (4.0 * temperature)
    norm = math.hypot(slope, 1.0)

    def distance(net: float) -> float:
        f = 0.5 * (1.0 + math.tanh(net / (2.0 * temperature)))  # the sigmoid, without overflow
        return abs(0.5 + slope * net - f) / norm

    high = temperature
    while distance(high) <= delta1:
        high *= 2.0
    from scipy.optimize import brentq  # here: scipy costs a second at import, and every CLI call loads plugins

    r1 = brentq(lambda n: distance(n) - delta1, 0.0, high, xtol=1e-12 * max(temperature, 1e-3))
    disc = 1.0 - 4.0 * temperature * delta2
    if disc <= 0:
        return r1, 0.0
    s = (1.0 + math.sqrt(disc)) / 2.0
    return r1, temperature * math.log(s / (1.0 - s))


class RegimesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delta1: Annotated[float, Field(gt=0)] = 0.05
    delta2: Annotated[float, Field(gt=0)] = 0.0005
    #: which sigmoid layer, in forward order (-1: the last hidden layer, the paper's choice)
    layer: int = -1


class ActivationRegimes(Probe):
    """Fractions (%) of a sigmoid layer's net values in the linear part |net| <= r1, the nonlinear part
    r1 < |net| < r2 and the saturated part |net| >= r2, with the paper's thresholds (delta1 = 0.05, delta2 =
    0.0005) and the layer's own T (:class:`TemperedSigmoid`; a plain ``nn.Sigmoid`` has T = 1). Also reports
    ``r1`` and ``r2``. Where r2 <= r1 the nonlinear part is empty and the saturated one starts at r1 (the paper
    picks its thresholds so that this does not happen on its grid). Each share carries the t interval of the
    per-sample shares."""

    name = "activation_regimes"
    Params = RegimesParams
    version = "2"  # measurements carry their intervals

    def measure(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: RegimesParams, *,
                generator: torch.Generator) -> dict[str, Measurement | list[Measurement]]:
        layers = [m for m in model.modules() if isinstance(m, TemperedSigmoid | nn.Sigmoid)]
        if not layers:
            raise ValueError("the model has no sigmoid layer to measure regimes of")
        try:
            layer = layers[params.layer]
        except IndexError:
            raise ValueError(f"layer {params.layer} does not exist: the model has {len(layers)} sigmoid layers"
                             ) from None
        temperature = getattr(layer, "temperature", 1.0)
        r1, r2 = regime_bounds(temperature, params.delta1, params.delta2)
        nets: list[torch.Tensor] = []
        hook = layer.register_forward_hook(lambda _m, inputs, _o: nets.append(inputs[0].detach().abs().flatten(1)))
        try:
            with torch.no_grad():
                for i in range(0, len(x), CHUNK):
                    model(x[i:i + CHUNK])
        finally:
            hook.remove()
        net = torch.cat(nets).double()  # (samples, units)
        # per sample, the share of its units in each regime: every sample has as many units, so their mean is the
        # share over all net values, and its t interval treats the samples (not the units, which move together
        # within one input) as the independent draws
        linear = (net <= r1).double().mean(1)
        saturated = (net >= max(r1, r2) if r2 > r1 else net > r1).double().mean(1)
        shares = {"linear": linear, "nonlinear": 1.0 - linear - saturated, "saturated": saturated}
        return {**{k: measured(mean(v.cpu().numpy(), scale=100.0, bounds=(0.0, 100.0))) for k, v in shares.items()},
                "r1": r1, "r2": r2}
