"""Two runs side by side, cell by cell (``rbench compare RUN --run OTHER``): what changed between two versions of
a plugin, two precisions, two machines or two weeks.

Cells pair up by (table, row, column). Each pair gets one verdict:

- ``differs``: the 95% interval of the difference excludes 0;
- ``no difference shown``: it includes 0 (the two runs cannot be told apart at their sample sizes; not evidence
  that they agree: the interval's width says how large a difference could still hide);
- ``equal``: the same value (to 1e-9 relative: float noise), with or without intervals;
- ``no interval``: different values, and one cell has no interval to judge the difference by;
- ``only in one run`` / ``failed``: one side has no cell there (or one that does not apply), or one failed;
- ``not comparable``: the two cells hold different metrics or units (the suite changed between the runs).

The difference's interval combines the two cells' own 95% intervals by the MOVER method (Zou & Donner 2008; for
two Wilson intervals it is Newcombe's 1998 hybrid score interval of a difference of proportions), which treats
the runs as independent samples. Runs of one suite on the same samples are paired; where their per-sample
outcomes agree more often than chance (as two runs of one model or two precisions do) the interval is then wider
than a paired test's: a ``differs`` verdict is conservative, a ``no difference shown`` may hide a small change
(a table's ``paired`` McNemar test, within one run, is the sharper tool). Negatively correlated outcomes would
make it too narrow; two runs of the same cell practically never have them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from rbench.compare import fmt_number
from rbench.results import Cell, ResultTable, RunResults

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


def difference_interval(a: Cell, b: Cell) -> tuple[float, float] | None:
    """The MOVER 95% interval of ``a.value - b.value`` from the cells' own intervals; None if one has none."""
    if None in (a.value, a.low, a.high, b.value, b.low, b.high):
        return None
    av, al, ah = float(a.value), float(a.low), float(a.high)  # type: ignore[arg-type]
    bv, bl, bh = float(b.value), float(b.low), float(b.high)  # type: ignore[arg-type]
    d = av - bv
    return d - math.hypot(av - al, bh - bv), d + math.hypot(ah - av, bv - bl)


def _judge(name: str, a: tuple[ResultTable, Cell] | None, b: tuple[ResultTable, Cell] | None) -> CellDiff:
    """The verdict on one (table, row, column): ``a`` the run's (table, cell), ``b`` the other run's."""
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
    return _values(name, ca, cb, fmt)


def _values(name: str, a: Cell, b: Cell, fmt: str) -> CellDiff:
    """The verdict on two cells of one metric."""
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
    interval = difference_interval(a, b)
    if math.isclose(float(a.value), float(b.value), rel_tol=1e-9, abs_tol=1e-12):  # float noise is no change
        verdict = "equal"
    elif interval is None:
        verdict = "no interval"
    else:
        verdict = "no difference shown" if interval[0] <= 0 <= interval[1] else "differs"
    low, high = interval if interval is not None else (None, None)
    return CellDiff(name, row, column, a.value, b.value, delta, low, high, verdict, fmt)


def diff_runs(a: RunResults, b: RunResults) -> list[CellDiff]:
    """Every cell of the run ``a`` beside the same (table, row, column) of ``b``, then ``b``'s cells ``a`` lacks,
    in ``a``'s table and cell order."""
    theirs = {(t.name, c.row, c.column): (t, c) for t in b.tables for c in t.cells}
    out = []
    for table in a.tables:
        for cell in table.cells:
            out.append(_judge(table.name, (table, cell), theirs.pop((table.name, cell.row, cell.column), None)))
    out += [_judge(name, None, other) for (name, _, _), other in theirs.items()]
    return out


def _cells(results: RunResults) -> set[tuple[str, str, str]]:
    return {(t.name, c.row, c.column) for t in results.tables for c in t.cells}


def shared_cells(a: RunResults, b: RunResults) -> int:
    """How many (table, row, column) the two runs both have."""
    return len(_cells(a) & _cells(b))


def counts(diffs: list[CellDiff]) -> str:
    """``3 differs, 40 no difference shown, ...`` (the verdicts present, in :data:`VERDICTS` order)."""
    return ", ".join(f"{n} {v}" for v in VERDICTS if (n := sum(d.verdict == v for d in diffs))) or "no cells"


def rows_of(diffs: list[CellDiff]) -> list[list[str]]:
    """Each difference as text cells: row, column, run, other run, delta, 95% interval, verdict, note."""
    return [[d.row, d.column, fmt_number(d.a, fmt=d.fmt), fmt_number(d.b, fmt=d.fmt),
             fmt_number(d.delta, signed=True, fmt=d.fmt), "-" if d.low is None else
             f"[{fmt_number(d.low, True, d.fmt)}, {fmt_number(d.high, True, d.fmt)}]", d.verdict, d.note]
            for d in diffs]


HEADERS = ["row", "column", "run", "other run", "delta", "95% interval of delta", "verdict", "note"]


def as_markdown(diffs: list[CellDiff], a: str, b: str) -> str:
    """The differences as markdown: a summary line, then one table per result table."""
    from tabulate import tabulate

    parts = [f"## {a} vs {b}\n", f"{counts(diffs)}\n"]
    for name in dict.fromkeys(d.table for d in diffs):
        mine = [d for d in diffs if d.table == name]
        parts.append(f"### {name}: {counts(mine)}\n")
        parts.append(tabulate(rows_of(mine), headers=HEADERS, tablefmt="github", disable_numparse=True) + "\n")
    return "\n".join(parts)


def as_json(diffs: list[CellDiff]) -> dict:
    return {"cells": [asdict(d) for d in diffs], "summary": counts(diffs)}
