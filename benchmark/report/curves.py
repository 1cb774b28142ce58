"""Error-versus-distortion curves (Uličný, Lundström & Byttner 2016, figures 3-7): the ``curves`` file reporter.

For every result table whose ``figure`` is ``"curves"`` (a table option of the suite), one PNG in the run folder,
``curves_<table>.png``: one line per table row (a model, a defense), through one point per column with a value:
x = the measured distortion of the column's adversarial set, the paper's equation 2 (the mean absolute
per-pixel difference over the whole set: the mean of the stored set's per-sample ``distortion["mean_abs"]``,
every sample having the same number of pixels), y = the cell's value (e.g. the error in %). A clean column is
x = 0. The sets are found through the store keys each cell names (``Cell.jobs``): an adversarial set itself, or
the predictions on one (whose recorded spec names the set's key). Points are joined in order of x. matplotlib is
imported only to draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rbench.errors import RbenchError
from rbench.report.figure_cache import save_figure
from rbench.report.reporters import Reporter, figure_file
from rbench.report.style import AXES_SHARE, fit_title, line_style, place_legends
from rbench.results import Cell, ResultTable, RunResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from rbench.store import Store

FIGURE = "curves"


def figure_name(table: ResultTable) -> str:
    """The file name of ``table``'s curves in the run folder."""
    return figure_file("curves", table.name)


def wants_curves(table: ResultTable) -> bool:
    return table.draws(FIGURE)


@dataclass
class Curve:
    """One line: the row's ``label`` and its points (``x`` ascending), each from the column in ``columns``."""

    label: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


def _missing(table: ResultTable, cell: Cell, key: str, store: Store) -> RbenchError:
    return RbenchError(f"table {table.name!r}: the stored output {key} of cell ({cell.row}, {cell.column}) is not "
                       f"in the store {store.root}; pass --store, or run the suite again to recompute it")


def set_distortion(store: Store, key: str) -> float:
    """The paper's equation 2 for the stored adversarial set ``key``: the mean over the set of its samples' mean
    absolute per-pixel distortion."""
    return float(np.mean(store.load_advset(key).distortion["mean_abs"], dtype=np.float64))


def cell_distortion(table: ResultTable, cell: Cell, store: Store) -> float:
    """x of ``cell``: the distortion of the adversarial set it was computed on (0 for clean inputs)."""
    for key in cell.jobs:
        if not store.has(key):
            raise _missing(table, cell, key, store)
        kind = store.entry(key).kind
        if kind == "advset":
            return set_distortion(store, key)
        if kind == "predictions":
            source = store.load_predictions(key).meta.get("spec", {}).get("input", {})
            if "advset" in source:
                if not store.has(source["advset"]):
                    raise _missing(table, cell, source["advset"], store)
                return set_distortion(store, source["advset"])
            if "clean" in source:
                return 0.0
    raise RbenchError(f"table {table.name!r}: cell ({cell.row}, {cell.column}) names no adversarial set and no "
                      "predictions among its stored outputs, so its distortion is unknown")


def curves(table: ResultTable, store: Store) -> list[Curve]:
    """The lines of ``table``'s figure: one per row with at least one valued cell, in row order; a cell of the mean
    row lies at the mean distortion of the cells it averages (the rows before it, every one valued)."""
    out = []
    x: dict[tuple[str, str], float] = {}  # each valued cell's distortion, its set read once
    for row in table.rows:
        points = []
        for column in table.columns:
            if column == table.mean_column:  # a mean over the sets: no point of a curve
                continue
            try:
                cell = table.cell(row, column)
            except KeyError:
                continue
            if cell.value is None:
                continue
            if row == table.mean_row:
                at = float(np.mean([x[(r, column)] for r in table.rows if r != row]))
            else:
                at = x[(row, column)] = cell_distortion(table, cell, store)
            points.append((at, float(cell.value), column))
        if points:
            points.sort(key=lambda p: p[0])
            out.append(Curve(row, [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]))
    return out


def y_label(table: ResultTable) -> str:
    """The metric (and unit) on the y axis: the table's one metric, or ``value`` for a table that mixes them."""
    metrics = {table.metric(c) for c in table.cells}
    units = {table.unit(c) for c in table.cells}
    name = next(iter(metrics)) if len(metrics) == 1 else "value"
    unit = next(iter(units)) if len(units) == 1 else ""
    return f"{name} ({unit})" if unit else name


def draw(title: str, lines: list[Curve], ylabel: str, mean: str | None = None) -> Figure:
    """The figure of the curves (no display or pyplot state is involved); ``mean``: the label of the table's mean
    row, drawn as such."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.8), dpi=100, layout="constrained")
    ax = fig.subplots()
    for curve in lines:
        ax.plot(curve.x, curve.y, marker="o", markersize=3, label=curve.label, **line_style(curve.label == mean))
    ax.set_xlim(left=0)
    ax.set_xlabel("distortion: mean absolute difference per pixel over the set")
    ax.set_ylabel(ylabel)
    ax.grid(True, linewidth=0.3)
    ax.set_title(fit_title(title, AXES_SHARE * fig.get_figwidth()), fontsize="medium")
    place_legends(fig, [ax])  # after the title: fitted to the axes' width, which a legend beside them leaves
    return fig


class Curves(Reporter):
    """Error-versus-distortion curves of every table with ``figure = "curves"`` (``curves_<table>.png``)."""

    name = "curves"
    suffix = None

    def write(self, results: RunResults, run_dir: Path, store: Store) -> list[Path]:
        written = []
        for table in results.tables:
            if not wants_curves(table):
                continue
            lines = curves(table, store)
            if lines:
                path = Path(run_dir) / figure_name(table)
                written.append(save_figure(path, draw, table.title, lines, y_label(table), table.mean_row))
        return written
