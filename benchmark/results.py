"""Result tables: what a run produces, as stored in ``results.json`` and rendered by reporters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rbench.errors import RbenchError

RESULTS_FILE = "results.json"


@dataclass
class Cell:
    """One table cell: its value (None when not applicable or its jobs failed), the store keys it was
    computed from, and an error message when a job it needs failed."""

    row: str
    column: str
    value: float | None
    jobs: list[str] = field(default_factory=list)
    error: str | None = None


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
    #: "row|column" -> the label of the metric behind that cell
    metric_of: dict[str, str] = field(default_factory=dict)
    #: metric label -> the plugin call behind it: {"plugin": name, "params": validated params as JSON}
    metric_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the figures file reporters draw of the table (the suite's ``figure`` option: one name or a list), or None
    figure: str | list[str] | None = None

    def draws(self, figure: str) -> bool:
        """Whether the suite asked for ``figure`` (e.g. "curves", "lines") of this table."""
        return self.figure == figure or (isinstance(self.figure, list) and figure in self.figure)

    def cell(self, row: str, column: str) -> Cell:
        for c in self.cells:
            if c.row == row and c.column == column:
                return c
        raise KeyError((row, column))

    def metric(self, cell: Cell) -> str:
        """The label of the metric behind ``cell``."""
        return self.metric_of.get(f"{cell.row}|{cell.column}", next(iter(self.units), ""))

    def metric_call(self, cell: Cell) -> dict[str, Any]:
        """The metric plugin call behind ``cell`` (``{"plugin": ..., "params": ...}``; empty in results written
        before calls were recorded)."""
        return self.metric_calls.get(self.metric(cell), {})

    def unit(self, cell: Cell) -> str:
        return self.units.get(self.metric(cell), "")

    def format(self, cell: Cell) -> str:
        """``cell``'s value as text, with the format of its metric ("-" where it does not apply)."""
        if cell.value is None:
            return "failed" if cell.error else "-"
        return format(cell.value, self.formats.get(self.metric(cell), ".1f"))


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

    @classmethod
    def read(cls, run_dir: Path) -> RunResults:
        path = Path(run_dir) / RESULTS_FILE if Path(run_dir).is_dir() else Path(run_dir)
        try:
            raw = json.loads(path.read_text())
            tables = [ResultTable(**{**t, "cells": [Cell(**c) for c in t["cells"]]}) for t in raw.pop("tables")]
            return cls(**raw, tables=tables)
        except FileNotFoundError:
            raise RbenchError(f"{path}: no such file; pass a run folder written by 'rbench run'") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise RbenchError(f"{path}: not a valid rbench results file ({type(exc).__name__}: {exc})") from None
