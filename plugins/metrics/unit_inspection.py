"""Unit-level inspection of phi(x) (Szegedy et al. 2013, section 3): how semantically coherent are the test images
that maximise the activation along single units (the natural basis) and along random directions?

phi_l(x) is the output of an MLP's l-th hidden layer after its nonlinearity (``layer = 1``: the first hidden
layer). For a direction v of that space (a natural basis vector e_i, or a random unit vector), the top-k images are
the k inputs with the largest <phi_l(x), v>; their **label purity** is the fraction of them that share their most
common true label. The paper's claim: random directions are as coherent as single units.

The shared computation (:func:`inspect_units`) serves both the ``unit_purity`` metric and the ``unit_grids`` file
reporter (:mod:`rbench.plugins.reporters.unit_grids`), so the drawn images are exactly the ones scored.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from rbench.metric import CellData, Metric
from rbench.plugins.models.mlp import MlpNet

Basis = Literal["natural", "random"]


def hidden_layers(model: nn.Module) -> int:
    """How many hidden layers ``model`` (an ``mlp`` model, :class:`MlpNet`) has; TypeError for any other model."""
    if not isinstance(model, MlpNet):
        raise TypeError(f"unit inspection needs an 'mlp' model (MlpNet), not {type(model).__name__}")
    return len(model.linears) - 1


def hidden_activations(model: nn.Module, x: torch.Tensor, layer: int, batch: int = 4096) -> torch.Tensor:
    """phi_layer(x): the output of ``model``'s ``layer``-th hidden layer (1-based) after its nonlinearity, float64
    (N, width), computed in double precision so that saturated sigmoid units still rank their inputs. The model
    must be in eval mode (dropout is then the identity) and is not modified. ValueError for a layer the model
    does not have."""
    count = hidden_layers(model)
    if not 1 <= layer <= count:
        raise ValueError(f"layer {layer}: the model has {count} hidden layer{'s' if count != 1 else ''}")
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            h, seen = x[start:start + batch].to(torch.float64), 0
            for module in cast(MlpNet, model).net:  # hidden_layers checked that it is one
                if isinstance(module, nn.Linear):
                    h = F.linear(h, module.weight.to(h), module.bias.to(h))
                    seen += 1
                    continue
                h = module(h)  # parameter-free: flatten, dropout (identity in eval mode), the activation
                if seen == layer and not isinstance(module, nn.Dropout | nn.Flatten):
                    break  # the activation right after the layer-th linear layer
            outs.append(h)
    return torch.cat(outs)


def directions(width: int, basis: Basis, count: int | None, seed: int) -> tuple[torch.Tensor, list[str]]:
    """(V float64 (width, D), a name for each column). ``natural``: basis vectors e_i of ``count`` units taken in
    the order of a permutation seeded by ``seed`` (all units when ``count`` is None or larger); ``random``:
    ``count`` directions (``width`` when None) drawn i.i.d. Gaussian from a generator seeded by ``seed`` and
    normalised to unit length."""
    g = torch.Generator().manual_seed(seed)
    if basis == "natural":
        units = torch.randperm(width, generator=g)[:count].tolist()
        return torch.eye(width, dtype=torch.float64)[:, units], [f"unit {u}" for u in units]
    d = width if count is None else count
    v = torch.randn(width, d, generator=g, dtype=torch.float64)
    return v / v.norm(dim=0, keepdim=True), [f"direction {i}" for i in range(d)]


def label_purity(labels: torch.Tensor) -> torch.Tensor:
    """Per row of ``labels`` (D, k) int: the fraction of the k labels equal to the row's most common one."""
    if labels.numel() == 0:
        return torch.zeros(len(labels), dtype=torch.float64)
    counts = F.one_hot(labels.long(), int(labels.max()) + 1).sum(dim=1)
    return counts.max(dim=1).values.to(torch.float64) / labels.shape[1]


@dataclass
class Inspection:
    """For each of D directions: its ``name``, the indices of its ``top`` k inputs (D, k), highest first (ties:
    the lower index first), and their label ``purity`` (D,) as a fraction."""

    names: list[str]
    top: torch.Tensor
    purity: torch.Tensor


