"""Measurements over training: the ``training_curves`` file reporter.

For every result table whose ``figure`` includes ``"training"`` and that has ``observed`` cells (per-epoch
measurements of monitored models, read back from the training jobs), one PNG in the run folder,
``training_<table>.png``: one panel per table column, x = the epoch, y = the column's measurement at every
observed epoch (whatever epoch the cell itself shows), one line per row, with its 95% interval as a band where
the probe measured one at every epoch.
Bečková et al. 2020 draw regimes and robustness over training this way (figures 4-6).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from rbench.errors import RbenchError
from rbench.estimate import Estimate
from rbench.plugins.metrics.observed import ObservedParams, measurement
from rbench.report.figure_cache import save_figure
from rbench.report.reporters import Reporter, figure_file
from rbench.results import ResultTable, RunResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from rbench.store import Store

METRIC = "observed"
FIGURE = "training"


def figure_name(table: ResultTable) -> str:
    return figure_file("training", table.name)


#: the epochs, the values, and the interval's ends at each epoch (None: not measured with an interval)
Series = tuple[list[int], list[float], list[tuple[float, float]] | None]


def series(table: ResultTable, store: Store) -> dict[str, dict[str, Series]]:
    """column -> row -> (epochs, values, intervals) for every valued ``observed`` cell of ``table``."""
    out: dict[str, dict[str, Series]] = {}
    for cell in table.cells:
        call = table.metric_call(cell)
        if cell.value is None or call.get("plugin") != METRIC or table.is_mean(cell):  # a mean has no curve stored
            continue
        params = ObservedParams.model_validate(call["params"])
        key = next((k for k in cell.jobs if store.has(k) and store.entry(k).kind == "checkpoint"), None)
        if key is None:
            raise RbenchError(f"table {table.name!r}: the checkpoint behind cell ({cell.row}, {cell.column}) is not "
                              f"in the store {store.root}; pass --store, or run the suite again")
        observed = store.load_checkpoint(key)[1].get("stats", {}).get("observed", [])
        measured = [(e["epoch"], measurement(e, params)) for e in observed]
        points = [(e, v) for e, v in measured if v is not None]
        ends = [(v.low, v.high) for _, v in points
                if isinstance(v, Estimate) and v.low is not None and v.high is not None]
        out.setdefault(cell.column, {})[cell.row] = ([e for e, _ in points], [float(v) for _, v in points],
                                                     ends if len(ends) == len(points) else None)
    return out


def draw(table: ResultTable, panels: dict[str, dict[str, Series]]) -> Figure:
    from matplotlib.figure import Figure

    columns = [c for c in table.columns if c in panels]
    wide = min(len(columns), 3)
    high = math.ceil(len(columns) / wide)
    fig = Figure(figsize=(4.2 * wide, 3.2 * high + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(high, wide, squeeze=False)
    for i, column in enumerate(columns):
        ax = axes[i // wide][i % wide]
        for row in table.rows:
            if row in panels[column]:
                epochs, values, ends = panels[column][row]
                line, = ax.plot(epochs, values, linewidth=1.2, marker="o" if len(epochs) < 12 else None,
                                markersize=3, label=row)
                if ends:
                    ax.fill_between(epochs, [lo for lo, _ in ends], [hi for _, hi in ends], color=line.get_color(),
                                    alpha=0.15, linewidth=0)
        ax.set_title(column, fontsize="small")
        ax.set_xlabel("epoch")
        ax.grid(True, linewidth=0.3)
    for j in range(len(columns), wide * high):
        axes[j // wide][j % wide].axis("off")
    axes[0][0].legend(fontsize=6, loc="best")
    fig.suptitle("\n".join(textwrap.wrap(f"{table.title} (over training; bands: 95% intervals)", 100)),
                 fontsize="medium")
    return fig


class TrainingCurves(Reporter):
    """Per-epoch curves of every table with ``observed`` cells (``training_<table>.png``)."""

    name = "training_curves"
    suffix = None

    def write(self, results: RunResults, run_dir: Path, store: Store) -> list[Path]:
        written = []
        for table in results.tables:
            if not table.draws(FIGURE):
                continue
            panels = series(table, store)
            if panels:
                path = Path(run_dir) / figure_name(table)
                written.append(save_figure(path, draw, table.without_outcomes(), panels))
        return written
