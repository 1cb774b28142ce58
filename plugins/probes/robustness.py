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
def predict(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(the predicted classes of ``x``, how many classes the model tells apart: its logits' width)."""
    logits = [model(x[i:i + CHUNK]) for i in range(0, len(x), CHUNK)]
    return torch.cat([batch.argmax(1) for batch in logits]), logits[0].shape[1] if logits else 0


def class_masks(labels: np.ndarray, classes: int) -> list[np.ndarray]:
    """The samples of each class 0..``classes`` - 1 in ``labels``: per-class measurements keep class c at index c
    (the ``observed`` metric's ``index``), undefined (None) for a class the slice does not hold. Only the classes
    present, as before version 3, put class 4's value at index 3 of a slice without class 3."""
    return [labels == c for c in range(classes)]


def per_class(correct: np.ndarray, labels: np.ndarray, classes: int) -> list:
    """The share (%) of correct samples of each class 0..``classes`` - 1 (:func:`class_masks`), each with its
    Wilson interval (:func:`rbench.probe.measured`)."""
    return [measured(rate(correct[members])) for members in class_masks(labels, classes)]


class CleanAccuracy(Probe):
    """``accuracy``: accuracy (%) on the slice; ``class_accuracy``: per class (%), classes 0..K-1 (None for a class
    the slice lacks); each with its Wilson interval."""

    name = "accuracy"
    Params = NoParams
    version = "3"  # 2: measurements carry their intervals; 3: one per class of the model, present or not

    def measure(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: NoParams, *,
                generator: torch.Generator) -> dict[str, Measurement | list[Measurement]]:
        predicted, classes = predict(model, x)
        correct, labels = (predicted == y).cpu().numpy(), y.cpu().numpy()
        return {"accuracy": measured(rate(correct)), "class_accuracy": per_class(correct, labels, classes)}


class FgsmRobustnessParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eps: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=1)] = [0.1]


class FgsmRobustness(Probe):
    """FGSM class robustness at each ``eps``: class robustness = 1 - the fraction of the class's adversarials
    that are misclassified, network robustness = their mean over classes (both in %). Keys ``robustness@<eps>``
    (with the class-balanced rate's normal interval) and ``class_robustness@<eps>`` (one value per class of the
    model, each with its Wilson interval; None for a class the slice lacks)."""

    name = "fgsm_robustness"
    Params = FgsmRobustnessParams
    version = "3"  # 2: measurements carry their intervals; 3: one per class of the model, present or not

    def measure(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: FgsmRobustnessParams, *,
                generator: torch.Generator) -> dict[str, Measurement | list[Measurement]]:
        out: dict[str, Any] = {}
        labels = y.cpu().numpy()
        for eps in params.eps:
            correct, classes = [], 0
            for i in range(0, len(x), CHUNK):
                xb, yb = x[i:i + CHUNK], y[i:i + CHUNK]
                adv = Fgsm().run(model, xb, yb, EpsParams(eps=eps)).x_adv
                predicted, classes = predict(model, adv)
                correct.append(predicted == yb)
            robust = torch.cat(correct).cpu().numpy()
            out[f"robustness@{eps:g}"] = measured(class_balanced_rate(robust, labels))
            out[f"class_robustness@{eps:g}"] = per_class(robust, labels, classes)
        return out
