"""Robustness under the worst case over several stored attacks, per sample (an AutoAttack-style ensemble), from
predictions already stored: nothing is re-run."""

from __future__ import annotations

from functools import reduce
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rbench.estimate import Estimate, class_balanced_rate, rate
from rbench.metric import CellData, Metric, Reference


class AttackRef(BaseModel):
    """An attack label of an evaluation of the suite (default: the cell's evaluation) run on the cell's source."""

    model_config = ConfigDict(extra="forbid")
    attack: str
    evaluation: str | None = None


class WorstCaseParams(BaseModel):
    """``attacks``: the attacks a sample must survive (with its clean input, unless ``include_clean`` is false);
    ``statistic``: of the per-sample outcome (``accuracy``, the default: the share of the samples that survive,
    AutoAttack's robust accuracy; ``class_robustness``: the mean over classes of the share that survives, in %,
    Bečková et al.'s measure). Instead of the worst case itself, one of: ``gap_to``: how much ``attacks[gap_to]`` alone
    overestimates that statistic (its value minus the worst case's, in percentage points, on the same samples);
    ``broken_by``: the share (%) of the samples (correct on their clean input, where it counts) that
    ``attacks[broken_by]`` breaks; ``only_by``: the share (%) that it alone breaks, no other listed attack (the
    attack's contribution to the ensemble: with ``statistic = "accuracy"``, dropping it would raise the worst case
    by that much). ``broken_by`` and ``only_by`` are plain shares of the samples whatever ``statistic`` says, not
    class-balanced: pair them with an ``accuracy`` worst case, as the built-in suites do."""

    model_config = ConfigDict(extra="forbid")
    attacks: Annotated[list[AttackRef], Field(min_length=1)]
    statistic: Literal["class_robustness", "accuracy"] = "accuracy"
    include_clean: bool = True
    gap_to: Annotated[int, Field(ge=0)] | None = None
    broken_by: Annotated[int, Field(ge=0)] | None = None
    only_by: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _attack_index(self) -> WorstCaseParams:
        chosen = {k: v for k, v in (("gap_to", self.gap_to), ("broken_by", self.broken_by),
                                    ("only_by", self.only_by)) if v is not None}
        if len(chosen) > 1:
            raise ValueError(f"give at most one of {', '.join(chosen)}")
        for key, index in chosen.items():
            if index >= len(self.attacks):
                raise ValueError(f"{key} = {index} is not an index of attacks (0..{len(self.attacks) - 1})")
        return self


def positions(indices: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of ``wanted`` (all present) sits in ``indices`` (in any order)."""
    order = np.argsort(indices, kind="stable")
    return order[np.searchsorted(indices[order], wanted)]


def _statistic(correct: np.ndarray, labels: np.ndarray, indices: np.ndarray, statistic: str) -> Estimate | None:
    if statistic == "accuracy":
        return rate(correct, indices)
    return class_balanced_rate(correct, labels, indices)


class WorstCase(Metric):
    """The target's robustness when each sample counts as correct only if every listed attack (and its clean
    input) leaves it correctly classified, with its interval (Wilson for accuracy; a normal interval from the
    per-class variances for class robustness). Attacks run over different numbers of samples are compared on the
    samples they share (by dataset index); None where they share none. See the params for each attack's
    contribution."""

    name = "worst_case"
    Params = WorstCaseParams
    label = "worst case"

    def references(self, params: WorstCaseParams) -> list[Reference]:
        """The evaluations and attack labels ``attacks`` names, and the clean inputs read from the first one's
        evaluation, all paired with the cell's samples by dataset index (so read from the cell's dataset and split):
        the suite checks them for every cell before any work."""
        out = []
        for i, ref in enumerate(params.attacks):
            if ref.evaluation is not None:
                out.append(Reference(f"attacks[{i}].evaluation", "evaluation", ref.evaluation))
            out.append(Reference(f"attacks[{i}].attack", "attack", ref.attack, ref.evaluation, paired=True))
        if params.include_clean:
            out.append(Reference("attacks[0].evaluation", "attack", "clean", params.attacks[0].evaluation,
                                 paired=True))
        return out

    def compute(self, cell: CellData, params: WorstCaseParams) -> Estimate | float | None:
        preds = [cell.predictions_of(ref.evaluation, ref.attack) for ref in params.attacks]
        if params.include_clean:
            preds.append(cell.predictions_of(params.attacks[0].evaluation, "clean"))
        shared = reduce(np.intersect1d, [p.indices for p in preds])
        if shared.size == 0:
            return None
        rows = [positions(p.indices, shared) for p in preds]
        correct = [p.correct[r] for p, r in zip(preds, rows, strict=True)]
        labels = preds[0].labels[rows[0]]
        clean = correct[-1] if params.include_clean else np.ones(shared.size, dtype=bool)
        attacked = correct[:len(params.attacks)]
        if params.broken_by is not None:
            return rate(clean & ~attacked[params.broken_by], shared)
        if params.only_by is not None:
            others = [c for i, c in enumerate(attacked) if i != params.only_by]
            survives_others = np.logical_and.reduce(others) if others else np.ones(shared.size, dtype=bool)
            return rate(clean & survives_others & ~attacked[params.only_by], shared)
        survives = np.logical_and.reduce(correct)
        if params.gap_to is None:
            return _statistic(survives, labels, shared, params.statistic)
        # every sample that survives them all survives attacks[gap_to] alone, so its statistic minus the worst
        # case's is the statistic of "survives it alone, not them all" (both are means of 0/1 outcomes, per
        # class or over all): one estimate, with its interval, on the same samples
        return _statistic(correct[params.gap_to] & ~survives, labels, shared, params.statistic)
