"""What the names a suite's tables rely on must point at: the suite names a metric's params give
(:class:`~rbench.metric.Reference`, checked for every cell) and the tables, rows, columns and claims of a
published-table file (also checked against a finished run by ``rbench compare --published``).

Each check returns the problem as one line, or None; :mod:`rbench.suite` turns it into a
:class:`~rbench.errors.SuiteError` naming the file and key path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from rbench.manager import close_match
from rbench.tomlfile import key_part, shown

if TYPE_CHECKING:
    from rbench.compare import Claim, Published, PublishedTable
    from rbench.metric import Reference
    from rbench.suite_types import CellSpec, Suite


def listing(names: Iterable[str], limit: int = 8) -> str:
    """``a, b, c`` (at most ``limit`` names, then how many in all), or ``none``."""
    names = list(names)
    text = ", ".join(key_part(n) for n in names[:limit])
    return (text + (f", ... ({len(names)} in all)" if len(names) > limit else "")) or "none"


def missing(what: str, name: str, place: str, known: Iterable[str]) -> str:
    """``no attack 'x' in evaluation 'ev' (defined: a, b); did you mean 'a'?``"""
    known = list(known)
    close = close_match(name, known)
    hint = f"; did you mean {close!r}?" if close is not None else ""
    return f"no {what} {shown(name, 80)} {place} (defined: {listing(known)}){hint}"


def reference_problem(ref: Reference, cell: CellSpec, at: str, suite: Suite) -> str | None:
    """Why ``ref`` (a metric's, see :class:`Reference`) does not hold for ``cell`` of a table (``at``: how a
    message names the cell), or None."""
    name = ref.name or ""
    if ref.kind == "evaluation":
        return None if name in suite.evaluations else missing("evaluation", name, "in the suite", suite.evaluations)
    if ref.kind == "model":
        return None if name in suite.models else missing("model", name, "in the suite", suite.models)
    if ref.kind == "probe":
        # an unmonitored target is left to the cell: Observed makes it the cell's error (tests/test_beckova.py)
        monitor = suite.models[cell.target].monitor
        if monitor is None or name in monitor.probes:
            return None
        return missing("probe labelled", name, f"in the monitor of model {cell.target!r}, the target of {at}",
                        monitor.probes)
    return _attack_problem(ref, cell, at, suite)


def _attack_problem(ref: Reference, cell: CellSpec, at: str, suite: Suite) -> str | None:
    """Why the predictions an ``attack`` reference reads are not in the plan for ``cell``, or None."""
    ev_name = ref.evaluation or cell.evaluation
    ev = suite.evaluations.get(ev_name)
    if ev is None:  # the metric's own "evaluation" reference normally says it first
        return missing("evaluation", ev_name, "in the suite", suite.evaluations)
    labels = ("clean", *ev.attacks)
    if ref.name is not None and ref.name not in labels:
        return missing("attack", ref.name, f"in evaluation {ev_name!r}", labels)
    label = ref.name or cell.attack
    if label not in labels:
        return f"evaluation {ev_name!r} has no attack {label!r}, the attack of {at} (defined: {listing(labels)})"
    if ref.paired and (problem := other_images(suite, (cell.evaluation, ev_name))):
        return f"{problem}: the metric pairs their predictions sample by sample, by dataset index, for {at}"
    if ev.holds(cell.source, label, cell.target):
        return None
    if label == "clean":
        return f"evaluation {ev_name!r} does not evaluate {cell.target!r} on its clean inputs, as {at} needs"
    return f"evaluation {ev_name!r} does not evaluate {cell.target!r} on the {label!r} sets of {cell.source!r}, as " \
           f"{at} needs: it must list {cell.source!r} in its sources and {cell.target!r} among its targets"


def other_images(suite: Suite, evaluations: tuple[str, str]) -> str | None:
    """Why a dataset index does not name the same image in these two evaluations (they read another dataset, its
    params or another split), or None where it does (their subsets may differ: a pairing takes the images both
    have)."""
    first, second = (suite.evaluations[name].data for name in evaluations)
    if (first.call.name, first.call.params, first.split) == (second.call.name, second.call.params, second.split):
        return None
    params = first.call.params != second.call.params
    what = [f"evaluation {name!r} reads split {d.split!r} of dataset {d.dataset!r}"
            + (f" with params {shown(json.dumps(d.call.params.model_dump(mode='json'), sort_keys=True), 120)}"
               if params else "")
            for name, d in zip(evaluations, (first, second), strict=True)]
    return f"{what[0]} and {what[1]}"


#: a table's row labels and column labels
Shape = tuple[Sequence[str], Sequence[str]]
#: what one entry of a published file names: (its key path, a row or None, a column or None)
Entry = tuple[str, str | None, str | None]


def published_mismatch(published: Published, tables: Mapping[str, Shape], what: str = "the suite",
                       only: Collection[str] = ()) -> str | None:
    """The first entry of ``published`` naming a table that ``tables`` (name -> its rows and columns) lacks, or a
    row or column its table lacks, as ``"<key path>: <problem>"``; None if there is none. ``what`` names what
    ``tables`` are in messages; ``only``, when not empty, leaves the entries of other tables unchecked."""
    named: list[tuple[str, str, list[Entry]]] = [  # (key path of the table's name, the table, its entries)
        (f"tables.{key_part(name)}", name, _table_entries(f"tables.{key_part(name)}", table))
        for name, table in published.tables.items()]
    named += [(f"claims[{i}].table", claim.table, _claim_entries(f"claims[{i}]", claim))
              for i, claim in enumerate(published.claims)]
    for key, name, entries in named:
        if only and name not in only:
            continue
        problem = _table_problem(key, name, tables, what) or _cells_problem(name, tables[name], entries)
        if problem is not None:
            return problem
    return None


def _table_entries(key: str, table: PublishedTable) -> list[Entry]:
    """The rows, then the columns, a published table's values and column tolerances name."""
    out: list[Entry] = [(f"{key}.values.{key_part(row)}", row, None) for row in table.values]
    out += [(f"{key}.values.{key_part(row)}.{key_part(column)}", None, column)
            for row, columns in table.values.items() for column in columns]
    return out + [(f"{key}.column_tolerance.{key_part(column)}", None, column) for column in table.column_tolerance]


