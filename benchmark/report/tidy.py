"""Tidy data: one row per cell (``cells.csv``, ``cells.parquet``), one row per sample of the cells that keep
their per-sample values (``samples.parquet``) and one row per rate cell with its samples' dataset indices and 0/1
outcomes (``outcomes.parquet``): the ``tidy`` file reporter, and :func:`load_results`.

A cell's row names its table, row and column labels, where it comes from (evaluation, source, attack label,
target = model, the dataset plugin and split its images come from, empty in results written before they were
recorded), the attack plugin with every parameter as a column of its own (``eps``, ``norm``, ``steps`` ...;
``attack_<name>`` where a name would clash with a fixed column; an unset one the attack computes holds the value it
ran with, :meth:`rbench.Attack.resolved_params`: pgd's ``step_size``, and ``attack_resolved`` names such columns,
space-separated, so a value written in the suite is told from a computed one), the metric with its parameters
(``metric_<name>``), the value, unit, n and 95% interval, the published value with its tolerance and verdict where
the suite compares with a paper, and the store keys. Every figure rbench draws can be redrawn from these files.
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
from rbench.report import arrow_arrays
from rbench.report.reporters import Reporter
from rbench.results import OUTCOMES_FILE, SAMPLES_FILE, Outcomes, RunResults, outcomes_digest, samples_digest
from rbench.rundir import write_output
from rbench.tomlfile import read_small_file

if TYPE_CHECKING:
    from rbench.store import Store

CELLS_CSV = "cells.csv"
CELLS_PARQUET = "cells.parquet"

#: the columns every row has, in order; attack and metric parameters follow
FIXED = ["table", "title", "row_axis", "row", "column_axis", "column", "evaluation", "source", "attack", "target",
         "model", "dataset", "split", "attack_plugin", "attack_input", "attack_resolved", "metric", "metric_plugin",
         "value", "unit", "n", "ci_low", "ci_high", "interval", "paper", "published", "tolerance", "verdict",
         "samples_needed", "error", "store_keys"]


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
            images = t.data_calls.get(c.evaluation, {})
            row: dict[str, Any] = {
                "table": t.name, "title": t.title, "row_axis": t.row_axis, "row": c.row,
                "column_axis": t.column_axis, "column": c.column, "evaluation": c.evaluation, "source": c.source,
                "attack": c.attack, "target": c.target, "model": c.target,
                "dataset": images.get("plugin", ""), "split": images.get("split", ""),
                "attack_plugin": call.get("plugin", "clean" if c.attack == "clean" else ""),
                "attack_input": call.get("input", ""), "attack_resolved": " ".join(call.get("resolved", {})),
                "metric": t.metric(c),
                "metric_plugin": metric.get("plugin", ""), "value": c.value, "unit": t.unit(c), "n": c.n,
                "ci_low": c.low, "ci_high": c.high, "interval": c.interval,
                "paper": cmp.paper if cmp else "", "published": cmp.published if cmp else None,
                "tolerance": cmp.tolerance if cmp else "", "verdict": cmp.verdict if cmp else "",
                "samples_needed": cmp.samples_needed if cmp else None, "error": c.error or "",
                "store_keys": " ".join(c.jobs)}
            for name, value in {**call.get("params", {}), **call.get("resolved", {})}.items():
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
    table = arrow_arrays.table({name: arrow_arrays.column(_column_values(rows, name)) for name in columns})
    write_output(parquet_path, lambda tmp: pq.write_table(table, tmp))
    return [csv_path, parquet_path]


def write_samples(results: RunResults, run_dir: Path) -> Path | None:
    """``samples.parquet``: (table, row, column, value) for every per-sample value the tables keep; None (and no
    file) when none keeps any."""
    import pyarrow.parquet as pq

    parts: dict[str, list[Any]] = {"table": [], "row": [], "column": [], "value": []}
    for t in results.tables:
        for (row, column), values in t.samples.items():
            values = np.asarray(values, dtype=np.float64).ravel()
            parts["table"] += [t.name] * values.size
            parts["row"] += [row] * values.size
            parts["column"] += [column] * values.size
            parts["value"].append(values)
    if not parts["value"]:
        return None
    table = arrow_arrays.table({"table": arrow_arrays.column(parts["table"]), "row": arrow_arrays.column(parts["row"]),
                                "column": arrow_arrays.column(parts["column"]),
                                "value": arrow_arrays.array(np.concatenate(parts["value"]))})
    path = Path(run_dir) / SAMPLES_FILE
    write_output(path, lambda tmp: pq.write_table(table, tmp))
    return path


def read_samples(path: Path, results: RunResults) -> dict[str, dict[tuple[str, str], np.ndarray]]:
    """table -> (row, column) -> values, from a samples.parquet, checked against ``results``: every (table, row,
    column) it names is a cell there, every value is finite; a one-line :class:`RbenchError` otherwise."""

    try:
        data = _read_parquet(path, "samples file", ["table", "row", "column", "value"]).to_pydict()
    except Exception as exc:  # pyarrow raises several kinds for a truncated or foreign file
        raise RbenchError(f"{path}: not a samples file written by rbench ({type(exc).__name__}: {exc})") from None
    cells = {(t.name, c.row, c.column): c for t in results.tables for c in t.cells}
    grouped: dict[tuple[str, str, str], list[float]] = {}
    for table, row, column, value in zip(data["table"], data["row"], data["column"], data["value"], strict=True):
        grouped.setdefault((table, row, column), []).append(value)
    out: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    for (table, row, column), values in grouped.items():
        cell = cells.get((table, row, column))
        where = f"{path}: cell ({row}, {column}) of table {table!r}"
        if cell is None:
            raise RbenchError(f"{path}: names cell ({row}, {column}) of table {table!r}, which results.json lacks")
        if not all(v is not None and math.isfinite(v) for v in values):
            raise RbenchError(f"{where} has a missing or non-finite value")
        kept = np.asarray(values, dtype=np.float64)
        if cell.n is not None and kept.size != cell.n:
            raise RbenchError(f"{where}: {kept.size} values where results.json counts n = {cell.n}")
        if cell.samples_sha256 and samples_digest(kept) != cell.samples_sha256:  # "": written before digests
            raise RbenchError(f"{where}: its values are not those results.json recorded for the cell "
                              "(SHA-256 differs)")
        out.setdefault(table, {})[(row, column)] = kept
    lacking = [key for key, c in cells.items() if c.samples_sha256 and key[1:] not in out.get(key[0], {})]
    if lacking:
        table, row, column = lacking[0]
        more = f" and {len(lacking) - 1} more cells" if len(lacking) > 1 else ""
        raise RbenchError(f"{path}: lacks the values of cell ({row}, {column}) of table {table!r}{more}, which "
                          "results.json recorded")
    return out


def _read_parquet(path: Path, what: str, columns: list[str]) -> Any:
    """The ``columns`` of the parquet file at ``path`` (a regular file, read whole), read by ``ParquetFile``
    without threads: ``pq.read_table`` goes through arrow's dataset scanner, whose thread pools outlived a process
    that imported torch, which then aborted at exit now and then ("terminate called without an active
    exception", exit 134 instead of 2 after a one-line error: 13 of 40 exits on a loaded 2-core machine;
    apache/arrow#34314); this path: 0 of 60."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.ParquetFile(pa.BufferReader(read_small_file(path, what, limit=None))).read(columns=columns,
                                                                                      use_threads=False)


