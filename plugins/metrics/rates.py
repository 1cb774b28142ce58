"""Error rates, attack success, transfer and distortion: the metrics of the classic robustness tables."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from rbench.estimate import Estimate, class_balanced_rate, mean, rate
from rbench.metric import CellData, CellPlace, Metric
from rbench.plugins.metrics.worst_case import positions


class Error(Metric):
    """Error rate (%) of the target model on the cell's inputs (the adversarial set, or clean data).

    In a transfer matrix (rows = source, columns = target) this is the transfer error: adversarial sets made
    on each source model, evaluated on each target model."""

    name = "error"
    label = "error"

    def compute(self, cell: CellData, params: BaseModel) -> Estimate | None:
        pred = cell.predictions
        return rate(~pred.correct, pred.indices)


class Accuracy(Metric):
    """Accuracy (%) of the target model on the cell's inputs (100 - error)."""

    name = "accuracy"
    label = "accuracy"

    def compute(self, cell: CellData, params: BaseModel) -> Estimate | None:
        pred = cell.predictions
        return rate(pred.correct, pred.indices)


class CleanError(Metric):
    """Error rate (%) of the target model on the clean evaluation slice (whatever the cell's attack)."""

    name = "clean_error"
    label = "clean error"

    def compute(self, cell: CellData, params: BaseModel) -> Estimate | None:
        clean = cell.clean
        return rate(~clean.correct, clean.indices)


class ClassRobustnessParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: one class only (its label); None: the mean over the classes present
    of_class: int | None = None
    #: "robustness": 1 - the fraction misclassified; "error": the fraction misclassified (an attack's success)
    kind: Literal["robustness", "error"] = "robustness"


class ClassRobustness(Metric):
    """Class robustness (Bečková et al. 2020, section 3.2), in %: for a class, 1 - the fraction of the cell's
    inputs of that class (adversarial or clean) the target misclassifies; network robustness is the mean over the
    classes, so every class weighs the same whatever its size. ``kind = "error"`` gives the complement."""

    name = "class_robustness"
    Params = ClassRobustnessParams
    label = "class robustness"

    def compute(self, cell: CellData, params: ClassRobustnessParams) -> Estimate | None:
        pred = cell.predictions
        counted = pred.correct if params.kind == "robustness" else ~pred.correct
        if params.of_class is not None:
            chosen = pred.labels == params.of_class
            return rate(counted[chosen], pred.indices[chosen])
        return class_balanced_rate(counted, pred.labels, pred.indices)


def source_flags(cell: CellData) -> np.ndarray:
    """The set's success flags, as the flags of the cell's source: a ValueError where the set was crafted on
    another model (a defended source's transferred sets: the flags are its undefended model's, and a row would
    show that model's numbers under the defended model's name)."""
    assert cell.adv is not None
    if cell.crafted_on != cell.source:
        raise ValueError(f"the set was crafted on {cell.crafted_on!r} (threat_model = \"transfer\"): its success "
                         f"flags are that model's, not {cell.source!r}'s; tabulate {cell.source!r}'s error or "
                         "accuracy on it instead")
    return cell.adv.success


def clean_correct(cell: CellData, of_target: bool = False) -> np.ndarray:
    """Per sample of the cell's set, whether its source classified the clean image correctly (from the source's
    outputs on the clean slice: the cell's ``clean`` where the source is the cell's target, as in a white-box
    table); a ValueError where the cell's target is another model, whose clean outputs would not say.
    ``of_target``: whether the cell's target classified it correctly (any target: the cell's ``clean``)."""
    assert cell.adv is not None
    if cell.adv.generated:
        raise ValueError("among = \"correct\" needs clean images to be classified; a generated set has none")
    if cell.target != cell.source and not of_target:
        raise ValueError(f"among = \"correct\" counts the samples {cell.source!r} classifies correctly when clean; "
                         f"this cell evaluates {cell.target!r}: use it where the target is the source")
    clean = cell.clean
    if not np.isin(cell.adv.indices, clean.indices).all():
        raise ValueError("the clean outputs do not cover the set's samples")
    return clean.correct[positions(clean.indices, cell.adv.indices)]


