"""Tidy data: one row per cell (``cells.csv``, ``cells.parquet``) and one row per sample of the cells that keep
their per-sample values (``samples.parquet``): the ``tidy`` file reporter, and :func:`load_results`.

A cell's row names its table, row and column labels, where it comes from (evaluation, source, attack label,
target = model), the attack plugin with every parameter as a column of its own (``eps``, ``norm``, ``steps`` ...;
``attack_<name>`` where a name would clash with a fixed column), the metric with its parameters (``metric_<name>``),
the value, unit, n and 95% interval, the published value with its tolerance and verdict where the suite compares
with a paper, and the store keys. Every figure rbench draws can be redrawn from these files.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rbench.errors import RbenchError
from rbench.report.reporters import Reporter
from rbench.results import SAMPLES_FILE, RunResults
from rbench.rundir import write_output

if TYPE_CHECKING:
    from rbench.store import Store

CELLS_CSV = "cells.csv"
CELLS_PARQUET = "cells.parquet"

#: the columns every row has, in order; attack and metric parameters follow
FIXED = ["table", "title", "row_axis", "row", "column_axis", "column", "evaluation", "source", "attack", "target",
         "model", "attack_plugin", "attack_input", "metric", "metric_plugin", "value", "unit", "n", "ci_low",
         "ci_high", "interval", "paper", "published", "tolerance", "verdict", "samples_needed", "error",
         "store_keys"]


def _scalar(value: Any) -> Any:
    """A parameter as a cell of a flat file: lists and mappings as JSON text, the rest as is."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def cell_rows(results: RunResults) -> list[dict[str, Any]]:
    """One dict per cell of every table of ``results`` (see the module for the columns)."""
    comparisons = {}
    if results.published:
        from rbench.compare import compare

        comparisons = {(c.table, c.row, c.column): c for c in compare(results)}
    rows = []
    for t in results.tables:
        for c in t.cells:
            call = t.attack_calls.get(c.attack, {})
            metric = t.metric_call(c)
            cmp = comparisons.get((t.name, c.row, c.column))
            row: dict[str, Any] = {
                "table": t.name, "title": t.title, "row_axis": t.row_axis, "row": c.row,
                "column_axis": t.column_axis, "column": c.column, "evaluation": c.evaluation, "source": c.source,
                "attack": c.attack, "target": c.target, "model": c.target,
                "attack_plugin": call.get("plugin", "clean" if c.attack == "clean" else ""),
                "attack_input": call.get("input", ""), "metric": t.metric(c),
                "metric_plugin": metric.get("plugin", ""), "value": c.value, "unit": t.unit(c), "n": c.n,
                "ci_low": c.low, "ci_high": c.high, "interval": c.interval,
                "paper": cmp.paper if cmp else "", "published": cmp.published if cmp else None,
                "tolerance": cmp.tolerance if cmp else "", "verdict": cmp.verdict if cmp else "",
                "samples_needed": cmp.samples_needed if cmp else None, "error": c.error or "",
                "store_keys": " ".join(c.jobs)}
            for name, value in call.get("params", {}).items():
                row[name if name not in FIXED else f"attack_{name}"] = _scalar(value)
            for name, value in metric.get("params", {}).items():
                row[f"metric_{name}"] = _scalar(value)
            rows.append(row)
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    extra = dict.fromkeys(k for r in rows for k in r if k not in FIXED)
    return FIXED + list(extra)


def _column_values(rows: list[dict[str, Any]], name: str) -> list[Any]:
    """One column, typed for parquet: numbers as float where any is a float (or bool), text where kinds mix."""
    values = [r.get(name) for r in rows]
    present = [v for v in values if v is not None and v != ""]
    if name in ("n", "samples_needed") or (present and all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in present)):
        return [None if v is None or v == "" else int(v) for v in values]
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return [None if v is None or v == "" else float(v) for v in values]
    if present and all(isinstance(v, bool) for v in present):
        return [None if v is None or v == "" else bool(v) for v in values]
    return [None if v is None else str(v) for v in values]


