"""Calibration (Guo et al. 2017) and out-of-distribution detection metrics, from stored logits."""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rbench.estimate import Estimate
from rbench.estimate import auroc as auroc_interval  # this module's auroc() computes the value
from rbench.metric import CellData, Metric, Reference


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class ReliabilityBins(NamedTuple):
    """Per equal-width confidence bin: how many samples fall in it, their accuracy and their mean confidence
    (fractions in [0, 1]; NaN in empty bins). Bin b covers [b/bins, (b+1)/bins), the last one includes 1."""

    count: np.ndarray  # type: ignore[assignment]  # a field, shadowing tuple.count (never called on the bins)
    accuracy: np.ndarray
    confidence: np.ndarray


def reliability_bins(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> ReliabilityBins:
    """The binning behind :func:`calibration_errors` (and the reliability diagrams): a sample's confidence is
    its max softmax probability, it is correct when the argmax is its label."""
    p = softmax(logits.astype(np.float64))
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == labels)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, weights=correct.astype(np.float64), minlength=bins) / count
        confidence = np.bincount(which, weights=conf, minlength=bins) / count
    return ReliabilityBins(count, accuracy, confidence)


def calibration_errors(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, float]:
    """ECE, MCE and RMS calibration error over ``bins`` equal-width confidence bins (fractions in [0, 1]).

    ECE = sum_b n_b/N |acc_b - conf_b|, MCE = max over non-empty bins, RMS = sqrt(sum_b n_b/N (acc_b - conf_b)^2).
    """
    count, accuracy, confidence = reliability_bins(logits, labels, bins)
    full = count > 0
    weight, gap = count[full] / max(count.sum(), 1), np.abs(accuracy[full] - confidence[full])
    return {"ece": float((weight * gap).sum()), "mce": float(gap.max(initial=0.0)),
            "rms": float(np.sqrt((weight * gap * gap).sum()))}


class CalibrationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["ece", "mce", "rms"] = "ece"
    bins: Annotated[int, Field(ge=1)] = 15


class CalibrationError(Metric):
    """Expected / maximum / RMS calibration error (%) of the target on the cell's inputs (15 bins by default)."""

    name = "calibration_error"
    Params = CalibrationParams
    label = "calibration error"

    def compute(self, cell: CellData, params: CalibrationParams) -> float | None:
        pred = cell.predictions
        if not len(pred.logits):  # no sample: no calibration to speak of (the binning would call it perfect)
            return None
        return 100.0 * calibration_errors(pred.logits, pred.labels, params.bins)[params.kind]


def anomaly_scores(logits: np.ndarray, score: str) -> np.ndarray:
    """Higher = more in-distribution: max softmax probability, max logit, or the cross entropy between the
    uniform distribution and the softmax (peaked predictions have a large one)."""
    if score == "max_logit":
        return logits.max(axis=1)
    p = softmax(logits.astype(np.float64))
    if score == "msp":
        return p.max(axis=1)
    return -np.log(np.clip(p, 1e-300, None)).mean(axis=1)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores separating ``positive`` (higher) from ``negative`` (Mann-Whitney,
    ties counted one half)."""
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class OodParams(BaseModel):
    """``ood``: the evaluation whose inputs are out-of-distribution; it must hold the cell's (source, attack,
    target), i.e. run the same attack on the same source and evaluate the target (for "clean": evaluate the
    target). ``score``: the anomaly score; ``temperature``: T > 0 dividing the logits before scoring (ODIN's;
    it does not change ``max_logit``'s ranking)."""

    model_config = ConfigDict(extra="forbid")
    ood: Annotated[str, Field(min_length=1)]
    score: Literal["msp", "max_logit", "cross_entropy"] = "msp"
    temperature: Annotated[float, Field(gt=0)] = 1.0


class OodAuroc(Metric):
    """AUROC (in [0, 1]) of telling the cell's inputs (in-distribution) from the inputs of the same (source,
    attack, target) cell of the ``ood`` evaluation, by the target's anomaly score on ``logits / temperature``.

    On an attack "clean" cell both sides are clean inputs. With ``attack = "odin"`` (run in both evaluations) and
    ``score = "msp"``, ``temperature`` = the attack's, it is ODIN (Liang et al. 2018)."""

    name = "ood_auroc"
    Params = OodParams
    label = "AUROC"
    unit = ""
    fmt = ".3f"

    def references(self, params: OodParams) -> list[Reference]:
        """``ood``: an evaluation holding every cell's (source, attack, target), checked before any work."""
        return [Reference("ood", "evaluation", params.ood), Reference("ood", "attack", None, params.ood)]

    def compute(self, cell: CellData, params: OodParams) -> Estimate | None:
        inside = cell.predictions.logits.astype(np.float64) / params.temperature
        outside = cell.predictions_of(params.ood).logits.astype(np.float64) / params.temperature
        if len(inside) == 0 or len(outside) == 0:
            return None
        value = auroc(anomaly_scores(inside, params.score), anomaly_scores(outside, params.score))
        return auroc_interval(value, len(inside), len(outside))
