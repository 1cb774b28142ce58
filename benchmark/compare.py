"""Published tables as data, and the cell-by-cell comparison of a run with them.

A published file (TOML, ``results/published/*.toml``) transcribes a paper's tables::

    [source]
    citation = "..."                      # required
    transcribed_from = "..."
    notes = ["what is garbled in the source, and how it was read"]

    [tables.models]                       # the name of the suite table it is compared with
    figure = "Table 1 (figure 6 of the seed)"
    tolerance = { abs = 1.5, rel = 0.3 }  # a cell is within tolerance if |ours - theirs| <= max(abs, rel*|theirs|)
    why = "why this tolerance is defensible"
    column_tolerance = { "av. min. distortion" = { abs = 0.0, rel = 0.3 } }   # optional overrides
    [tables.models.values]
    softmax1 = { "train error" = 6.7, "test error" = 7.4 }                    # row -> column -> number

A suite names its published files in ``[suite] published = [...]`` (paths relative to the suite file); loading
the suite checks that every table, row and column they name is one of its tables' (numbers must be finite).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rbench.errors import RbenchError
from rbench.estimate import samples_needed
from rbench.results import BOUNDS, Cell, ResultTable, RunResults, format_value
from rbench.suite_refs import UnitOf, percentage_problem, published_mismatch
from rbench.suite_schema import Description, more_problems
from rbench.tomlfile import key_part, read_toml


class Tolerance(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    abs: Annotated[float, Field(ge=0)] = 0.0
    rel: Annotated[float, Field(ge=0)] = 0.0

    def width(self, theirs: float) -> float:
        """How far from the published value ``theirs`` a value may lie and be within tolerance."""
        return max(self.abs, self.rel * abs(theirs))

    def allows(self, ours: float, theirs: float) -> bool:
        return abs(ours - theirs) <= self.width(theirs) + 1e-12

    def describe(self) -> str:
        # a relative tolerance said so: on a table in %, "±10%" read as ten percentage points
        parts = ([f"±{self.abs:g}"] if self.abs else []) + ([f"±{100 * self.rel:g}% relative"] if self.rel else [])
        return " or ".join(parts) or "exact"


class PublishedTable(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    figure: Description
    tolerance: Tolerance
    why: Description
    column_tolerance: dict[str, Tolerance] = {}
    notes: list[Description] = []
    values: dict[str, dict[str, float]]


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    citation: Description
    transcribed_from: Description = ""
    notes: list[Description] = []


class CellRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    row: str
    column: str


class Claim(BaseModel):
    """A qualitative claim of the paper, checked on the run's table (reported as held or not held):

    - ``less``: cell ``a`` is below cell ``b``;
    - ``less_by``: ``a`` is below ``b`` by at least ``margin`` (> 0): a claim that states a size ("went up ~3%");
    - ``barely_less``: ``a`` is below ``b`` by at most ``margin`` ("barely better");
    - ``not_less_by``: ``a`` is not below ``b`` by ``margin`` (> 0) or more; above ``b`` holds too ("does not
      help", "not preferable": one-sided, where ``within`` would also fail a result better than the paper's);
    - ``less_change``: the change from ``a_from`` to ``a`` is smaller than the change from ``b_from`` to ``b``
      ("gains ~1% for regular models and even more for the others"; a change is the later cell minus the earlier);
    - ``lowest``: ``a`` is the lowest of its column among ``among`` (default: every row of the table);
    - ``within``: ``a`` and ``b`` differ by at most ``margin`` ("as good as");
    - ``at_least`` / ``at_most``: ``a`` is at least / at most ``value``; or, given ``cells`` instead of ``a``, the
      best of them is (the highest at least ``value``, the lowest at most): "up to 98% accuracy";
    - ``increasing`` / ``decreasing``: the ``cells``, in the order given, trend up / down: their Spearman rank
      correlation with that order is at least ``min_rho`` (at most ``-min_rho``). A trend over noisy
      measurements rarely is strictly monotone; the rank correlation says how consistently it holds."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    text: Description
    table: str
    kind: Literal["less", "less_by", "barely_less", "not_less_by", "less_change", "lowest", "within", "at_least",
                  "at_most", "increasing", "decreasing"]
    a: CellRef | None = None
    b: CellRef | None = None
    a_from: CellRef | None = None
    b_from: CellRef | None = None
    margin: Annotated[float, Field(ge=0)] = 0.0
    among: list[str] | None = None
    value: float | None = None
    cells: list[CellRef] | None = None
    min_rho: Annotated[float, Field(gt=0, le=1)] = 0.8

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Claim:
        needs = {"less": {"a", "b"}, "less_by": {"a", "b"}, "barely_less": {"a", "b"}, "within": {"a", "b"},
                 "not_less_by": {"a", "b"}, "less_change": {"a", "b", "a_from", "b_from"}, "lowest": {"a"},
                 "at_least": {"a", "value"}, "at_most": {"a", "value"}, "increasing": {"cells"},
                 "decreasing": {"cells"}}[self.kind]
        if self.kind in ("at_least", "at_most") and self.cells is not None:
            needs = {"cells", "value"}
        for name in ("a", "b", "a_from", "b_from", "value", "cells"):
            given = getattr(self, name) is not None
            if given != (name in needs):
                raise ValueError(f"a {self.kind!r} claim {'takes no' if given else 'needs'} {name!r}")
        if self.cells is not None and len(self.cells) < 3 and self.kind in ("increasing", "decreasing"):
            raise ValueError(f"a {self.kind!r} claim needs at least 3 cells")
        if self.cells is not None and not self.cells:  # it could only ever be "not checked"
            raise ValueError(f"a {self.kind!r} claim needs at least 1 cell")
        if self.margin and self.kind not in ("less_by", "barely_less", "not_less_by", "within"):
            raise ValueError(f"a {self.kind!r} claim takes no 'margin' (it would not be checked)")
        if self.among is not None and self.kind != "lowest":
            raise ValueError(f"a {self.kind!r} claim takes no 'among' (it would not be checked)")
        if self.kind in ("less_by", "not_less_by") and self.margin <= 0:
            raise ValueError(f"a {self.kind!r} claim needs a margin above 0 (the least difference it states)")
        return self


class Published(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Source
    tables: dict[str, PublishedTable]
    claims: list[Claim] = []


def load_published(path: str | Path) -> Published:
    """A published file, validated; a one-line :class:`RbenchError` naming the file and key otherwise: missing,
    not a regular file, larger than the suite files' cap (1 MiB), not UTF-8, invalid or too deeply nested TOML
    (the checks of :func:`rbench.tomlfile.read_toml`), or not of the schema above, strictly (TOML's types are
    kept: a string or a boolean is never read as a number)."""

    doc = read_toml(Path(path), what="published-table file")
    try:
        return Published.model_validate(doc, strict=True)  # as suites: "70" or true is never a number
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(key_part(p) for p in first["loc"])
        raise RbenchError(f"{path}: {where}: {' '.join(first['msg'].split())}{more_problems(err)}") from None


#: the verdicts of a published cell, in the order reports list them
VERDICTS = ("within", "inconclusive", "outside", "missing")
VERDICT_TEXT = {"within": "within tolerance", "inconclusive": "too few samples to tell",
                "outside": "outside tolerance", "missing": "missing"}


@dataclass
class Comparison:
    """One published cell beside ours, with one of four verdicts: ``within`` tolerance; ``inconclusive``: outside
    the tolerance, but the published value lies inside our 95% interval, so our samples cannot tell the two apart
    (``samples_needed``: about how many would); ``outside``: outside the tolerance and our interval (or we have no
    interval); ``missing``: we have no value.

    The verdict judges our value (the point estimate), as the tolerance was set for. ``firm`` says whether our 95%
    interval agrees: for ``within``, whether the whole interval lies within the tolerance (False: a value inside
    the interval but beyond the tolerance is as plausible, so the match is weak evidence); for ``outside``,
    whether the whole interval lies beyond it; None for the other verdicts and for cells without an interval."""

    table: str
    row: str
    column: str
    ours: float | None
    published: float
    delta: float | None
    tolerance: str
    within_tolerance: bool
    figure: str
    note: str = ""
    #: the published file it comes from (its stem, e.g. "szegedy2013")
    paper: str = ""
    verdict: str = "missing"
    n: int | None = None
    low: float | None = None
    high: float | None = None
    samples_needed: int | None = None
    #: the format of our cell's metric in its table, for our value, its interval and the delta
    fmt: str = ".3g"
    firm: bool | None = None
    #: how far from the published value ours may lie and be within tolerance (:meth:`Tolerance.width`)
    tolerance_width: float = 0.0


def compare_table(name: str, pub: PublishedTable, ours: ResultTable | None) -> list[Comparison]:
    out = []
    for row, columns in pub.values.items():
        for column, theirs in columns.items():
            tol = pub.column_tolerance.get(column, pub.tolerance)
            cell, note = None, ""
            if ours is None:
                note = f"the run has no table {name!r}"
            else:
                try:
                    cell = ours.cell(row, column)
                    note = cell.error or ("" if cell.value is not None else "not applicable")
                except KeyError:
                    note = f"the run's table {name!r} has no cell ({row}, {column})"
            fmt = ours.fmt(cell) if ours is not None and cell is not None else ".3g"
            out.append(replace(judge(name, row, column, cell, theirs, tol, pub.figure, note), fmt=fmt))
    return out if ours is None else fractions_hint(pub, ours, out)


def fractions_hint(pub: PublishedTable, ours: ResultTable, rows: list[Comparison]) -> list[Comparison]:
    """``rows`` (one table's comparisons), with a note on its measured cells in % where their published values
    look like fractions: at least two such cells, every published value beside them within 0-1, fewer than half
    within tolerance as they are and at least half within it once multiplied by 100. Loading cannot refuse a
    table of values within 0-1 (error rates of 0.8% are common); beside our values the mistake shows, where
    otherwise every cell reads 'outside' with nothing said why."""
    measured: dict[int, Tolerance] = {}
    for i, r in enumerate(rows):
        try:
            cell = ours.cell(r.row, r.column)
        except KeyError:
            continue
        if r.ours is not None and ours.unit(cell) == "%":
            measured[i] = pub.column_tolerance.get(r.column, pub.tolerance)
    if len(measured) < 2 or not all(0.0 <= rows[i].published <= 1.0 for i in measured):
        return rows
    as_is = sum(rows[i].verdict == "within" for i in measured)
    scaled = sum(tol.allows(rows[i].ours or 0.0, 100.0 * rows[i].published) for i, tol in measured.items())
    if 2 * as_is >= len(measured) or 2 * scaled < len(measured):
        return rows
    hint = (f"every published value of this table lies within 0-1 and its cells are in %: multiplied by 100, "
            f"{scaled} of its {len(measured)} measured cells would be within tolerance (fractions written for "
            "percentages?)")
    return [replace(r, note="; ".join(filter(None, [r.note, hint]))) if i in measured else r
            for i, r in enumerate(rows)]


def judge(table: str, row: str, column: str, cell: Cell | None, theirs: float, tol: Tolerance, figure: str,
          note: str) -> Comparison:
    """The comparison of our ``cell`` (None: absent) with the published value ``theirs`` (see :class:`Comparison`
    for the verdicts)."""
    value = None if cell is None else cell.value
    low, high, n = (None, None, None) if cell is None else (cell.low, cell.high, cell.n)
    bounds = None if cell is None else BOUNDS.get(cell.interval)
    if value is not None and bounds is not None and not bounds[0] <= theirs <= bounds[1]:
        # an AUROC transcribed in % (97.4 for 0.974) is no measurement beside ours, whatever the verdict says
        note = "; ".join(filter(None, [note, f"the published {theirs:g} lies outside [{bounds[0]:g}, "
                                             f"{bounds[1]:g}], where this cell's quantity lies: in another unit?"]))
    needed = None
    if value is None:
        verdict = "missing"
    elif tol.allows(value, theirs):
        verdict = "within"
    elif low is not None and high is not None and low <= theirs <= high:
        verdict = "inconclusive"
        method = "" if cell is None else cell.interval
        needed = samples_needed(n, low, high, value, theirs, method) if n else None
    else:
        verdict = "outside"
    firm = None
    if low is not None and high is not None and verdict in ("within", "outside"):
        edge_low, edge_high = theirs - tol.width(theirs) - 1e-12, theirs + tol.width(theirs) + 1e-12
        firm = edge_low <= low and high <= edge_high if verdict == "within" else high < edge_low or low > edge_high
    return Comparison(table, row, column, value, theirs, None if value is None else value - theirs, tol.describe(),
                      verdict == "within", figure, note, verdict=verdict, n=n, low=low, high=high,
                      samples_needed=needed, firm=firm, tolerance_width=tol.width(theirs))


def run_units(results: RunResults) -> UnitOf:
    """The unit of each of the run's cells by (table, row, column); None where the run has no such cell."""
    units = {(t.name, c.row, c.column): t.unit(c) for t in results.tables for c in t.cells}
    return lambda table, row, column: units.get((table, row, column))


def recorded_published_problem(results: RunResults) -> str | None:
    """The first problem of the published files the run recorded (``published_docs``) as ``"published_docs[path]:
    <problem>"``, or None: each must be a published document that names only the run's tables, rows and columns
    (except tables ``--only`` left out) and puts percentages beside its cells in %, as loading the suite made sure
    when the run was made; so an edited results.json is refused (by :meth:`RunResults.read`), not compared with."""
    for path, recorded in results.published_docs.items():
        doc = _recorded(recorded)
        problem = doc if isinstance(doc, str) else _run_problem(doc, results)
        if problem is not None:
            return f"published_docs[{path!r}]: {problem}"
    return None


def _recorded(recorded: Any) -> Published | str:
    """A published file as results.json recorded it, or why it is not one."""
    try:
        return Published.model_validate(recorded, strict=True)
    except ValidationError as err:
        return f"not a published document ({' '.join(err.errors()[0]['msg'].split())})"


def _run_problem(doc: Published, results: RunResults) -> str | None:
    """Where ``doc`` names a table, row or column the run lacks, or no percentage beside a cell in %; or None."""
    shapes = {t.name: (t.rows, t.columns) for t in results.tables}
    return published_mismatch(doc, shapes, "the run", results.only) or \
        percentage_problem(doc, run_units(results), results.only)


def run_published(results: RunResults, path: str) -> Published:
    """The run's published file ``path`` as it read when the run was made (recorded in results.json, checked when
    it was read: :func:`recorded_published_problem`); read from the file only for results written before that was
    recorded."""
    recorded = results.published_docs.get(path)
    if recorded is None:
        return load_published(path)
    doc = _recorded(recorded)
    if isinstance(doc, str):
        raise RbenchError(f"results.json: published_docs[{path!r}]: {doc}")
    return doc


def _read_published(results: RunResults, path: str, given: bool) -> Published:
    """The published file at ``path``; one ``given`` for the run (``rbench compare --published``, never checked
    against its suite, read now) must name only tables, rows and columns the run has (except tables ``--only``
    left out), and a value beside a cell in % must be one: a one-line :class:`RbenchError` otherwise. The suite's
    own files were checked when it was loaded and are read as the run recorded them (:func:`run_published`)."""

    doc = load_published(path) if given else run_published(results, path)
    problem = _run_problem(doc, results) if given else None
    if problem is not None:
        raise RbenchError(f"{path}: {problem}")
    return doc


def compare(results: RunResults, published: list[str] | None = None) -> list[Comparison]:
    """Every published cell of the run's published files (or of ``published``, checked against the run's tables:
    :func:`_read_published`) beside the run's value."""
    tables = {t.name: t for t in results.tables}
    out: list[Comparison] = []
    for path in published if published is not None else results.published:
        for name, pub in _read_published(results, path, published is not None).tables.items():
            if results.only and name not in results.only:  # --only: a table left out is not missing
                continue
            out.extend(replace(c, paper=Path(path).stem) for c in compare_table(name, pub, tables.get(name)))
    return out


@dataclass
class ClaimCheck:
    """A published claim and whether the run's numbers bear it out (``held`` None: a cell is missing)."""

    text: str
    table: str
    held: bool | None
    detail: str
    #: the published file it comes from (its stem)
    paper: str = ""


def check_claims(results: RunResults, published: list[str] | None = None) -> list[ClaimCheck]:
    """Every claim of the run's published files (or of ``published``, checked as :func:`compare` checks them),
    checked on the run's tables."""
    tables = {t.name: t for t in results.tables}
    out = []
    for path in published if published is not None else results.published:
        for claim in _read_published(results, path, published is not None).claims:
            if results.only and claim.table not in results.only:
                continue
            out.append(replace(check_one_claim(claim, tables.get(claim.table)), paper=Path(path).stem))
    return out


def _value(table: ResultTable | None, ref: CellRef) -> float | None:
    try:
        return None if table is None else table.cell(ref.row, ref.column).value
    except KeyError:
        return None


def _shown(table: ResultTable | None, ref: CellRef, value: float, against: float | None = None) -> str:
    """A claim's cell value in its table's format, as the table shows it; with more digits where that rounding
    would hide the comparison with ``against`` (97.96 "at least 98" shows as 97.96, not 98.0)."""
    try:
        fmt = ".4g" if table is None else table.fmt(table.cell(ref.row, ref.column))
    except KeyError:
        fmt = ".4g"
    text = format_value(value, fmt)
    if against is not None and value != against and text == format_value(against, fmt):  # text: any format ("%" too)
        return f"{value:.6g}"
    return text


def _overlap(table: ResultTable | None, a: CellRef, b: CellRef) -> str:
    """``"; the 95% intervals overlap (...)"`` where both cells carry one and they overlap, so that an ordering a
    claim rests on may be chance (74.4 vs 74.6 on 1000 samples holds ``less``, and says so); else ""."""
    if table is None:
        return ""
    try:
        cells = [table.cell(r.row, r.column) for r in (a, b)]
    except KeyError:
        return ""
    ends = [(c.low, c.high) for c in cells if c.low is not None and c.high is not None]
    if len(ends) < 2 or ends[0][1] < ends[1][0] or ends[1][1] < ends[0][0]:
        return ""
    shown = [f"[{format_value(low, table.fmt(c))}, {format_value(high, table.fmt(c))}]"
             for c, (low, high) in zip(cells, ends, strict=True)]
    return f"; the 95% intervals overlap ({shown[0]} and {shown[1]}): the order may be chance"


def check_one_claim(claim: Claim, table: ResultTable | None) -> ClaimCheck:
    """``claim`` checked on ``table`` (None: the run has no such table: not decided)."""
    if claim.cells is not None and claim.value is not None:
        return _check_best(claim, table)
    if claim.cells is not None:
        return _check_trend(claim, table)
    assert claim.a is not None
    a = _value(table, claim.a)
    name = f"{claim.a.row} at {claim.a.column}"
    if claim.kind == "lowest":
        rows = claim.among if claim.among is not None else ([r for r in table.rows if r != table.mean_row] if table
                                                             else [])  # "lowest of the rows": not of their mean
        others = {r: _value(table, CellRef(row=r, column=claim.a.column)) for r in rows if r != claim.a.row}
        if a is None or any(v is None for v in others.values()) or not others:
            return ClaimCheck(claim.text, claim.table, None, f"{name}: a cell is missing")
        best = min(others, key=lambda r: others[r])  # type: ignore[arg-type,return-value]
        low = float(others[best])  # type: ignore[arg-type]
        other = CellRef(row=best, column=claim.a.column)
        return ClaimCheck(claim.text, claim.table, a < low,
                          f"{name} = {_shown(table, claim.a, a, low)}; the lowest of the others: {best} = "
                          f"{_shown(table, other, low, a)}{_overlap(table, claim.a, other) if a < low else ''}")
    if claim.value is not None:
        if a is None:
            return ClaimCheck(claim.text, claim.table, None, f"{name}: missing")
        held = a >= claim.value if claim.kind == "at_least" else a <= claim.value
        needed = "at least" if claim.kind == "at_least" else "at most"
        return ClaimCheck(claim.text, claim.table, held,
                          f"{name} = {_shown(table, claim.a, a, claim.value)}; needed: {needed} {claim.value:g}")
    assert claim.b is not None
    b = _value(table, claim.b)
    if a is None or b is None:
        return ClaimCheck(claim.text, claim.table, None, f"{name} or {claim.b.row} at {claim.b.column}: missing")
    if claim.kind == "within":
        return ClaimCheck(claim.text, claim.table, abs(a - b) <= claim.margin,
                          f"{name} = {_shown(table, claim.a, a)} vs {claim.b.row} at {claim.b.column} = "
                          f"{_shown(table, claim.b, b)}; needed: within {claim.margin:g}")
    if claim.kind == "less_change":
        return _check_change(claim, table, a, b)
    if claim.kind in ("less_by", "not_less_by"):
        # the decimal margin against a difference of two decimals read as floats (0.990 - 0.985 < 0.005)
        by_margin = b - a >= claim.margin - 1e-9 * max(1.0, abs(b))
        held = by_margin if claim.kind == "less_by" else not by_margin
        needed = (f"lower by at least {claim.margin:g}" if claim.kind == "less_by"
                  else f"not lower by {claim.margin:g} or more")
    else:
        held = a < b and (claim.kind == "less" or b - a <= claim.margin)
        needed = f"lower (by at most {claim.margin:g})" if claim.kind == "barely_less" else "lower"
        if held and claim.kind == "less":
            needed += _overlap(table, claim.a, claim.b)
    return ClaimCheck(claim.text, claim.table, held, f"{name} = {_shown(table, claim.a, a, b)} vs {claim.b.row} at "
                      f"{claim.b.column} = {_shown(table, claim.b, b, a)}; needed: {needed}")


def _check_change(claim: Claim, table: ResultTable | None, a: float, b: float) -> ClaimCheck:
    assert claim.a is not None and claim.b is not None and claim.a_from is not None and claim.b_from is not None
    a_from, b_from = _value(table, claim.a_from), _value(table, claim.b_from)
    if a_from is None or b_from is None:
        return ClaimCheck(claim.text, claim.table, None, f"{claim.a_from.row} at {claim.a_from.column} or "
                          f"{claim.b_from.row} at {claim.b_from.column}: missing")

    def change(ref: CellRef, start: CellRef, later: float, earlier: float) -> str:
        return (f"{start.row} at {start.column} = {_shown(table, start, earlier, later)} -> {ref.row} at "
                f"{ref.column} = {_shown(table, ref, later, earlier)} ({later - earlier:+.4g})")

    return ClaimCheck(claim.text, claim.table, a - a_from < b - b_from,
                      f"{change(claim.a, claim.a_from, a, a_from)} vs {change(claim.b, claim.b_from, b, b_from)}; "
                      "needed: the first change smaller")


def _check_best(claim: Claim, table: ResultTable | None) -> ClaimCheck:
    assert claim.cells is not None and claim.value is not None
    values = {ref: _value(table, ref) for ref in claim.cells}
    known = {ref: v for ref, v in values.items() if v is not None}
    if not known:
        return ClaimCheck(claim.text, claim.table, None, "every cell is missing")
    pick = max if claim.kind == "at_least" else min
    ref = pick(known, key=lambda r: known[r])
    held = known[ref] >= claim.value if claim.kind == "at_least" else known[ref] <= claim.value
    missing = f" ({len(values) - len(known)} cells missing)" if len(known) < len(values) else ""
    return ClaimCheck(claim.text, claim.table, held,
                      f"the {'highest' if pick is max else 'lowest'}: {ref.row} at {ref.column} = "
                      f"{_shown(table, ref, known[ref], claim.value)}; "
                      f"needed: {'at least' if pick is max else 'at most'} {claim.value:g}{missing}")


def average_ranks(values: Any) -> np.ndarray:
    """1-based ranks of ``values``, ties given the mean of their ranks: ``scipy.stats.rankdata(values)``, bit for
    bit (half-integers, exact)."""
    a = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    _, first, counts = np.unique(a[order], return_index=True, return_counts=True)
    ranks = np.empty(a.size)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def spearman_rho(x: Any, y: Any) -> float:
    """Spearman's rho of ``x`` and ``y`` (finite values: a cell's are): Pearson's r of their average ranks, as
    ``scipy.stats.spearmanr(x, y)`` computes its statistic (``np.corrcoef`` of the ranks, bit for bit; the tests
    compare; scipy gives NaN where a value is NaN, this does not). Written out because importing scipy.stats costs
    0.5 s of a warm run that checks a trend claim."""
    return float(np.corrcoef(np.column_stack([average_ranks(x), average_ranks(y)]), rowvar=False)[1, 0])


def _check_trend(claim: Claim, table: ResultTable | None) -> ClaimCheck:
    assert claim.cells is not None
    values = [_value(table, ref) for ref in claim.cells]
    if any(v is None for v in values):
        missing = next(ref for ref, v in zip(claim.cells, values, strict=True) if v is None)
        return ClaimCheck(claim.text, claim.table, None, f"{missing.row} at {missing.column}: missing")
    if len(set(values)) == 1:  # no ranking at all: neither trend holds
        rho = 0.0
    else:
        rho = spearman_rho(range(len(values)), values)
    held = rho >= claim.min_rho if claim.kind == "increasing" else rho <= -claim.min_rho
    sign = "" if claim.kind == "increasing" else "-"
    shown = ", ".join(_shown(table, ref, v) for ref, v in zip(claim.cells, values, strict=True))  # type: ignore[arg-type]
    return ClaimCheck(claim.text, claim.table, held,
                      f"values in order: {shown}; Spearman rho = {rho:.2f}; needed: {sign}rho >= {claim.min_rho:g}")


def describe_claim(check: ClaimCheck) -> str:
    verdict = {True: "held", False: "NOT held", None: "not checked"}[check.held]
    return f"claim ({check.table}): {check.text}: {verdict} ({check.detail})"


def summary(rows: list[Comparison]) -> list[tuple[str, str, int, int]]:
    """(table, figure, cells within tolerance, cells) per table, in order of appearance."""
    seen: dict[str, list[Comparison]] = {}
    for r in rows:
        seen.setdefault(r.table, []).append(r)
    return [(t, rs[0].figure, sum(r.within_tolerance for r in rs), len(rs)) for t, rs in seen.items()]


def verdict_counts(rows: list[Comparison]) -> str:
    """``"3 within tolerance, 1 too few samples to tell, 2 outside tolerance"`` (only the verdicts that occur)."""
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    return ", ".join(f"{k} {VERDICT_TEXT[v]}" for v, k in counts.items() if k) or "no cells"


def describe_verdict(r: Comparison) -> str:
    """The verdict of one cell in words, with the samples needed where it is inconclusive and a caveat where our
    interval reaches across the tolerance's edge (``firm`` False)."""
    if r.verdict == "inconclusive":
        more = f" (about {r.samples_needed} samples would tell)" if r.samples_needed else ""
        return f"{VERDICT_TEXT[r.verdict]}{more}"
    if r.firm is False:
        return f"{VERDICT_TEXT[r.verdict]} (our interval reaches {'beyond' if r.verdict == 'within' else 'into'} it)"
    return VERDICT_TEXT[r.verdict]


@dataclass
class PaperSummary:
    """One published file's verdicts: cells within tolerance of all its cells, claims held of all its claims
    (``unchecked``: claims whose cells are missing)."""

    paper: str
    within: int
    cells: int
    held: int
    claims: int
    unchecked: int
    #: cells outside the tolerance but inside our interval (too few samples to tell)
    inconclusive: int = 0
    #: cells within tolerance whose whole 95% interval is (Comparison.firm), of those within it that have one
    firm_within: int = 0
    with_interval: int = 0

    def describe(self) -> str:
        notes = ([f"by the whole 95% interval: {self.firm_within} of the {self.with_interval} with one"]
                 if self.with_interval else []) + \
            ([f"{self.inconclusive} {'other' if self.inconclusive == 1 else 'others'} too close to tell"]
             if self.inconclusive else [])
        unsure = f" ({'; '.join(notes)})" if notes else ""
        parts = [f"{self.within}/{self.cells} cells within tolerance{unsure}"] if self.cells else []
        if self.claims:
            parts.append(f"{self.held}/{self.claims} claims held" + (
                f" ({self.unchecked} not checked)" if self.unchecked else ""))
        return f"{self.paper}: " + ("; ".join(parts) or "nothing to compare")


def paper_summary(rows: list[Comparison], claims: list[ClaimCheck]) -> list[PaperSummary]:
    """Per published file, in order of appearance: the run's verdicts over all its tables and claims."""
    papers = list(dict.fromkeys([r.paper for r in rows] + [c.paper for c in claims]))
    out = []
    for paper in papers:
        mine = [r for r in rows if r.paper == paper]
        checks = [c for c in claims if c.paper == paper]
        out.append(PaperSummary(paper, sum(r.within_tolerance for r in mine), len(mine),
                                sum(c.held is True for c in checks), len(checks),
                                sum(c.held is None for c in checks), sum(r.verdict == "inconclusive" for r in mine),
                                sum(r.firm is True and r.verdict == "within" for r in mine),
                                sum(r.firm is not None and r.verdict == "within" for r in mine)))
    return out


def as_json(rows: list[Comparison], claims: list[ClaimCheck] | None = None) -> dict:
    return {"cells": [asdict(r) for r in rows], "claims": [asdict(c) for c in claims or []]}


def table_notes(results: RunResults, published: list[str] | None = None) -> dict[str, list[str]]:
    """Table name -> the notes its published files give on it (how a value was read, what is not comparable), as
    reports print them beside the comparison."""
    out: dict[str, list[str]] = {}
    for path in published if published is not None else results.published:
        doc = _read_published(results, path, published is not None)
        for name, table in doc.tables.items():
            out.setdefault(name, []).extend(table.notes)
    return out


def as_markdown(rows: list[Comparison], claims: list[ClaimCheck] | None = None,
                notes: dict[str, list[str]] | None = None) -> str:
    """The comparison as markdown: per paper, the claims, then per table its cells (and ``notes``, by table)."""
    from rbench.markdown import md, md_table

    parts = ["## Comparison with the published tables\n"]
    parts += [f"- {md(p.describe())}" for p in paper_summary(rows, claims or [])]
    parts.append("")
    if claims:
        parts.append("### The paper's claims\n")
        parts += [f"- {md(describe_claim(c))}" for c in claims]
        parts.append("")
    for table, figure, ok, total in summary(rows):
        mine = [r for r in rows if r.table == table]
        parts.append(md(f"### {table} ({figure}): {ok}/{total} cells within tolerance ({verdict_counts(mine)})")
                     + "\n")
        parts += [f"Note: {md(note)}\n" for note in (notes or {}).get(table, [])]
        body = [[r.row, r.column, fmt_number(r.ours, fmt=r.fmt), fmt_interval(r), f"{r.published:g}",
                 fmt_delta(r), r.tolerance, describe_verdict(r), r.note] for r in mine]
        parts.append(md_table(body, ["row", "column", "ours", "95% interval", "published", "delta", "tolerance",
                                     "verdict", "note"]) + "\n")
    return "\n".join(parts)


def fmt_interval(r: Comparison) -> str:
    """``[low, high] (n=N)`` in the format of the cell's metric, or ``-`` without an interval."""
    if r.low is None or r.high is None:
        return "-"
    return f"[{format_value(r.low, r.fmt)}, {format_value(r.high, r.fmt)}] (n={r.n})"


def fmt_delta(r: Comparison) -> str:
    """Our value minus the published one, signed, in the format of the cell's metric; with more digits where that
    rounding would read as on the other side of the tolerance than it is (0.54 beyond a tolerance of ±0.5 showed
    as "+0.5", beside the verdict "outside tolerance")."""
    text = fmt_number(r.delta, signed=True, fmt=r.fmt)
    if r.delta is None:
        return text
    try:
        reads_within = abs(float(text)) <= r.tolerance_width + 1e-12
    except ValueError:  # a format whose text is not a plain number ("%")
        return text
    return f"{r.delta:+.6g}" if reads_within != r.within_tolerance else text


def fmt_number(value: float | None, signed: bool = False, fmt: str = ".3g") -> str:
    """``value`` in ``fmt`` (with its sign when ``signed``), or ``-``."""
    if value is None:
        return "-"
    return format_value(value, ("+" if signed else "") + fmt)
