"""Two runs side by side, cell by cell (``rbench compare RUN --run OTHER``): what changed between two versions of
a plugin, two precisions, two machines or two weeks.

Cells pair up by (table, row, column). Each pair gets one verdict:

- ``differs``: the 95% interval of the difference excludes 0;
- ``no difference shown``: it includes 0 (the two runs cannot be told apart at their sample sizes; not evidence
  that they agree: the interval's width says how large a difference could still hide);
- ``equal``: the same value (to 1e-9 relative: float noise), with or without intervals;
- ``no interval``: different values, and one cell has no interval to judge the difference by;
- ``only in one run`` / ``failed``: one side has no cell there (or one that does not apply), or one failed;
- ``not comparable``: the two cells hold different metrics or units, or are computed on other images (another
  dataset, its params or split: the suite changed between the runs).

The difference's interval combines the two cells' own 95% intervals by the MOVER method (Zou & Donner 2008). Where
both runs kept the per-sample outcomes of a rate cell (outcomes.parquet, written by the ``tidy`` reporter) over
the same samples of the same files (results.json records each evaluation's dataset, split and, where the dataset
gives one, its files' digest), the pair is judged as paired data: MOVER with the correlation of the two runs' outcomes
(Newcombe 1998, "Improved confidence intervals for the difference between binomial proportions based on paired
data", method 10: the Wilson intervals of the two rates and the corrected phi coefficient of their 2x2 table;
tests/test_run_diff.py checks rows of the paper's Table III), so a change of a few images all in one direction
is told apart from noise. Otherwise the runs are treated as independent samples (for two Wilson intervals
Newcombe's 1998 hybrid score interval of independent proportions): wider than the paired interval where their
outcomes agree more often than chance (as two runs of one model or two precisions do), so a ``differs`` verdict
is conservative and a ``no difference shown`` may hide a small change; negatively correlated outcomes would make
it too narrow, which two runs of the same cell practically never have.

Each verdict is one 95% interval, unadjusted for the others: were nothing different, up to 1 cell in 20 judged by
an interval could still read ``differs``; the summary says how many that is (:func:`chance_note`). The paired
interval and the exact McNemar test of a table's ``paired`` rows are different procedures and can disagree at the
margin (5 discordant images all one way in 1000: the interval excludes 0, McNemar's p is 0.0625).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rbench.compare import fmt_number
from rbench.estimate import wilson
from rbench.results import Cell, CellOutcomes, Outcomes, ResultTable, RunResults, images_text

VERDICTS = ("differs", "no difference shown", "equal", "no interval", "only in one run", "failed", "not comparable")


@dataclass(frozen=True)
class CellDiff:
    """One (table, row, column) of two runs: ``a`` (the run) and ``b`` (the other run), ``delta`` = a - b with
    the 95% interval [``low``, ``high``] where both cells have one, and its verdict (see the module)."""

    table: str
    row: str
    column: str
    a: float | None
    b: float | None
    delta: float | None
    low: float | None
    high: float | None
    verdict: str
    #: the format of the cell's metric in the run's table
    fmt: str = ".3g"
    note: str = ""
    #: the samples the interval pairs the two cells' outcomes on (None: the runs taken as independent)
    paired: int | None = None


def paired_interval(a: CellOutcomes, b: CellOutcomes) -> tuple[float, float, int] | None:
    """The 95% interval of the difference (in percentage points) of two rates measured on the same samples, from
    their per-sample outcomes ((dataset indices, 0/1) each), by Newcombe's (1998b) method 10 -- MOVER from the two
    Wilson intervals with the 2x2 table's phi coefficient, its numerator AD - BC lowered by n/2 (not below 0) where
    positive, as the paper does -- and the number of samples; None unless both cover exactly the same samples."""
    (ia, oa), (ib, ob) = a, b
    order_a, order_b = np.argsort(ia, kind="stable"), np.argsort(ib, kind="stable")
    if ia.size == 0 or not np.array_equal(ia[order_a], ib[order_b]):
        return None
    x, y = np.asarray(oa, dtype=bool)[order_a], np.asarray(ob, dtype=bool)[order_b]
    n = int(x.size)
    both, x_only, y_only = int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum())
    neither = n - both - x_only - y_only
    p1, p2 = (both + x_only) / n, (both + y_only) / n
    (l1, u1), (l2, u2) = wilson(both + x_only, n), wilson(both + y_only, n)
    margins = (both + x_only) * (y_only + neither) * (both + y_only) * (x_only + neither)
    agreement = float(both * neither - x_only * y_only)
    if agreement > 0:  # Newcombe's correction: without it two runs that agree everywhere get a [0, 0] interval
        agreement = max(agreement - n / 2, 0.0)
    phi = agreement / math.sqrt(margins) if margins > 0 else 0.0
    d = p1 - p2
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return 100.0 * (d - below), 100.0 * (d + above), n


def difference_interval(a: Cell, b: Cell) -> tuple[float, float] | None:
    """The MOVER 95% interval of ``a.value - b.value`` from the cells' own intervals; None if one has none."""
    if None in (a.value, a.low, a.high, b.value, b.low, b.high):
        return None
    av, al, ah = float(a.value), float(a.low), float(a.high)  # type: ignore[arg-type]
    bv, bl, bh = float(b.value), float(b.low), float(b.high)  # type: ignore[arg-type]
    d = av - bv
    return d - math.hypot(av - al, bh - bv), d + math.hypot(ah - av, bv - bl)