def _claim_entries(key: str, claim: Claim) -> list[Entry]:
    """The rows, then the columns, a published claim's cells (``a``, ``b``, their ``_from``, ``cells``) and
    ``among`` name."""
    sides = (("a", claim.a), ("b", claim.b), ("a_from", claim.a_from), ("b_from", claim.b_from))
    refs = [(f"{key}.{side}", ref) for side, ref in sides if ref is not None]
    refs += [(f"{key}.cells[{j}]", ref) for j, ref in enumerate(claim.cells or [])]
    out: list[Entry] = [(f"{where}.row", ref.row, None) for where, ref in refs]
    out += [(f"{where}.column", None, ref.column) for where, ref in refs]
    return out + [(f"{key}.among[{j}]", row, None) for j, row in enumerate(claim.among or [])]


def _table_problem(key: str, name: str, tables: Mapping[str, Shape], what: str) -> str | None:
    if name in tables:
        return None
    return f"{key}: {what} has no table {shown(name, 80)} (tables: {listing(tables)})"


def _cells_problem(name: str, shape: Shape, cells: list[Entry]) -> str | None:
    """``"<key>: table 't' has no row 'r' (rows: ...)"`` for the first of ``cells`` (key, row or None, column or
    None) naming a row or column that table ``name`` (of ``shape``) lacks, or None."""
    rows, columns = shape
    for key, row, column in cells:
        if row is not None and row not in rows:
            return f"{key}: table {name!r} has no row {shown(row, 80)} (rows: {listing(rows)})"
        if column is not None and column not in columns:
            return f"{key}: table {name!r} has no column {shown(column, 80)} (columns: {listing(columns)})"
    return None


#: the unit of a table's cell, None where the table has no such cell: (table, row, column) -> "%", "" or None
UnitOf = Callable[[str, str, str], "str | None"]


def percentage_problem(published: Published, unit_of: UnitOf, only: Collection[str] = ()) -> str | None:
    """The first number of ``published`` that cannot be beside a cell in % (whose unit ``unit_of`` gives), as
    ``"<key path>: <problem>"``, or None: a value, or an ``at_least`` / ``at_most`` claim's ``value``, outside
    0-100; a claim's ``margin`` above 100 (no two percentages differ by more). A -5 beside an error rate is a
    typo or a value in another unit, and every cell would read 'outside tolerance' with nothing said. ``only``,
    when not empty, leaves the entries of other tables unchecked."""
    for name, table in published.tables.items():
        if only and name not in only:
            continue
        for row, columns in table.values.items():
            for column, theirs in columns.items():
                if unit_of(name, row, column) == "%" and not 0.0 <= theirs <= 100.0:
                    return (f"tables.{key_part(name)}.values.{key_part(row)}.{key_part(column)}: {theirs:g} is no "
                            "percentage, and the table's cell is in %")
    for i, claim in enumerate(published.claims):
        if only and claim.table not in only:
            continue
        cells = [ref for ref in (claim.a, claim.b, *(claim.cells or ())) if ref is not None]
        if not any(unit_of(claim.table, ref.row, ref.column) == "%" for ref in cells):
            continue
        if claim.value is not None and not 0.0 <= claim.value <= 100.0:
            return f"claims[{i}].value: {claim.value:g} is no percentage, and the claim's cells are in %"
        if claim.margin > 100.0:
            return f"claims[{i}].margin: {claim.margin:g} points is more than two percentages can differ by"
    return None
