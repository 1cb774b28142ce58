"""Accuracy and FGSM class robustness while a model trains (Bečková et al. 2020, section 3.2)."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench.dataset import NoParams
from rbench.plugins.attacks.fast_gradient import EpsParams, Fgsm
from rbench.plugins.metrics.rates import class_accuracies
from rbench.probe import Probe

CHUNK = 2000  # images per forward pass: bounded memory on any slice size


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[i:i + CHUNK]).argmax(1) for i in range(0, len(x), CHUNK)])


class CleanAccuracy(Probe):
    """``accuracy``: accuracy (%) on the slice; ``class_accuracy``: per class (%), classes 0..K-1."""

    name = "accuracy"
    Params = NoParams

    def measure(self, model, x, y, params, *, generator):
        per_class = class_accuracies(predict(model, x).cpu().numpy() == y.cpu().numpy(), y.cpu().numpy())
        return {"accuracy": 100.0 * float((predict(model, x) == y).float().mean()),
                "class_accuracy": [100.0 * v for v in per_class]}


class FgsmRobustnessParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eps: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=1)] = [0.1]


class FgsmRobustness(Probe):
    """FGSM class robustness at each ``eps``: class robustness = 1 - the fraction of the class's adversarials
    that are misclassified, network robustness = their mean over classes (both in %). Keys ``robustness@<eps>``
    and ``class_robustness@<eps>`` (one value per class)."""

    name = "fgsm_robustness"
    Params = FgsmRobustnessParams

    def measure(self, model, x, y, params, *, generator):
        out: dict[str, float | list[float]] = {}
        labels = y.cpu().numpy()
        for eps in params.eps:
            correct = []
            for i in range(0, len(x), CHUNK):
                xb, yb = x[i:i + CHUNK], y[i:i + CHUNK]
                adv = Fgsm().run(model, xb, yb, EpsParams(eps=eps)).x_adv
                correct.append(predict(model, adv) == yb)
            per_class = class_accuracies(torch.cat(correct).cpu().numpy(), labels)
            out[f"robustness@{eps:g}"] = 100.0 * sum(per_class) / len(per_class)
            out[f"class_robustness@{eps:g}"] = [100.0 * v for v in per_class]
        return out