def _judge(name: str, a: tuple[ResultTable, Cell] | None, b: tuple[ResultTable, Cell] | None,
           outcomes: tuple[CellOutcomes, CellOutcomes] | None = None) -> CellDiff:
    """The verdict on one (table, row, column): ``a`` the run's (table, cell), ``b`` the other run's, ``outcomes``
    both cells' per-sample outcomes where both runs kept them."""
    table, cell = a if a is not None else b  # type: ignore[misc]
    row, column, fmt = cell.row, cell.column, table.fmt(cell)
    if a is None or b is None:
        missing = "the run" if a is None else "the other run"
        return CellDiff(name, row, column, None if a is None else a[1].value, None if b is None else b[1].value,
                        None, None, None, "only in one run", fmt, f"{missing} has no such cell")
    (ta, ca), (tb, cb) = a, b
    if (ta.metric(ca), ta.unit(ca)) != (tb.metric(cb), tb.unit(cb)):
        return CellDiff(name, row, column, ca.value, cb.value, None, None, None, "not comparable", fmt,
                        f"{ta.metric(ca)} ({ta.unit(ca) or 'no unit'}) vs {tb.metric(cb)} ({tb.unit(cb) or 'no unit'})")
    # results written before cells carried their call recorded one call per label (the last, where labels repeat)
    if ca.call and cb.call and _normal(ta.metric_call(ca), "metric") != _normal(tb.metric_call(cb), "metric"):
        return CellDiff(name, row, column, ca.value, cb.value, None, None, None, "not comparable", fmt,
                        f"{ta.metric(ca)}: {_call_text(ta.metric_call(ca))} vs {_call_text(tb.metric_call(cb))}")
    images_a, images_b = ta.images_of(ca), tb.images_of(cb)
    if outcomes is not None and (images_a is None or images_b is None):  # an index names an image not recorded
        unknown = "the run" if images_a is None else "the other run"
        return _values(name, ca, cb, fmt, None, f"not paired: {unknown} does not record its images")
    if images_a is not None and images_b is not None:
        images_a, images_b = _normal(images_a, "dataset"), _normal(images_b, "dataset")
        if images_a != images_b:
            other = f"{_images_text(images_a, images_b)} vs {_images_text(images_b, images_a)}"
            if any(images_a.get(k) != images_b.get(k) for k in ("plugin", "params", "split")):
                return CellDiff(name, row, column, ca.value, cb.value, None, None, None, "not comparable", fmt,
                                f"other images: {other}")
            # the same dataset and split from other files (another notMNIST sample) or another version of its
            # plugin or distribution: an index may name another image
            why = "other files" if images_a.get("content") != images_b.get("content") else "another plugin version"
            return _values(name, ca, cb, fmt, None, f"not paired: {why} ({other})")
    return _values(name, ca, cb, fmt, outcomes)