def among_problem(params: AmongParams, place: CellPlace) -> str | None:
    """``among = "correct"`` needs the source's clean predictions of the set's own images: a cell whose target is
    its source, on an attack of test images (not a generated set)."""
    if params.among != "correct" or place.attack == "clean":
        return None
    if place.generated:
        return f"among = \"correct\" needs clean images; attack {place.attack!r} generates its inputs"
    if place.target != place.source:
        return (f"among = \"correct\" counts the images {place.source!r} classifies correctly when clean, so the "
                f"cell's target must be its source (it is {place.target!r})")
    return None


class AmongParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: which samples count: "all" of the set (an image the source misclassifies already is a success with no
    #: perturbation needed, as in foolbox), or "correct": those the source classifies correctly when clean
    among: Literal["all", "correct"] = "all"


class SuccessRate(Metric):
    """Attack success rate (%): the fraction of the set the attack reports as adversarial on its source
    model (misclassified, or classified as the target). ``among = "all"`` (default) counts every sample, so an
    image the source misclassifies already counts as a success (foolbox's convention); ``"correct"`` only those
    the source classifies correctly when clean (the usual "attack success rate on correctly classified
    inputs"). Not defined for clean inputs; an error for a defended source's transferred sets (their flags are
    the undefended model's)."""

    name = "success_rate"
    Params = AmongParams
    label = "success rate"

    def cell_problem(self, params: AmongParams, place: CellPlace) -> str | None:
        return among_problem(params, place)

    def compute(self, cell: CellData, params: AmongParams) -> Estimate | None:
        if cell.adv is None:
            return None
        flags, indices = source_flags(cell), cell.adv.indices
        if params.among == "correct":
            keep = clean_correct(cell)
            flags, indices = flags[keep], indices[keep]
        return rate(flags, indices)


class TransferParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: which of the samples that fooled the source count: "all" (an image the target misclassifies already
    #: counts as transferred, as in foolbox), or "correct": those the target classifies correctly when clean
    among: Literal["all", "correct"] = "all"


class TransferRate(Metric):
    """Of the samples that fooled the model the set was crafted on (the source, or under ``threat_model =
    "transfer"`` a defended source's undefended model), the fraction (%) the target misclassifies too.
    ``among = "correct"``: only those the target classifies correctly when clean, so that an image the target
    gets wrong anyway does not count as a transfer."""

    name = "transfer_rate"
    Params = TransferParams
    label = "transfer rate"

    def cell_problem(self, params: TransferParams, place: CellPlace) -> str | None:
        if params.among == "correct" and place.attack != "clean" and place.generated:
            return f"among = \"correct\" needs clean images; attack {place.attack!r} generates its inputs"
        return None

    def compute(self, cell: CellData, params: TransferParams) -> Estimate | None:
        if cell.adv is None:
            return None
        keep = cell.adv.success.copy()
        if params.among == "correct":
            keep &= clean_correct(cell, of_target=True)
        return rate(~cell.predictions.correct[keep], cell.predictions.indices[keep])


class DistortionParams(AmongParams):
    norm: Literal["l2", "linf", "rms", "mean_abs"] = "rms"
    over: Literal["successful", "all"] = "successful"


class Distortion(Metric):
    """Mean per-sample distortion of the adversarial set, in the chosen norm (``rms`` = sqrt(sum d^2 / n),
    Szegedy et al.'s measure), over the successful adversarials (default) or all samples; ``among = "correct"``
    leaves out the images the source misclassifies when clean (a success there may need no perturbation: an
    untouched image counts with distortion 0)."""

    name = "distortion"
    Params = DistortionParams
    label = "distortion"
    unit = ""
    fmt = ".4f"

    def cell_problem(self, params: DistortionParams, place: CellPlace) -> str | None:
        return among_problem(params, place)

    def compute(self, cell: CellData, params: DistortionParams) -> Estimate | None:
        if cell.adv is None or cell.adv.generated:  # a generated set has no clean input to be distorted from
            return None
        values = cell.adv.distortion[params.norm]
        keep = np.ones(len(values), dtype=bool)
        if params.over == "successful":
            keep &= source_flags(cell)
        if params.among == "correct":
            keep &= clean_correct(cell)
        return mean(values[keep], bounds=(0.0, math.inf))