def write_outcomes(results: RunResults, run_dir: Path) -> Path | None:
    """``outcomes.parquet``: one row per rate cell that kept its per-sample outcomes (table, row, column, the
    list of its samples' dataset indices, the list of their 0/1 outcomes); None (and no file) when none kept any.
    One row per cell with list columns rather than one row per sample: reading it back costs one row per cell."""
    import pyarrow.parquet as pq

    keys, indices, outcomes = [], [], []
    for t in results.tables:
        for (row, column), (index, outcome) in t.outcomes.items():
            keys.append((t.name, row, column))
            indices.append(np.asarray(index, dtype=np.int64).ravel())
            outcomes.append(np.asarray(outcome, dtype=bool).ravel())
    if not keys:
        return None
    table = arrow_arrays.table({"table": arrow_arrays.column([k[0] for k in keys]),
                                "row": arrow_arrays.column([k[1] for k in keys]),
                                "column": arrow_arrays.column([k[2] for k in keys]),
                                "index": arrow_arrays.lists(indices), "outcome": arrow_arrays.lists(outcomes)})
    path = Path(run_dir) / OUTCOMES_FILE
    write_output(path, lambda tmp: pq.write_table(table, tmp))
    return path


def outcomes_gone(run_dir: Path, results: RunResults) -> str | None:
    """A note where ``results`` records per-sample outcomes (:attr:`rbench.results.Cell.outcomes_sha256`) but the
    run folder's outcomes.parquet is gone: its cells can no longer be paired on their samples."""
    path = (Path(run_dir).parent if Path(run_dir).is_file() else Path(run_dir)) / OUTCOMES_FILE
    kept = sum(1 for t in results.tables for c in t.cells if c.outcomes_sha256)
    if not kept or path.exists():
        return None
    cells = "1 cell" if kept == 1 else f"{kept} cells"
    return f"{path} is missing, though the run's results.json records the per-sample outcomes of {cells}"