def _images_text(images: dict[str, Any], other: dict[str, Any]) -> str:
    """:func:`rbench.results.images_text`, with the plugin's version and distribution where they differ from
    ``other``'s."""
    origin = [images[k] for k in ("version", "distribution") if images.get(k) != other.get(k) and images.get(k)]
    return images_text(images, " from ".join(origin))


def _normal(call: dict[str, Any], kind: str) -> dict[str, Any]:
    """A recorded call of a ``kind`` plugin (a metric call, or the dataset of :meth:`ResultTable.images_of`) with its
    params validated by the installed plugin, so that a parameter added since (at its default) does not make two
    runs' calls differ; as recorded where that fails."""
    from rbench.manager import get_registry

    try:
        params = get_registry().get(kind, call["plugin"]).obj.Params.model_validate(call.get("params", {}))
        return {**call, "params": params.model_dump(mode="json")}
    except Exception:  # noqa: BLE001 -- a plugin gone or changed: the record is all there is to compare
        return call


def _call_text(call: dict[str, Any]) -> str:
    """A metric call as one line: ``worst_case {"attacks": ..., "statistic": "accuracy"}``."""
    return f"{call.get('plugin', '?')} {json.dumps(call.get('params', {}), sort_keys=True)}"


def _values(name: str, a: Cell, b: Cell, fmt: str,
            outcomes: tuple[CellOutcomes, CellOutcomes] | None = None, why_unpaired: str = "") -> CellDiff:
    """The verdict on two cells of one metric (paired on their outcomes where both have them, on one sample set;
    ``why_unpaired``: a note saying why they were not, where they could have been)."""
    row, column = a.row, a.column
    if a.error or b.error:
        return CellDiff(name, row, column, a.value, b.value, None, None, None, "failed", fmt,
                        " / ".join(e for e in (a.error, b.error) if e))
    if a.value is None or b.value is None:
        if a.value is None and b.value is None:
            return CellDiff(name, row, column, None, None, None, None, None, "equal", fmt, "not applicable")
        where = "the run" if a.value is None else "the other run"
        return CellDiff(name, row, column, a.value, b.value, None, None, None, "only in one run", fmt,
                        f"not applicable in {where}")
    delta = float(a.value) - float(b.value)
    paired = None if outcomes is None else paired_interval(*outcomes)
    interval = difference_interval(a, b) if paired is None else paired[:2]
    # a value equal up to float noise is "equal" unless the two cells recorded different per-sample outcomes or
    # values: 22.5% of one 200-image subset and 22.5% of another are the same number, not the same measurement
    other = any(x and y and x != y for x, y in ((a.outcomes_sha256, b.outcomes_sha256),
                                                  (a.samples_sha256, b.samples_sha256)))
    note = why_unpaired if paired is None else f"paired on {paired[2]} samples"
    if math.isclose(float(a.value), float(b.value), rel_tol=1e-9, abs_tol=1e-12) and not other:
        verdict = "equal"
    elif interval is None:
        verdict = "no interval"
    else:
        verdict = "no difference shown" if interval[0] <= 0 <= interval[1] else "differs"
    if other and delta == 0:
        note = "; ".join(n for n in (note, "the same value from other per-sample results") if n)
    low, high = interval if interval is not None else (None, None)
    return CellDiff(name, row, column, a.value, b.value, delta, low, high, verdict, fmt, note,
                    None if paired is None else paired[2])


