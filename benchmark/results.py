"""Result tables: what a run produces, as stored in ``results.json`` and rendered by reporters."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rbench.errors import RbenchError
from rbench.estimate import interval_holds, wilson
from rbench.tomlfile import Unreadable, read_small_file

RESULTS_FILE = "results.json"
#: present while a run writes its reports into its folder: one stopped meanwhile leaves it, and ``rbench report``
#: and ``compare`` refuse the folder (its files may mix two runs) until a run writes it whole again
WRITING_MARK = ".rbench-writing"
#: a plain significant-digits spec (".3g", "+.3g"); one with fill, width, grouping or "#" is left to ``format``
_SIGNIFICANT = re.compile(r"[+\- ]?\.\d+g")
#: per-sample values of the cells that keep them (written by the ``tidy`` reporter)
SAMPLES_FILE = "samples.parquet"
#: per-sample 0/1 outcomes of the rate cells, by dataset index (``tidy``; ``rbench compare --run`` pairs runs on them)
OUTCOMES_FILE = "outcomes.parquet"
#: one cell's (dataset indices, 0/1 outcomes)
CellOutcomes = tuple[np.ndarray, np.ndarray]
#: (table, row, column) -> a rate cell's outcomes, as read from outcomes.parquet
Outcomes = dict[tuple[str, str, str], CellOutcomes]


def format_value(value: float, fmt: str) -> str:
    """``value`` in the format spec ``fmt``, except that a ``.Ng`` format keeps a number below a million in plain
    digits: with ``.3g``, 1234.5 shows as ``1230`` and 1000 as ``1000`` where ``format`` writes ``1.23e+03`` and
    ``1e+03`` (a table column of operator norms should not switch notation at 1000)."""
    text = format(value, fmt)
    if "e" not in text or not _SIGNIFICANT.fullmatch(fmt) or not math.isfinite(value):
        return text
    rounded = float(text)  # already rounded to the format's N digits
    if not 1 <= abs(rounded) < 1e6:
        return text
    return format(rounded, fmt[:fmt.index(".")] + ".0f")


def outcomes_digest(indices: np.ndarray, outcomes: np.ndarray) -> str:
    """SHA-256 of a cell's per-sample outcomes taken in dataset-index order (int64 indices, then 0/1 bytes)."""
    order = np.argsort(indices, kind="stable")
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(indices, dtype=np.int64)[order]).tobytes())
    digest.update(np.ascontiguousarray(np.asarray(outcomes, dtype=np.uint8)[order]).tobytes())
    return digest.hexdigest()


def samples_digest(values: np.ndarray) -> str:
    """SHA-256 of a cell's per-sample values, in their order, as float64."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(values, dtype=np.float64).ravel()).tobytes()).hexdigest()


#: an interval is shown as ``value ±h`` where its shorter side is at least this share of its longer one
SYMMETRIC = 0.8


@dataclass
class Cell:
    """One table cell: its value (None when not applicable or its jobs failed), the store keys it was
    computed from, and an error message when a job it needs failed."""

    row: str
    column: str
    value: float | None
    jobs: list[str] = field(default_factory=list)
    error: str | None = None
    #: the samples behind the value, and its 95% interval [low, high] by ``interval`` (a method of
    #: rbench.estimate.Estimate: "wilson", "t", "normal", "order statistics", ...); None / "" where it has none
    n: int | None = None
    low: float | None = None
    high: float | None = None
    interval: str = ""
    #: where the value comes from: the (source, attack label, target) cell of an evaluation
    evaluation: str = ""
    source: str = ""
    attack: str = ""
    target: str = ""
    #: SHA-256 of the per-sample outcomes a rate cell kept in outcomes.parquet (see :func:`outcomes_digest`), so
    #: they are read back only if they are this cell's; "" where none were kept
    outcomes_sha256: str = ""
    #: SHA-256 of the per-sample values a cell kept in samples.parquet (see :func:`samples_digest`), likewise
    samples_sha256: str = ""
    #: the label of the metric behind the value ("" in results written before cells carried it: see
    #: :attr:`ResultTable.metric_of`)
    metric: str = ""
    #: the key of the metric call behind the value in its table's ``metric_calls``, ``units`` and ``formats``:
    #: the label, or ``label [i]`` where calls with other params share it ("" in results written before: the label)
    call: str = ""

    def spread(self) -> float | None:
        """The interval's larger half-width (for a compact ``value ±spread``); None without an interval."""
        if self.value is None or self.low is None or self.high is None:
            return None
        return max(self.value - self.low, self.high - self.value)


