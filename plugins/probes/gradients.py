"""Input-gradient magnitude G(x) (Bečková et al. 2020, section 3.2): the mean absolute partial derivative of the
loss with respect to each input pixel, and how it relates to the model's confidence in the true class."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from rbench.dataset import NoParams
from rbench.estimate import correlation, median, rate
from rbench.plugins.probes.robustness import CHUNK, class_masks
from rbench.probe import Measurement, Probe, measured


def input_gradient_magnitude(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
                             ) -> tuple[np.ndarray, np.ndarray, int]:
    """(G(x) per sample, the softmax probability of the true class per sample), as float64 arrays, and how many
    classes the model tells apart (its logits' width)."""
    g, conf, classes = [], [], 0
    for i in range(0, len(x), CHUNK):
        xb = x[i:i + CHUNK].detach().clone().requires_grad_(True)
        logits = model(xb)
        classes = logits.shape[1]
        loss = F.cross_entropy(logits, y[i:i + CHUNK], reduction="sum")  # per-sample losses: independent grads
        (grad,) = torch.autograd.grad(loss, xb)
        g.append(grad.abs().flatten(1).mean(1).detach().double().cpu())
        conf.append(logits.detach().double().softmax(1).gather(1, y[i:i + CHUNK, None]).squeeze(1).cpu())
    return torch.cat(g).numpy(), torch.cat(conf).numpy(), classes


def pearson(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None]:
    """Pearson's r and its two-sided p-value; (None, None) where it is undefined (fewer than 3 samples or a
    constant input, e.g. gradients that vanish everywhere)."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None, None
    from scipy.stats import ConstantInputWarning, pearsonr  # here: scipy.stats costs a second at import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        r, p = pearsonr(a, b)
    return (None, None) if not np.isfinite(r) else (float(r), float(p))


class InputGradient(Probe):
    """``median``: the median of G(x) over the slice (with its order-statistic interval); ``class_median``: per
    class; ``correlation`` and ``p_value``: Pearson's r between G(x) and the true-class confidence over the slice
    (with Fisher's z interval), and its p-value; ``class_correlation`` and ``class_p_value``: the same within each
    class (the paper's figure 8); ``zero_fraction``: the share (%) of samples whose input gradient is exactly
    zero in float32 (vanished, e.g. in saturated sigmoids; Wilson interval). An undefined correlation is None, and
    so is every per-class measurement of a class the slice lacks (the lists hold one per class of the model)."""

    name = "input_gradient"
    Params = NoParams
    version = "3"  # 2: measurements carry their intervals; 3: one per class of the model, present or not

    def measure(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: NoParams, *,
                generator: torch.Generator) -> dict[str, Measurement | list[Measurement]]:
        g, conf, classes = input_gradient_magnitude(model, x, y)
        members = class_masks(y.cpu().numpy(), classes)
        r, p = pearson(g, conf)
        per_class = [(pearson(g[m], conf[m]), int(m.sum())) for m in members]
        return {"median": measured(median(g)), "class_median": [measured(median(g[m])) for m in members],
                "correlation": measured(correlation(r, g.size)), "p_value": p,
                "class_correlation": [measured(correlation(rp[0], n)) for rp, n in per_class],
                "class_p_value": [rp[1] for rp, _ in per_class], "zero_fraction": measured(rate(g == 0))}