def write_cells(rows: list[dict[str, Any]], run_dir: Path) -> list[Path]:
    """``cells.csv`` and ``cells.parquet`` in ``run_dir`` (atomically)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _columns(rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in r.items()}
                     for r in rows)
    text = out.getvalue()
    csv_path, parquet_path = Path(run_dir) / CELLS_CSV, Path(run_dir) / CELLS_PARQUET
    write_output(csv_path, lambda tmp: tmp.write_text(text))
    table = pa.table({name: _column_values(rows, name) for name in columns})
    write_output(parquet_path, lambda tmp: pq.write_table(table, tmp))
    return [csv_path, parquet_path]


def write_samples(results: RunResults, run_dir: Path) -> Path | None:
    """``samples.parquet``: (table, row, column, value) for every per-sample value the tables keep; None (and no
    file) when none keeps any."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts: dict[str, list[Any]] = {"table": [], "row": [], "column": [], "value": []}
    for t in results.tables:
        for key, values in t.samples.items():
            row, column = key.split("|", 1)
            values = np.asarray(values, dtype=np.float64).ravel()
            parts["table"] += [t.name] * values.size
            parts["row"] += [row] * values.size
            parts["column"] += [column] * values.size
            parts["value"].append(values)
    if not parts["value"]:
        return None
    table = pa.table({"table": parts["table"], "row": parts["row"], "column": parts["column"],
                      "value": np.concatenate(parts["value"])})
    path = Path(run_dir) / SAMPLES_FILE
    write_output(path, lambda tmp: pq.write_table(table, tmp))
    return path


def read_samples(path: Path, results: RunResults) -> dict[str, dict[str, np.ndarray]]:
    """table -> "row|column" -> values, from a samples.parquet, checked against ``results``: every (table, row,
    column) it names is a cell there, every value is finite; a one-line :class:`RbenchError` otherwise."""
    import pyarrow.parquet as pq

    try:
        data = pq.read_table(path, columns=["table", "row", "column", "value"]).to_pydict()
    except Exception as exc:  # pyarrow raises several kinds for a truncated or foreign file
        raise RbenchError(f"{path}: not a samples file written by rbench ({type(exc).__name__}: {exc})") from None
    cells = {(t.name, c.row, c.column) for t in results.tables for c in t.cells}
    grouped: dict[tuple[str, str, str], list[float]] = {}
    for table, row, column, value in zip(data["table"], data["row"], data["column"], data["value"], strict=True):
        grouped.setdefault((table, row, column), []).append(value)
    out: dict[str, dict[str, np.ndarray]] = {}
    for (table, row, column), values in grouped.items():
        if (table, row, column) not in cells:
            raise RbenchError(f"{path}: names cell ({row}, {column}) of table {table!r}, which results.json lacks")
        if not all(v is not None and math.isfinite(v) for v in values):
            raise RbenchError(f"{path}: cell ({row}, {column}) of table {table!r} has a missing or non-finite value")
        out.setdefault(table, {})[f"{row}|{column}"] = np.asarray(values, dtype=np.float64)
    return out


class Tidy(Reporter):
    """cells.csv and cells.parquet (one row per cell), samples.parquet (one row per kept per-sample value)."""

    name = "tidy"
    suffix = None

    def write(self, results: RunResults, run_dir: Path, store: Store) -> list[Path]:
        written = write_cells(cell_rows(results), run_dir)
        samples = write_samples(results, run_dir)
        return written + ([samples] if samples else [])


def load_results(run_dir: str | Path) -> Any:
    """The tidy cells of a run folder (or of its results.json): a pandas DataFrame when pandas is installed, else
    a list of dicts, with the columns of cells.csv (built from results.json, so also for runs older than it)."""
    results = RunResults.read(Path(run_dir))
    rows = cell_rows(results)
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows, columns=_columns(rows))
