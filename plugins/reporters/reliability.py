"""Reliability diagrams (Guo et al. 2017, fig. 1): the ``reliability`` file reporter.

For every result table with ``calibration_error`` cells, one PNG in the run folder, ``reliability_<table>.png``,
with one panel per set of predictions those cells were computed from (normally one per table row, e.g. a model
before and after temperature scaling): the accuracy of each equal-width confidence bin as bars against the
diagonal, the gap to the bin's mean confidence, each bin's sample count, and the ECE in the panel title. The
bins are the metric's own (:func:`rbench.plugins.metrics.calibration.reliability_bins`), read from the stored
predictions the cells name in their provenance (``Cell.jobs``). matplotlib is imported only to draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rbench.errors import RbenchError
from rbench.plugins.metrics.calibration import ReliabilityBins, calibration_errors, reliability_bins
from rbench.report.figure_cache import save_figure
from rbench.report.reporters import Reporter, figure_file
from rbench.results import Cell, ResultTable, RunResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from rbench.store import Store

METRIC = "calibration_error"
DEFAULT_BINS = 15


def figure_name(table: ResultTable) -> str:
    """The file name of ``table``'s reliability diagrams in the run folder."""
    return figure_file("reliability", table.name)


def figure_cells(table: ResultTable) -> list[Cell]:
    """The cells of ``table`` that ``calibration_error`` computed (with a value), in row, then column order."""
    rows, cols = {r: i for i, r in enumerate(table.rows)}, {c: i for i, c in enumerate(table.columns)}
    cells = [c for c in table.cells if c.value is not None and table.metric_call(c).get("plugin") == METRIC]
    return sorted(cells, key=lambda c: (rows.get(c.row, 0), cols.get(c.column, 0)))


@dataclass
class Panel:
    """One diagram: the stored predictions ``key`` binned into ``bins.count.size`` bins, and their ECE (a
    fraction, exactly calibration_error's)."""

    label: str
    key: str
    bins: ReliabilityBins
    ece: float


def panels(table: ResultTable, store: Store) -> list[Panel]:
    """The panels of ``table``'s diagram: one per distinct (predictions, number of bins) among its
    calibration cells, labelled by the row (and the column where a row has several)."""
    groups: dict[tuple[str, int], list[Cell]] = {}
    for cell in figure_cells(table):
        if len(cell.jobs) != 1:  # calibration_error reads exactly the target's predictions on the cell's inputs
            continue
        bins = int(table.metric_call(cell).get("params", {}).get("bins", DEFAULT_BINS))
        groups.setdefault((cell.jobs[0], bins), []).append(cell)
    per_row: dict[str, int] = {}
    for cells in groups.values():
        per_row[cells[0].row] = per_row.get(cells[0].row, 0) + 1
    out = []
    for (key, n_bins), cells in groups.items():
        if not store.has(key):
            raise RbenchError(f"table {table.name!r}: the predictions {key} of cell ({cells[0].row}, "
                              f"{cells[0].column}) are not in the store {store.root}; pass --store, or run the "
                              "suite again to recompute them")
        pred = store.load_predictions(key)
        label = cells[0].row if per_row[cells[0].row] == 1 else f"{cells[0].row} / {cells[0].column}"
        out.append(Panel(label, key, reliability_bins(pred.logits, pred.labels, n_bins),
                         calibration_errors(pred.logits, pred.labels, n_bins)["ece"]))
    return out


def draw(title: str, figure: list[Panel]) -> Figure:
    """The figure of the panels (no display or pyplot state is involved)."""
    from matplotlib.figure import Figure

    ncols = min(len(figure), 3)
    nrows = -(-len(figure) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 4.2 * nrows), dpi=100, layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax, panel in zip(axes, figure, strict=False):  # the grid may have more cells than panels
        count, accuracy, confidence = panel.bins
        width = 1.0 / len(count)
        left = np.arange(len(count)) * width
        full = count > 0
        ax.bar(left, np.where(full, accuracy, 0.0), width, align="edge", color="tab:blue", edgecolor="black",
               linewidth=0.5, label="accuracy")
        ax.bar(left[full], (confidence - accuracy)[full], width, bottom=accuracy[full], align="edge",
               fill=False, edgecolor="tab:red", hatch="///", linewidth=0.8, label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        for x, n, top in zip(left[full], count[full], np.fmax(accuracy, confidence)[full], strict=True):
            ax.text(x + width / 2, top + 0.015, str(n), ha="center", va="bottom", fontsize=6, rotation=90)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.2)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{panel.label}: ECE {100 * panel.ece:.2f}%\n(n = {count.sum()}, {len(count)} bins; "
                     "bar labels: samples per bin)", fontsize=9)
    for ax in axes[len(figure):]:
        ax.set_visible(False)
    fig.axes[0].legend(loc="upper left", fontsize=7)
    fig.suptitle(title)
    return fig


class Reliability(Reporter):
    """Reliability diagrams of every table with calibration_error cells (``reliability_<table>.png``)."""

    name = "reliability"
    suffix = None

    def figures_of(self, table: ResultTable) -> list[str]:
        return [figure_name(table)] if figure_cells(table) else []

    def write(self, results: RunResults, run_dir: Path, store: Store) -> list[Path]:
        written = []
        for table in results.tables:
            figure = panels(table, store)
            if figure:
                path = Path(run_dir) / figure_name(table)
                written.append(save_figure(path, draw, f"{table.title}: reliability", figure))
        return written
