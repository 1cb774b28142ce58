"""Robustness under the worst case over several stored attacks, per sample (an AutoAttack-style ensemble), from
predictions already stored: nothing is re-run."""

from __future__ import annotations

from functools import reduce
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rbench.metric import CellData, Metric
from rbench.plugins.metrics.rates import class_accuracies


class AttackRef(BaseModel):
    """An attack label of an evaluation of the suite (default: the cell's evaluation) run on the cell's source."""

    model_config = ConfigDict(extra="forbid")
    attack: str
    evaluation: str | None = None


class WorstCaseParams(BaseModel):
    """``attacks``: the attacks a sample must survive (with its clean input, unless ``include_clean`` is false);
    ``statistic``: of the per-sample outcome (``class_robustness``: the mean over classes of the share that
    survives, in %); ``gap_to``: report instead how much ``attacks[gap_to]`` alone overestimates that statistic
    (its value minus the worst case's, in percentage points, on the same samples)."""

    model_config = ConfigDict(extra="forbid")
    attacks: Annotated[list[AttackRef], Field(min_length=1)]
    statistic: Literal["class_robustness", "accuracy"] = "class_robustness"
    include_clean: bool = True
    gap_to: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _gap_index(self) -> WorstCaseParams:
        if self.gap_to is not None and self.gap_to >= len(self.attacks):
            raise ValueError(f"gap_to = {self.gap_to} is not an index of attacks (0..{len(self.attacks) - 1})")
        return self


def _positions(indices: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of ``wanted`` (all present) sits in ``indices`` (in any order)."""
    order = np.argsort(indices, kind="stable")
    return order[np.searchsorted(indices[order], wanted)]


def _statistic(correct: np.ndarray, labels: np.ndarray, statistic: str) -> float:
    if statistic == "accuracy":
        return 100.0 * float(correct.mean())
    per_class = class_accuracies(correct, labels)
    return 100.0 * sum(per_class) / len(per_class)


class WorstCase(Metric):
    """The target's robustness when each sample counts as correct only if every listed attack (and its clean
    input) leaves it correctly classified. Attacks run over different numbers of samples are compared on the
    samples they share (by dataset index); None where they share none."""

    name = "worst_case"
    Params = WorstCaseParams
    label = "worst case"

    def compute(self, cell: CellData, params: WorstCaseParams) -> float | None:
        preds = [cell.predictions_of(ref.evaluation, ref.attack) for ref in params.attacks]
        if params.include_clean:
            preds.append(cell.predictions_of(params.attacks[0].evaluation, "clean"))
        shared = reduce(np.intersect1d, [p.indices for p in preds])
        if shared.size == 0:
            return None
        rows = [_positions(p.indices, shared) for p in preds]
        correct = [p.correct[r] for p, r in zip(preds, rows, strict=True)]
        labels = preds[0].labels[rows[0]]
        worst = _statistic(np.logical_and.reduce(correct), labels, params.statistic)
        if params.gap_to is None:
            return worst
        return _statistic(correct[params.gap_to], labels, params.statistic) - worst
