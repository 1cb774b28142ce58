"""Line charts of a table over its columns: the ``lines`` file reporter.

For every result table whose ``figure`` is ``"lines"``, one PNG in the run folder, ``lines_<table>.png``: the
columns, in table order, along x (as categories: a grid of temperatures, of budgets, of pixel counts), one line
per row through its valued cells. matplotlib is imported only to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rbench.report.curves import y_label
from rbench.report.figure_cache import save_figure
from rbench.report.reporters import Reporter, figure_file
from rbench.report.style import AXES_SHARE, fit_title, line_style, place_legends
from rbench.results import ResultTable, RunResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from rbench.store import Store

FIGURE = "lines"


#: the longest x tick label drawn whole
TICK_CHARS = 24


def _tick(label: str) -> str:
    """``label`` cut to :data:`TICK_CHARS` characters with an ellipsis (``textwrap.shorten`` drops whole words: a
    label of one long word, "fig8_gauss(sigma=0.09)", became "[...]")."""
    return label if len(label) <= TICK_CHARS else label[:TICK_CHARS - 1] + "…"


def figure_name(table: ResultTable) -> str:
    return figure_file("lines", table.name)


def along(table: ResultTable) -> list[str]:
    """The columns along x: all but a mean column (a mean over the columns is no position among them)."""
    return [c for c in table.columns if c != table.mean_column]


def lines(table: ResultTable) -> dict[str, tuple[list[int], list[float]]]:
    """row -> (column positions, values) of its valued cells."""
    out = {}
    for row in table.rows:
        points = []
        for i, column in enumerate(along(table)):
            try:
                value = table.cell(row, column).value
            except KeyError:
                continue
            if value is not None:
                points.append((i, float(value)))
        if points:
            out[row] = ([p[0] for p in points], [p[1] for p in points])
    return out


def draw(table: ResultTable, rows: dict[str, tuple[list[int], list[float]]]) -> Figure:
    from matplotlib.figure import Figure

    columns = along(table)
    fig = Figure(figsize=(max(6.0, 0.55 * len(columns) + 3), 4.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    for row, (x, y) in rows.items():
        ax.plot(x, y, marker="o", markersize=3, label=row, **line_style(row == table.mean_row))
    ax.set_xticks(range(len(columns)), [_tick(c) for c in columns], rotation=30, ha="right",
                  fontsize=7)
    ax.set_xlabel("" if table.column_axis == "columns" else table.column_axis)  # "columns": listed, no axis
    ax.set_ylabel(y_label(table))
    ax.grid(True, linewidth=0.3)
    ax.set_title(fit_title(table.title, AXES_SHARE * fig.get_figwidth()), fontsize="medium")
    place_legends(fig, [ax])  # after the title: fitted to the axes' width, which a legend beside them leaves
    return fig


class Lines(Reporter):
    """Line charts over the columns of every table with ``figure = "lines"`` (``lines_<table>.png``)."""

    name = "lines"
    suffix = None

    def write(self, results: RunResults, run_dir: Path, store: Store) -> list[Path]:
        written = []
        for table in results.tables:
            if not table.draws(FIGURE):
                continue
            rows = lines(table)
            if rows:
                path = Path(run_dir) / figure_name(table)
                written.append(save_figure(path, draw, table.without_outcomes(), rows))
        return written