#: model -> (inputs' id, layer[, basis, count, seed]) -> (a weak reference to the inputs, phi or the top
#: :data:`KEPT` of the ranking), while the model object lives: a table's mean and spread cells of one basis rank the
#: same directions, and both bases' cells of a layer read the same phi (about 20 ms each for a 10000-image
#: evaluation). The inputs are checked to be the same object (a freed tensor's id can be reused), never compared by
#: value; entries of freed inputs are dropped when the next one is kept
_MEMO: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[weakref.ref, torch.Tensor]]] = \
    weakref.WeakKeyDictionary()
#: how many of each direction's top inputs are kept (the metric's ``k`` is at most this)
KEPT = 1000


def _memoized(model: nn.Module, x: torch.Tensor, key: tuple, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``make()`` for ``model``, ``x`` and ``key``, computed once while both objects live (:data:`_MEMO`)."""
    memo = _MEMO.setdefault(model, {})
    ref, value = memo.get((id(x), *key), (None, None))
    if ref is None or ref() is not x or value is None:
        value = make()
        for dead in [k for k, (r, _) in memo.items() if r() is None]:
            del memo[dead]
        memo[(id(x), *key)] = (weakref.ref(x), value)
    return value


def inspect_units(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layer: int, basis: Basis, k: int,
                  count: int | None, seed: int) -> Inspection:
    """The top-``k`` inputs of ``x`` along each direction of :func:`directions` in phi_``layer``, and the label
    purity of each top-k by ``y``. ValueError when ``k`` exceeds the number of inputs. The model and ``x`` must stay
    as they are while they live: their phi and ranking are kept for the next call (:data:`_MEMO`, for ``k`` up to
    :data:`KEPT`)."""
    if k > len(x):
        raise ValueError(f"k = {k} exceeds the {len(x)} inputs of the evaluation")
    phi = _memoized(model, x, (layer,), lambda: hidden_activations(model, x, layer))
    v, names = directions(phi.shape[1], basis, count, seed)

    def ranking(keep: int) -> torch.Tensor:  # (keep, D): ties, the lower index first
        return torch.sort(phi @ v, dim=0, descending=True, stable=True).indices[:keep].clone()

    ranked = ranking(k) if k > KEPT else _memoized(model, x, (layer, basis, count, seed), lambda: ranking(KEPT))
    top = ranked[:k].T.clone(memory_format=torch.contiguous_format)  # (D, k), the caller's own
    return Inspection(names, top, label_purity(y[top]))


class UnitPurityParams(BaseModel):
    """``layer``: 1-based hidden layer of an ``mlp`` model; ``basis``: single units or random directions; ``k``:
    images per direction; ``directions``: how many (None: as many as the layer has units); ``seed``: which units
    and which random directions; ``statistic``: mean or standard deviation (ddof 0) of the purity over the
    directions."""

    model_config = ConfigDict(extra="forbid")
    layer: Annotated[int, Field(ge=1)] = 1
    basis: Basis = "natural"
    k: Annotated[int, Field(ge=1, le=KEPT)] = 10
    directions: Annotated[int, Field(ge=1, le=100_000)] | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    statistic: Literal["mean", "std"] = "mean"


class UnitPurity(Metric):
    """Label purity (%) of the top-k clean inputs of the cell's evaluation along single units or random
    directions of the target's hidden layer (mean or spread over the directions).

    Reads ``cell.model``, ``cell.inputs`` and ``cell.clean``: the last only so that the cell's provenance names
    the stored predictions whose spec records the data slice (the ``unit_grids`` reporter finds the images
    through it); their labels must be the inputs' labels. An error cell for a model that is not an ``mlp`` or
    lacks the layer."""

    name = "unit_purity"
    Params = UnitPurityParams
    label = "label purity"
    unit = "%"
    fmt = ".1f"

    def compute(self, cell: CellData, params: UnitPurityParams) -> float | None:
        x, y = cell.inputs
        if not np.array_equal(cell.clean.labels, y.numpy()):
            raise ValueError("the clean predictions' labels are not the evaluation's labels")
        found = inspect_units(cell.model, x, y, params.layer, params.basis, params.k, params.directions,
                              params.seed)
        purity = 100.0 * found.purity
        return float(purity.mean() if params.statistic == "mean" else purity.std(correction=0))
