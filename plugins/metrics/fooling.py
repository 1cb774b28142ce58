"""Metrics of fooling images (Nguyen et al. 2015): inputs generated for target classes from nothing.

A cell's inputs are a set with targets (a generator attack's, see :class:`rbench.attack.GeneratorAttack`); each
metric selects its images (all, or those of one class ``cls``), and none applies to clean inputs (None):

- ``fooling_confidence`` (%): the target model's softmax probability of each image's target class, reduced over
  the images (median, mean, min, max; ``max`` with ``cls`` is the class's best image). With ``generation`` = g it is
  instead read from the source's own record (the ``trace`` extra: the best confidence after g generations or
  steps), on cells whose target is the source only;
- ``fooled_fraction`` (%): the share of the images the target model gives their target class with probability
  at least ``threshold`` (with ``per = "class"``: the share of classes whose best image does) -- on another target
  than the source, the transfer of fooling images; with ``generation``, read from the trace as above;
- ``fooling_generations``: the generation (or step) at which the trace first reaches ``threshold``, reduced over
  the images (``max``: by when every selected image had); None when some image never reached it.

Readings of the trace are checked against the engine: the trace's last value must equal (within 1e-3) the
confidence re-predicted from the stored image by the source model, else the cell is an error.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rbench.estimate import Estimate, rate, reduced
from rbench.metric import CellData, Metric

Reduce = Literal["median", "mean", "min", "max"]
#: how far the generator's own record of its last confidence may be from the engine's re-prediction
TRACE_TOLERANCE = 1e-3


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def selected(cell: CellData, cls: int | None) -> np.ndarray | None:
    """Indices of the cell's images (of class ``cls`` if given), or None where the cell has no targeted set."""
    adv = cell.adv
    if adv is None or (adv.targets < 0).all():
        return None
    mask = adv.targets >= 0 if cls is None else adv.targets == cls
    return np.flatnonzero(mask)


def confidences(cell: CellData, rows: np.ndarray) -> np.ndarray:
    """The target model's probability of each selected image's target class."""
    probs = softmax(cell.predictions.logits[rows])
    return probs[np.arange(len(rows)), cell.adv.targets[rows]]  # type: ignore[union-attr]


def trace(cell: CellData, rows: np.ndarray) -> np.ndarray | None:
    """The generator's record (images x generations) of the selected images' best confidence, checked against the
    re-predicted confidence of the stored images; None where the cell's target is not its source (the record is
    the source's) or the set has no trace. ValueError if the record disagrees with the model."""
    adv = cell.adv
    if cell.target != cell.source or adv is None or "trace" not in adv.extras:
        return None
    record = np.asarray(adv.extras["trace"], dtype=np.float64)
    if record.ndim != 2:
        raise ValueError(f"the set's trace has shape {record.shape}, not (images, generations)")
    record = record[rows]
    measured = confidences(cell, rows)
    worst = np.abs(record[:, -1] - measured).max(initial=0.0)
    if worst > TRACE_TOLERANCE:
        raise ValueError(f"the generator's trace ends {worst:.3g} away from the source model's confidence on the "
                         "stored images")
    return record


def at_generation(record: np.ndarray, generation: int) -> np.ndarray | None:
    """The record's column ``generation``; None when the run was shorter."""
    return None if generation >= record.shape[1] else record[:, generation]


class _Selection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: one target class only (None: every image of the set)
    cls: Annotated[int, Field(ge=0)] | None = None


class ConfidenceParams(_Selection):
    reduce: Reduce = "median"
    #: read from the generator's trace after this many generations (steps) instead of the stored images
    generation: Annotated[int, Field(ge=0)] | None = None


def _values(cell: CellData, cls: int | None, generation: int | None
            ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(the selected rows, their target-class confidences, final or at ``generation``); values None where no image
    is selected or no trace reaches that generation."""
    rows = selected(cell, cls)
    if rows is None or rows.size == 0:
        return rows, None
    if generation is None:
        return rows, confidences(cell, rows)
    record = trace(cell, rows)
    return rows, None if record is None else at_generation(record, generation)


class FoolingConfidence(Metric):
    """The target model's confidence (%) in the target class of the cell's generated images (see the module)."""

    name = "fooling_confidence"
    Params = ConfidenceParams
    label = "confidence"
    fmt = ".4f"

    def compute(self, cell: CellData, params: ConfidenceParams) -> Estimate | float | None:
        _, values = _values(cell, params.cls, params.generation)
        if values is None or values.size == 0:
            return None
        return reduced(values, params.reduce, scale=100.0, bounds=(0.0, 100.0))


class FractionParams(_Selection):
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.9999
    per: Literal["image", "class"] = "image"
    generation: Annotated[int, Field(ge=0)] | None = None


class FooledFraction(Metric):
    """The share (%) of the cell's generated images (or classes) given their target class with confidence at least
    ``threshold`` by the target model (see the module)."""

    name = "fooled_fraction"
    Params = FractionParams
    label = "fooled"

    def compute(self, cell: CellData, params: FractionParams) -> Estimate | None:
        rows, values = _values(cell, params.cls, params.generation)
        if values is None:
            return None
        reached = values >= params.threshold
        if params.per == "class":
            classes = cell.adv.targets[rows]  # type: ignore[union-attr]
            reached = np.array([reached[classes == c].any() for c in np.unique(classes)])
            return rate(reached)  # one outcome per class: no per-sample pairing
        return rate(reached)  # rows of a generated set are not dataset samples: no pairing


class GenerationsParams(_Selection):
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.9999
    reduce: Reduce = "max"


class FoolingGenerations(Metric):
    """The generation (step) at which the generator's trace first reached ``threshold`` (see the module)."""

    name = "fooling_generations"
    Params = GenerationsParams
    label = "generations"
    unit = ""
    fmt = ".0f"

    def compute(self, cell: CellData, params: GenerationsParams) -> Estimate | float | None:
        rows = selected(cell, params.cls)
        if rows is None or rows.size == 0:
            return None
        record = trace(cell, rows)
        if record is None:
            return None
        reached = record >= params.threshold
        if not reached.any(axis=1).all():
            return None  # some image never reached the threshold within the run
        return reduced(reached.argmax(axis=1), params.reduce, bounds=(0.0, math.inf))
