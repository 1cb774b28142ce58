"""Layer instability (Szegedy et al. 2013, section 4.3): upper bounds of each layer's operator norm."""

from __future__ import annotations

import weakref
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from rbench.metric import CellData, Metric
from rbench.plugins.models.layers import MNIST_SHAPE, Shape


def spectral_norms(w: torch.Tensor) -> torch.Tensor:
    """The largest singular value of each matrix in ``w`` (``(..., m, n)``), in float64: the square root of the
    largest eigenvalue of its smaller Gram matrix. Not ``torch.linalg.matrix_norm(ord=2)``: its threaded SVD (MKL's
    gesdd) took 2 s for a 100x784 weight (5 ms on one thread) while other processes kept the 2-core host busy, 3 s
    of the Szegedy quick profile's 8 s warm run then, which recomputes these bounds for its tables; this took 1-70 ms
    there after its first call (230 ms). The largest eigenvalue of the Gram matrix in float64 is the SVD's to about
    1e-15 relative."""
    w = w.double()
    if 0 in w.shape[-2:]:  # a layer with no inputs or no outputs: the zero map
        return w.new_zeros(w.shape[:-2])
    gram = w @ w.mT if w.shape[-2] <= w.shape[-1] else w.mT @ w
    return torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0).sqrt()


def layer_bounds(model: nn.Module, input_shape: list[int] = MNIST_SHAPE) -> list[tuple[str, float]]:
    """(name, upper bound of the L2 operator norm) for each linear and convolutional layer on the forward
    path, in the order a forward pass of an ``input_shape`` input runs them (unused modules, such as an
    autoencoder's decoder, are skipped).

    Linear: the spectral norm of the weight (exact). Conv2d (stride 1): the convolution is the sum over
    kernel offsets (i, j) of a shift (norm <= 1 with zero padding) composed with the 1x1 map W[:, :, i, j],
    so ``sum_ij ||W[:, :, i, j]||_2`` bounds it (the triangle inequality); for stride s > 1 the strided output
    is a sub-sampling (norm <= 1) of the stride-1 one, so the bound still holds. Biases do not enter the
    Lipschitz constant. Max-pooling and ReLU are 1-Lipschitz, sigmoid is 1/4-Lipschitz (not included).
    """
    names = {module: name for name, module in model.named_modules()}
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod)) for m in names
             if isinstance(m, nn.Linear | nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    out = []
    with torch.no_grad():
        for module in dict.fromkeys(order):
            name = names[module]
            if isinstance(module, nn.Linear):
                out.append((name, float(spectral_norms(module.weight))))
            elif isinstance(module, nn.Conv2d):
                per_offset = spectral_norms(module.weight.permute(2, 3, 0, 1))  # of (out, in/groups, kh, kw)
                out.append((name, float(per_offset.sum())))
    return out


#: model -> input shape -> its layer bounds, while the model object lives (the runner hands every cell of a model
#: the one object it loaded: a table's cells for layers 1, 2, ... and the product computed the same spectral norms
#: again each). Keyed by the object, not by ``cell.keys.model``: a key is a content key only in the runner's cells
#: (the metric kit names every model "model")
_BOUNDS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], list[float]]] = weakref.WeakKeyDictionary()


class OperatorNormParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: 1-based index of a linear/conv layer in module order, or "product" (the network's Lipschitz bound
    #: when its nonlinearities are 1-Lipschitz).
    layer: Annotated[int, Field(ge=1)] | Literal["product"] = "product"
    input_shape: Shape = MNIST_SHAPE


class OperatorNorm(Metric):
    """Upper bound of the target model's per-layer L2 operator norm (or their product). None where the model
    has fewer layers."""

    name = "operator_norm"
    Params = OperatorNormParams
    label = "operator norm bound"
    unit = ""
    fmt = ".3g"

    def compute(self, cell: CellData, params: OperatorNormParams) -> float | None:
        model, shape = cell.model, tuple(params.input_shape)  # read (and checked) for every cell
        known = _BOUNDS.setdefault(model, {})
        if shape not in known:
            known[shape] = [b for _, b in layer_bounds(model, params.input_shape)]
        bounds = known[shape]
        if params.layer == "product":
            return float(torch.tensor(bounds, dtype=torch.float64).prod())
        return bounds[params.layer - 1] if params.layer <= len(bounds) else None