def diff_runs(a: RunResults, b: RunResults, outcomes_a: Outcomes | None = None, outcomes_b: Outcomes | None = None
              ) -> list[CellDiff]:
    """Every cell of the run ``a`` beside the same (table, row, column) of ``b``, then ``b``'s cells ``a`` lacks,
    in ``a``'s table and cell order; a rate cell whose outcomes both runs kept (``outcomes_a``, ``outcomes_b``)
    over the same samples is judged paired."""
    theirs = {(t.name, c.row, c.column): (t, c) for t in b.tables for c in t.cells}
    mine_kept, theirs_kept = outcomes_a or {}, outcomes_b or {}
    out = []
    for table in a.tables:
        for cell in table.cells:
            key = (table.name, cell.row, cell.column)
            both = (mine_kept[key], theirs_kept[key]) if key in mine_kept and key in theirs_kept else None
            out.append(_judge(table.name, (table, cell), theirs.pop(key, None), both))
    out += [_judge(name, None, other) for (name, _, _), other in theirs.items()]
    return out


def _cells(results: RunResults) -> set[tuple[str, str, str]]:
    return {(t.name, c.row, c.column) for t in results.tables for c in t.cells}


def shared_cells(a: RunResults, b: RunResults) -> int:
    """How many (table, row, column) the two runs both have."""
    return len(_cells(a) & _cells(b))


def other_sizes(a: RunResults, b: RunResults) -> int:
    """How many cells both runs have whose n differs between them."""
    sizes = {(t.name, c.row, c.column): c.n for t in a.tables for c in t.cells}
    return sum(1 for t in b.tables for c in t.cells
               if (t.name, c.row, c.column) in sizes and sizes[(t.name, c.row, c.column)] != c.n)


def counts(diffs: list[CellDiff]) -> str:
    """``3 differs, 40 no difference shown, ...`` (the verdicts present, in :data:`VERDICTS` order), and how many
    were judged paired on their samples' outcomes."""
    text = ", ".join(f"{n} {v}" for v in VERDICTS if (n := sum(d.verdict == v for d in diffs))) or "no cells"
    paired = sum(d.paired is not None for d in diffs)
    return f"{text} ({paired} paired on their samples)" if paired else text


def chance_note(diffs: list[CellDiff]) -> str | None:
    """What chance alone gives among many cells: were nothing different between the runs, each cell's 95% interval
    would still exclude 0 up to 1 time in 20 (less where the runs are taken as independent: conservative), so a few
    ``differs`` among hundreds of cells is what two identical-in-truth runs show. None below 2 cells judged."""
    judged = sum(d.verdict in ("differs", "no difference shown") for d in diffs)
    if judged < 2:
        return None
    shown = sum(d.verdict == "differs" for d in diffs)
    return (f"{shown} of {judged} cells judged by an interval differ; each verdict is one 95% interval, so were "
            f"nothing different, up to 1 in 20 ({judged / 20:.1f} of {judged}) would still read 'differs' by chance")


def rows_of(diffs: list[CellDiff]) -> list[list[str]]:
    """Each difference as text cells: row, column, run, other run, delta, 95% interval, verdict, note."""
    return [[d.row, d.column, fmt_number(d.a, fmt=d.fmt), fmt_number(d.b, fmt=d.fmt),
             fmt_number(d.delta, signed=True, fmt=d.fmt), "-" if d.low is None else
             f"[{fmt_number(d.low, True, d.fmt)}, {fmt_number(d.high, True, d.fmt)}]", d.verdict, d.note]
            for d in diffs]


HEADERS = ["row", "column", "run", "other run", "delta", "95% interval of delta", "verdict", "note"]


def as_markdown(diffs: list[CellDiff], a: str, b: str) -> str:
    """The differences as markdown: a summary line, then one table per result table."""
    from rbench.markdown import md, md_table

    parts = [f"## {md(a)} vs {md(b)}\n", f"{counts(diffs)}\n"]
    if note := chance_note(diffs):
        parts.append(f"{md(note)}\n")
    for name in dict.fromkeys(d.table for d in diffs):
        mine = [d for d in diffs if d.table == name]
        parts.append(f"### {md(name)}: {counts(mine)}\n")
        parts.append(md_table(rows_of(mine), HEADERS) + "\n")
    return "\n".join(parts)


def as_json(diffs: list[CellDiff]) -> dict:
    return {"cells": [asdict(d) for d in diffs], "summary": counts(diffs), "by_chance": chance_note(diffs)}