@dataclass
class ResultTable:
    name: str
    title: str
    rows: list[str]
    columns: list[str]
    row_axis: str
    column_axis: str
    units: dict[str, str]
    formats: dict[str, str]
    cells: list[Cell]
    source: str = ""
    #: results written before each cell carried its metric (:attr:`Cell.metric`): "row|column" -> that label (a
    #: key ambiguous where a label holds "|"; read only for such old results, never written)
    metric_of: dict[str, str] = field(default_factory=dict)
    #: metric call key (:attr:`Cell.call`) -> the plugin call behind it: {"plugin": name, "params": validated params
    #: as JSON}; ``units`` and ``formats`` are keyed alike
    metric_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the figures file reporters draw of the table (the suite's ``figure`` option: one name or a list), or None
    figure: str | list[str] | None = None
    #: attack label -> the plugin call behind it: {"plugin": name, "params": validated params as JSON} ("clean":
    #: no entry); a transform of another attack's sets adds "input": that attack's label
    attack_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: model name -> how it is made (:func:`rbench.assemble.assemble_table`): {"plugin", "params", "trainer":
    #: {"plugin", "params"}, "data": {"dataset", "split", "n", "params"?, "parts"?, "part"?}, "seed"?, "init"?,
    #: "members"?}, or for a defended model {"defenses": [{"name", "plugin", "params", "trainer"?, "data"?,
    #: "seed"?}], "base" or "members"}; empty in older results
    model_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: evaluation name -> the images its cells are computed on (:func:`rbench.assemble.data_record`): {"dataset"
    #: (the suite's name), "plugin", "params", "version", "distribution", "split", "n" (null: the whole split),
    #: "subset_seed", "content"? (the split's digest where its dataset gives one)}; a cell's dataset indices name
    #: images of that split; empty in older results
    data_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: McNemar tests the suite asked for (``paired``): a, b, along (the other axis' label), axis, and the fields
    #: of :class:`rbench.estimate.PairedTest`
    paired: list[dict[str, Any]] = field(default_factory=list)
    #: the label of the table's row (column) of means over its other rows (columns), if it has one (the suite's
    #: ``mean_row`` / ``mean_column``: :func:`rbench.assemble.mean_cells`)
    mean_row: str | None = None
    mean_column: str | None = None
    #: (row, column) -> the per-sample values a cell's mean was taken over (distribution plots); kept out of
    #: results.json, written to samples.parquet by the ``tidy`` reporter and read back from it
    samples: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False, compare=False)
    #: (row, column) -> (dataset indices, 0/1 outcomes) of each plain rate cell (a Wilson interval: its value is
    #: 100 times the outcomes' mean); kept out of results.json, written to outcomes.parquet by ``tidy`` and read
    #: back only where two runs are compared (:func:`rbench.report.tidy.read_outcomes`)
    outcomes: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False, compare=False)

    def images_of(self, cell: Cell) -> dict[str, Any] | None:
        """What a dataset index of ``cell`` names: its evaluation's dataset plugin, params, split and content digest
        (:attr:`data_calls` without the suite's name for the dataset, ``n`` and the subset seed, which only choose
        among those images); None where the results do not record it."""
        record = self.data_calls.get(cell.evaluation)
        if record is None or "plugin" not in record:
            return None
        return {k: v for k, v in record.items() if k not in ("dataset", "n", "subset_seed")}

    def without_outcomes(self) -> ResultTable:
        """The table as figures are drawn (and keyed, :mod:`rbench.report.figure_cache`) from: without its
        per-sample outcomes, which no figure draws and ``rbench report`` does not read back (a figure keyed on them
        would not be found again there)."""
        return replace(self, outcomes={})

    def is_mean(self, cell: Cell) -> bool:
        """Whether ``cell`` is one of the mean row's (column's): a number over several rows (columns), with no stored
        output of its own (its jobs are every averaged cell's), so a figure drawn from stored outputs skips it."""
        return cell.row == self.mean_row or cell.column == self.mean_column

    def draws(self, figure: str) -> bool:
        """Whether the suite asked for ``figure`` (e.g. "curves", "lines") of this table."""
        return self.figure == figure or (isinstance(self.figure, list) and figure in self.figure)

    def cell(self, row: str, column: str) -> Cell:
        for c in self.cells:
            if c.row == row and c.column == column:
                return c
        raise KeyError(f"table {self.name!r} has no cell ({row!r}, {column!r}); rows: {', '.join(self.rows)}; "
                       f"columns: {', '.join(self.columns)}")

    def metric(self, cell: Cell) -> str:
        """The label of the metric behind ``cell``."""
        return cell.metric or self.metric_of.get(f"{cell.row}|{cell.column}", next(iter(self.units), ""))

    def metric_call(self, cell: Cell) -> dict[str, Any]:
        """The metric plugin call behind ``cell`` (``{"plugin": ..., "params": ...}``; empty in results written
        before calls were recorded)."""
        return self.metric_calls.get(self.call(cell), {})

    def call(self, cell: Cell) -> str:
        """The key of ``cell``'s metric call in ``metric_calls``, ``units`` and ``formats``."""
        return cell.call or self.metric(cell)

    def unit(self, cell: Cell) -> str:
        return self.units.get(self.call(cell), "")

    def fmt(self, cell: Cell) -> str:
        """The format spec of ``cell``'s metric (``.1f`` where the table does not say)."""
        return self.formats.get(self.call(cell), ".1f")

    def format(self, cell: Cell, spread: bool = False) -> str:
        """``cell``'s value as text, with the format of its metric ("-" where it does not apply); with ``spread``,
        followed by its 95% interval as :meth:`shown` gives it: `` ±h``, `` +a/−b``, `` +h`` or `` −h``."""
        return self.shown(cell, spread).text

    def shown(self, cell: Cell, spread: bool = False) -> Shown:
        """``cell`` as every report shows it: its value in the format of its metric ("-" where it does not apply,
        "failed" where its jobs failed) and, with ``spread``, its 95% interval as distances from the value: one
        ``±h`` where the two sides are about equal (the shorter at least :data:`SYMMETRIC` of the longer, and the
        range ``value ±h`` crosses 0, or an end of the range the quantity lies in (100 for a rate in %:
        :func:`value_edges`), only where the interval does); else both sides, ``+a/−b`` (2 of 64: ``3.1
        +7.6/−2.3``, where ``±7.6`` read as if the rate could be negative); ``+h`` (``−h``) alone where the interval
        does not reach below (above) the value at its precision (0 of n: ``0.0 +1.9``). An interval narrower than
        the precision is shown where one end still reads otherwise, as the step between the two (1 of 10000:
        ``0.0 +0.1``; a bare value reads as certain)."""
        if cell.value is None:
            return Shown("failed" if cell.error else "-")
        fmt = self.fmt(cell)
        half = cell.spread() if spread else None
        value = format_value(cell.value, fmt)
        if half is None:
            return Shown(value)
        assert cell.low is not None and cell.high is not None  # spread() says so
        zero = format_value(0.0, fmt)
        shown = format_value(half, fmt)
        if shown == zero:
            return _step_to_an_end(value, format_value(cell.low, fmt), format_value(cell.high, fmt), fmt)
        below, above = cell.value - cell.low, cell.high - cell.value
        shown_below, shown_above = format_value(below, fmt), format_value(above, fmt)
        # a side is none at the shown precision where its end reads as the value does (with a significant-digits
        # format, 5.55e-17 would not read as 0)
        if shown_below == zero or format_value(cell.low, fmt) == value:
            return Shown(value, plus=shown)
        if shown_above == zero or format_value(cell.high, fmt) == value:
            return Shown(value, minus=shown)
        crosses = any(cell.value - half < edge <= cell.low or cell.high <= edge < cell.value + half
                      for edge in value_edges(cell.interval, self.unit(cell)))
        if shown_below == shown_above or (min(below, above) >= SYMMETRIC * half and not crosses):
            return Shown(value, plus=shown, minus=shown)
        return Shown(value, plus=shown_above, minus=shown_below)


@dataclass(frozen=True)
class Shown:
    """A cell as reports show it (:meth:`ResultTable.shown`): ``value`` as text, and its 95% interval's sides as
    distances from it, each as text or "" where that side is not shown; equal sides read as one ``±``."""

    value: str
    plus: str = ""
    minus: str = ""

    @property
    def symmetric(self) -> bool:
        return bool(self.plus) and self.plus == self.minus

    @property
    def text(self) -> str:
        """``3.1 ±1.2``, ``3.1 +7.6/−2.3``, ``0.0 +1.9``, ``100.0 −1.9`` or the bare value."""
        if self.symmetric:
            return f"{self.value} ±{self.plus}"
        if self.plus and self.minus:
            return f"{self.value} +{self.plus}/−{self.minus}"
        if self.plus or self.minus:
            return f"{self.value} +{self.plus}" if self.plus else f"{self.value} −{self.minus}"
        return self.value


def images_text(record: dict[str, Any], origin: str = "") -> str:
    """A record of :attr:`ResultTable.data_calls` (or :meth:`ResultTable.images_of`) in words: ``mnist test``,
    ``notmnist test (content 66751d7f)``, with the dataset's params as JSON where it has any and ``origin`` (a
    version, say) after its name; how every report and ``rbench compare`` name a cell's images."""
    plugin = record.get("plugin", record.get("dataset", "?"))
    params = f"({json.dumps(record['params'], sort_keys=True)})" if record.get("params") else ""
    content = f" (content {str(record['content'])[:8]})" if record.get("content") else ""
    return f"{plugin}{params}{f' {origin}' if origin else ''} {record.get('split', '?')}{content}"


def value_edges(interval: str, unit: str) -> tuple[float, ...]:
    """Where a value's sign changes and the ends of the range the quantity lies in (:data:`BOUNDS` by its
    interval method; a rate in % lies in [0, 100]): a ``value ±h`` that crosses one of them reads as a value
    the interval rules out (99.2 ±1.0 for an interval ending at 100)."""
    return (0.0, *BOUNDS.get(interval, (0.0, 100.0) if unit == "%" else ()))


def _step_to_an_end(value: str, low: str, high: str, fmt: str) -> Shown:
    """``value`` with the step from it to the shown ``high`` (as ``plus``) or ``low`` (``minus``) end of an
    interval whose half-width rounds to 0, where that end reads otherwise (at most one can: the interval is
    narrower than the precision); the bare value where neither does, or the format's text is not a plain number."""
    for end, above in ((high, True), (low, False)):
        if end != value:
            try:
                step = format_value(abs(float(end) - float(value)), fmt)
            except ValueError:
                return Shown(value)
            return Shown(value, plus=step) if above else Shown(value, minus=step)
    return Shown(value)


@dataclass
class RunResults:
    suite: str
    title: str
    profile: str | None
    files: list[str]
    provenance: dict[str, Any]
    tables: list[ResultTable]
    jobs: dict[str, Any] = field(default_factory=dict)
    #: published-table files (absolute paths) the suite compares with
    published: list[str] = field(default_factory=list)
    #: each of them as it read when the run was made (path -> its validated content as JSON), so a re-rendered
    #: comparison is the run's even after the file changed or moved (results written before it have none)
    published_docs: dict[str, Any] = field(default_factory=dict)
    #: the tables ``--only`` chose (empty: the run has every table of its suite); comparisons skip the others
    only: list[str] = field(default_factory=list)
    #: the suite's description ("" where it has none, and in results written before it was recorded)
    description: str = ""

    def entry_checksums(self) -> dict[str, str]:
        """Job key -> the checksum of the entry the run read or wrote under it (results written before it was
        recorded: none)."""
        return {key: job["sha256"] for key, job in self.jobs.items()
                if isinstance(job, dict) and isinstance(job.get("sha256"), str)}

    def to_dict(self) -> dict[str, Any]:
        """The results as results.json holds them (every field but the tables' per-sample values)."""
        out = asdict(replace(self, tables=[replace(t, samples={}, outcomes={}) for t in self.tables]))
        for table in out["tables"]:
            del table["samples"], table["outcomes"]
        return out

    @classmethod
    def read(cls, run_dir: Path) -> RunResults:
        """The results of a run folder (or of its results.json), with the per-sample values of samples.parquet
        beside it where the ``tidy`` reporter wrote one."""
        path = Path(run_dir) / RESULTS_FILE if Path(run_dir).is_dir() else Path(run_dir)
        if (path.parent / WRITING_MARK).exists():
            raise RbenchError(f"{path.parent}: the run writing this folder stopped before it finished writing its "
                              "reports, so its files may mix two runs; run the suite into it again")
        try:
            raw = json.loads(read_small_file(path, "results file", limit=None), parse_constant=_refuse_non_finite)
            if not isinstance(raw, dict) or not isinstance(raw.get("tables"), list):
                raise ValueError("not a JSON object with a list of tables")
            tables = [ResultTable(**{**t, "cells": [Cell(**c) for c in t["cells"]]}) for t in raw.pop("tables")]
            results = cls(**raw, tables=tables)
            _check_unique(results)
            for table in results.tables:
                _check_table(table)
                for cell in table.cells:
                    _check_cell(table.name, cell)
                    if cell.call and cell.call not in table.metric_calls:
                        raise ValueError(f"table {table.name!r}, cell ({cell.row}, {cell.column}): its metric call "
                                         f"{cell.call!r} is not one of the table's metric_calls")
            if not isinstance(results.provenance, dict) or not isinstance(results.provenance.get("store", ""), str):
                raise ValueError("provenance.store is not a path")
            if not isinstance(results.published_docs, dict):
                raise ValueError("published_docs is not a table of published files")
            from rbench.compare import recorded_published_problem  # compare reads RunResults

            if (problem := recorded_published_problem(results)) is not None:
                raise ValueError(problem)
            _check_texts(results)
            _check_jobs(results.jobs)
        except Unreadable as exc:  # missing, a folder or a FIFO named results.json (never opened), unreadable
            if not path.exists() and not path.is_symlink():
                raise RbenchError(f"{path}: no such file; pass a run folder written by 'rbench run'") from None
            raise RbenchError(f"{path}: cannot be read ({exc})") from None
        except RecursionError:  # a document nested thousands deep (json's parser recurses)
            raise RbenchError(f"{path}: not a valid rbench results file (nested too deeply)") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise RbenchError(f"{path}: not a valid rbench results file ({type(exc).__name__}: {exc})") from None
        samples = path.parent / SAMPLES_FILE
        if samples.exists():
            from rbench.report.tidy import read_samples

            by_table = read_samples(samples, results)
            for table in results.tables:
                table.samples = by_table.get(table.name, {})
        return results


def _refuse_non_finite(constant: str) -> float:
    raise ValueError(f"it holds {constant}, which rbench never writes")


#: where the quantity an interval method estimates lies: a rate in % (made by rbench.estimate.rate), an AUROC, a
#: correlation ("normal" and "t" intervals estimate quantities of any range)
BOUNDS = {"wilson": (0.0, 100.0), "hanley-mcneil": (0.0, 1.0), "wilson-pairs": (0.0, 1.0), "fisher-z": (-1.0, 1.0)}


def _check_unique(results: RunResults) -> None:
    """Each table once, each (row, column) of a table once: a copy of a cell edited in (another value under the
    same labels) was rendered by ``report``, and judged by ``compare --run`` against the other run's cell, while
    the check against the run's outcomes saw only the last copy."""
    from collections import Counter

    if names := [n for n, times in Counter(t.name for t in results.tables).items() if times > 1]:
        raise ValueError(f"table {names[0]!r} is listed twice")
    for table in results.tables:
        if places := [at for at, times in Counter((c.row, c.column) for c in table.cells).items() if times > 1]:
            raise ValueError(f"table {table.name!r}: cell ({places[0][0]}, {places[0][1]}) is listed twice")


def _check_texts(results: RunResults) -> None:
    """The suite's title and description and every table title are printable text (line breaks and tabs aside):
    an escape sequence in an edited results.json reached the terminal through ``rbench report``. No length limit:
    runs written before suites limited their titles are read as they are."""
    texts = {"title": results.title, "description": results.description,
             **{f"table {t.name!r}: its title": t.title for t in results.tables}}
    for what, text in texts.items():
        if not isinstance(text, str):
            raise ValueError(f"{what} is not text")
        if not text.replace("\n", "").replace("\t", "").isprintable():
            raise ValueError(f"{what} holds a control or unprintable character")


def _check_table(table: ResultTable) -> None:
    """Its metric calls (key -> {"plugin": name, "params": {...}}), units and formats (key -> text; a format a
    number can be written in) are what rbench writes."""
    for name in ("metric_calls", "units", "formats", "data_calls"):
        if not isinstance(getattr(table, name), dict):
            raise ValueError(f"table {table.name!r}: {name} is not a table")
    for evaluation, data in table.data_calls.items():
        if not isinstance(data, dict) or not all(isinstance(data.get(k, ""), str) for k in ("split", "plugin")) \
                or not isinstance(data.get("params", {}), dict):
            raise ValueError(f"table {table.name!r}: data_calls[{evaluation!r}] is not a record of images "
                             "({\"plugin\": NAME, \"params\": {...}, \"split\": SPLIT, ...})")
    for key, call in table.metric_calls.items():
        if not isinstance(call, dict) or not isinstance(call.get("plugin"), str) \
                or not isinstance(call.get("params", {}), dict):
            raise ValueError(f"table {table.name!r}: metric_calls[{key!r}] is not a plugin call "
                             "({\"plugin\": NAME, \"params\": {...}})")
    for key, unit in table.units.items():
        if not isinstance(unit, str):
            raise ValueError(f"table {table.name!r}: units[{key!r}] is not text")
    for key, fmt in table.formats.items():
        try:
            format_value(1.0, fmt)
        except (TypeError, ValueError):
            raise ValueError(f"table {table.name!r}: formats[{key!r}] is {fmt!r}, not a number format") from None


#: a job's entry checksum, as results.json records it (SHA-256, hex)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_jobs(jobs: Any) -> None:
    """Each job a table of what rbench records, its entry checksum (where recorded) a SHA-256: one that is not
    would turn off the check of the entries a later report reads (:meth:`RunResults.entry_checksums`)."""
    if not isinstance(jobs, dict):
        raise ValueError("jobs is not a table of jobs")
    for key, job in jobs.items():
        if not isinstance(job, dict):
            raise ValueError(f"jobs[{key!r}] is not a table")
        # None: the entry could not be read when the run ended (nothing to check a later read against)
        if job.get("sha256") is not None and not (isinstance(job["sha256"], str) and _SHA256.fullmatch(job["sha256"])):
            raise ValueError(f"jobs[{key!r}].sha256 is {job['sha256']!r}, not a SHA-256")


def _check_cell(table: str, cell: Cell) -> None:
    """ValueError naming the table and cell where :func:`cell_problem` finds one, or its labels are not text."""
    texts = ("metric", "call", "interval")
    problem = next((f"{name} is {getattr(cell, name)!r}, not text" for name in texts
                    if not isinstance(getattr(cell, name), str)), None) or cell_problem(cell)
    if problem is not None:
        raise ValueError(f"table {table!r}, cell ({cell.row}, {cell.column}): {problem}")


def unit_problem(value: float, unit: str) -> str | None:
    """Why ``value`` cannot be a cell in ``unit``, or None: a value in % lies within 0-100 (a published value
    beside one must too: :func:`rbench.suite_refs.percentage_problem`). A metric's estimate is held to its
    interval method's range (:func:`cell_problem`); a plain number in % was shown as "250.0" in a % table."""
    if unit == "%" and not 0.0 <= value <= 100.0:
        return "outside [0, 100], where a value in % lies"
    return None


def cell_problem(cell: Cell) -> str | None:
    """What is wrong with ``cell``, in words (None: nothing): its value and interval must be finite numbers or None,
    its n a count or None, its interval must hold its value and lie where its kind of quantity does, and a rate
    cell must be what its n gives (:func:`_rate_problem`). Checked when results.json is read, and when a cell is
    assembled, so that a metric's estimate that a later read would refuse fails its own cell."""
    for name in ("value", "low", "high"):
        number = getattr(cell, name)
        if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)
                                   or not math.isfinite(number)):
            return f"{name} is {number!r}, not a finite number"
    if cell.n is not None and (isinstance(cell.n, bool) or not isinstance(cell.n, int) or cell.n < 0):
        return f"n is {cell.n!r}, not a count"
    if cell.error and cell.value is not None:  # a failed cell has no value: report showed it, compare --run failed it
        return f"it has both a value ({cell.value}) and an error"
    if not interval_holds(cell.low, cell.value, cell.high):
        return f"its interval [{cell.low}, {cell.high}] does not hold its value {cell.value}"
    bounds = BOUNDS.get(cell.interval)
    if bounds is not None and any(v is not None and not bounds[0] <= v <= bounds[1]
                                  for v in (cell.value, cell.low, cell.high)):
        return (f"a {cell.interval} estimate of {cell.value} [{cell.low}, {cell.high}] lies outside "
                f"[{bounds[0]:g}, {bounds[1]:g}], where such a quantity is")
    return _rate_problem(cell) if cell.interval == "wilson" else None


def _rate_problem(cell: Cell) -> str | None:
    """A rate cell (a Wilson interval) is k of its n samples in %, and its interval is the Wilson interval of k
    of n: both follow from n and the value, so an interval edited in results.json (printed as ``6.5 ±92.5``) or a
    value no count of n samples gives is refused."""
    if not cell.n or cell.value is None or cell.low is None or cell.high is None:
        return "a rate cell without its value, n or interval"
    k = round(cell.value * cell.n / 100.0)
    if not math.isclose(100.0 * k / cell.n, cell.value, rel_tol=1e-9, abs_tol=1e-9):
        return f"its value {cell.value} is no count of its n = {cell.n} samples in %"
    low, high = (100.0 * end for end in wilson(k, cell.n))
    if not (math.isclose(low, cell.low, rel_tol=1e-9, abs_tol=1e-9)
            and math.isclose(high, cell.high, rel_tol=1e-9, abs_tol=1e-9)):
        return (f"its interval [{cell.low}, {cell.high}] is not the Wilson interval of {k} of {cell.n} samples "
                f"[{low}, {high}]")
    return None
