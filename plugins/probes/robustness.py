"""Accuracy and FGSM class robustness while a model trains (Bečková et al. 2020, section 3.2)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench.dataset import NoParams
from rbench.estimate import class_balanced_rate, rate
from rbench.plugins.attacks.fast_gradient import EpsParams, Fgsm
from rbench.probe import Measurement, Probe, measured

CHUNK = 2000  # images per forward pass: bounded memory on any slice size


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[i:i + CHUNK]).argmax(1) for i in range(0, len(x), CHUNK)])


def per_class(correct: np.ndarray, labels: np.ndarray) -> list:
    """The share (%) of correct samples of each class present in ``labels``, in class order, each with its Wilson
    interval (:func:`rbench.probe.measured`)."""
    return [measured(rate(correct[labels == c])) for c in np.unique(labels)]


class CleanAccuracy(Probe):
    """``accuracy``: accuracy (%) on the slice; ``class_accuracy``: per class (%), classes 0..K-1; each with its
    Wilson interval."""

    name = "accuracy"
    Params = NoParams
    version = "2"  # measurements carry their intervals

    def measure(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: NoParams, *,
                generator: torch.Generator) -> dict[str, Measurement | list[Measurement]]:
        correct, labels = (predict(model, x) == y).cpu().numpy(), y.cpu().numpy()
        return {"accuracy": measured(rate(correct)), "class_accuracy": per_class(correct, labels)}


class FgsmRobustnessParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eps: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=1)] = [0.1]


class FgsmRobustness(Probe):
    """FGSM class robustness at each ``eps``: class robustness = 1 - the fraction of the class's adversarials
    that are misclassified, network robustness = their mean over classes (both in %). Keys ``robustness@<eps>``
    (with the class-balanced rate's normal interval) and ``class_robustness@<eps>`` (one value per class, each
    with its Wilson interval)."""

    name = "fgsm_robustness"
    Params = FgsmRobustnessParams
    version = "2"  # measurements carry their intervals

    def measure(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: FgsmRobustnessParams, *,
                generator: torch.Generator) -> dict[str, Measurement | list[Measurement]]:
        out: dict[str, Any] = {}
        labels = y.cpu().numpy()
        for eps in params.eps:
            correct = []
            for i in range(0, len(x), CHUNK):
                xb, yb = x[i:i + CHUNK], y[i:i + CHUNK]
                adv = Fgsm().run(model, xb, yb, EpsParams(eps=eps)).x_adv
                correct.append(predict(model, adv) == yb)
            robust = torch.cat(correct).cpu().numpy()
            out[f"robustness@{eps:g}"] = measured(class_balanced_rate(robust, labels))
            out[f"class_robustness@{eps:g}"] = per_class(robust, labels)
        return out