def read_outcomes(run_dir: Path, results: RunResults) -> Outcomes:
    """The rate cells' per-sample outcomes of a run folder's outcomes.parquet ({} where the run has none: runs
    written before it), each checked against ``results``: integer dataset indices and boolean outcomes without
    nulls, one row per cell, a cell of the run with a Wilson interval, as many samples as its n, no index twice
    or below 0, 100 times the outcomes' mean equal to its value, and their digest the one results.json recorded
    for the cell (``Cell.outcomes_sha256``: a shuffled, stale or foreign file is refused); a one-line
    :class:`RbenchError` naming the file and the cell otherwise."""
    import pyarrow as pa

    path = (Path(run_dir).parent if Path(run_dir).is_file() else Path(run_dir)) / OUTCOMES_FILE  # or results.json
    if not path.exists():
        return {}
    try:
        data = _read_parquet(path, "outcomes file", ["table", "row", "column", "index", "outcome"])
        names = [data.column(c).to_pylist() for c in ("table", "row", "column")]
        index, outcome = data.column("index").combine_chunks(), data.column("outcome").combine_chunks()
        if not (pa.types.is_integer(index.type.value_type) and pa.types.is_boolean(outcome.type.value_type)):
            raise ValueError(f"index is {index.type}, outcome {outcome.type}")
        if index.null_count or outcome.null_count or index.values.null_count or outcome.values.null_count:
            raise ValueError("it has missing values")
        offsets = arrow_arrays.to_numpy(index.offsets)
        if not np.array_equal(offsets, arrow_arrays.to_numpy(outcome.offsets)):
            raise ValueError("indices and outcomes differ in length")
        flat_index = arrow_arrays.to_numpy(index.values).astype(np.int64)
        flat_outcome = arrow_arrays.to_numpy(outcome.values)
    except Exception as exc:  # pyarrow raises several kinds for a truncated or foreign file
        raise RbenchError(f"{path}: not an outcomes file written by rbench ({type(exc).__name__}: {exc})") from None
    cells = {(t.name, c.row, c.column): c for t in results.tables for c in t.cells}
    out: Outcomes = {}
    for i, key in enumerate(zip(*names, strict=True)):
        cell = cells.get(key)
        where = f"{path}: cell ({key[1]}, {key[2]}) of table {key[0]!r}"
        if cell is None or cell.value is None or cell.interval != "wilson":
            raise RbenchError(f"{where}: results.json has no rate cell there")
        if key in out:
            raise RbenchError(f"{where}: listed twice")
        idx, hit = flat_index[offsets[i]:offsets[i + 1]], flat_outcome[offsets[i]:offsets[i + 1]]
        if idx.size != cell.n or np.unique(idx).size != idx.size or (idx.size and idx.min() < 0):
            raise RbenchError(f"{where}: {idx.size} outcomes ({np.unique(idx).size} distinct dataset indices, "
                              f"none below 0 expected) where results.json counts n = {cell.n}")
        if not math.isclose(100.0 * float(hit.mean()), cell.value, rel_tol=1e-9, abs_tol=1e-9):
            raise RbenchError(f"{where}: its outcomes give {100.0 * float(hit.mean()):g}, results.json "
                              f"{cell.value:g}")
        if outcomes_digest(idx, hit) != cell.outcomes_sha256:
            raise RbenchError(f"{where}: its outcomes are not those results.json recorded for the cell "
                              "(SHA-256 differs)")
        out[key] = (idx, hit)
    return out


class Tidy(Reporter):
    """cells.csv and cells.parquet (one row per cell), samples.parquet (one row per kept per-sample value),
    outcomes.parquet (one row per rate cell, with its samples' dataset indices and 0/1 outcomes)."""

    name = "tidy"
    suffix = None

    def write(self, results: RunResults, run_dir: Path, store: Store) -> list[Path]:
        written = write_cells(cell_rows(results), run_dir)
        extra = [write_samples(results, run_dir), write_outcomes(results, run_dir)]
        return written + [path for path in extra if path is not None]


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
