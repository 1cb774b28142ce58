"""Figures derived from a table's axes, for every suite (the ``figures`` file reporter), none written per suite:

- ``robustness_<table>.png``: where the attacks along one axis form a grid over one numeric parameter (eps,
  steps, ...) of one plugin, the value against that parameter, one line per label of the other axis (a model),
  with the 95% intervals as bars and the published points overlaid where the suite compares with a paper. A
  clean column sits at x = 0 when the parameter is a budget (``eps``).
- ``heatmap_<table>.png``: where each row is one source model and each column one target model (a transfer
  matrix), the values as a heatmap with each value written in its cell.
- ``distribution_<table>.png``: where cells kept their per-sample values (a mean's samples, e.g. minimal
  distortions), their histograms.

Everything drawn comes from results.json and samples.parquet (the tidy files hold the same data), so
``rbench report RUN -f figures`` redraws them without the store. matplotlib is imported only to draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rbench.report.curves import y_label
from rbench.report.figure_cache import save_figure
from rbench.report.reporters import Reporter, figure_file
from rbench.report.style import AXES_SHARE, FIGURE_SHARE, fit_title, line_style, place_legends
from rbench.results import Cell, ResultTable, RunResults, format_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from rbench.store import Store

#: parameters whose zero is the clean input, so a clean column is drawn at x = 0
BUDGETS = ("eps", "epsilon")
#: histograms drawn in one distribution figure at most (the rest are in samples.parquet)
MAX_HISTOGRAMS = 12


def figure_path(run_dir: Path, kind: str, table: ResultTable) -> Path:
    return Path(run_dir) / figure_file(kind, table.name)


@dataclass
class Sweep:
    """A line of a robustness figure: the cells of one label of the other axis along one attack family."""

    label: str
    parameter: str
    #: the attack plugin swept (one panel each: a parameter's scale differs between plugins, e.g. L2 vs Linf eps)
    family: str = ""
    x: list[float] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    published: list[tuple[float, float]] = field(default_factory=list)
    #: where along the line a cell failed (drawn as a mark on the x axis, not left out silently)
    failed: list[float] = field(default_factory=list)


def _attack_of_label(table: ResultTable, axis: str) -> dict[str, str] | None:
    """label -> the one attack label of its cells, for every label along ``axis`` ("rows" or "columns"); None
    when a label's cells mix attacks (the attacks are not along that axis)."""
    out: dict[str, str] = {}
    for c in table.cells:
        if table.is_mean(c):  # a mean over attacks is no point of the grid (one over models: its attack is theirs)
            continue
        label = c.row if axis == "rows" else c.column
        if not c.attack or out.setdefault(label, c.attack) != c.attack:
            return None
    return out


def _evaluation_of_label(table: ResultTable, axis: str) -> dict[str, str]:
    """label -> the evaluation of its cells (the first one's, where they differ), along ``axis``."""
    out: dict[str, str] = {}
    for c in table.cells:
        out.setdefault(c.row if axis == "rows" else c.column, c.evaluation or "")
    return out


def _sweep(table: ResultTable, sweep: Sweep, along: list[tuple[float, str]], other: str, axis: str,
           published: dict[tuple[str, str], float]) -> Sweep:
    """``sweep`` with the cells of label ``other`` at each (x, attack label) of ``along``."""
    for x, label in along:
        row, column = (label, other) if axis == "rows" else (other, label)
        try:
            cell = table.cell(row, column)
        except KeyError:
            continue
        if cell.value is not None:
            sweep.x.append(x)
            sweep.cells.append(cell)
        elif cell.error:
            sweep.failed.append(x)
        if (row, column) in published:
            sweep.published.append((x, published[(row, column)]))
    return sweep


def _families(table: ResultTable, attacks: list[str]) -> list[tuple[str, dict[str, float]]]:
    """Groups of attack labels of one plugin (and input) whose parameters differ in exactly one numeric
    parameter: (parameter, attack label -> its value), for groups of at least two."""
    by_plugin: dict[tuple[str, str], list[str]] = {}
    for label in attacks:
        call = table.attack_calls.get(label)
        if call:
            by_plugin.setdefault((call["plugin"], call.get("input", "")), []).append(label)
    out = []
    for labels in by_plugin.values():
        if len(labels) < 2:
            continue
        params = [table.attack_calls[label]["params"] for label in labels]
        names = set().union(*params)
        varying = [n for n in sorted(names) if len({repr(p.get(n)) for p in params}) > 1]
        if len(varying) != 1:
            continue
        values = {label: table.attack_calls[label]["params"].get(varying[0]) for label in labels}
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()):
            out.append((varying[0], {label: float(v) for label, v in values.items()}))
    return out


def sweeps(table: ResultTable, published: dict[tuple[str, str], float]) -> list[Sweep]:
    """The lines of ``table``'s robustness figure (empty when its attacks form no grid over one parameter)."""
    for axis in ("rows", "columns"):
        attack_of = _attack_of_label(table, axis)
        if attack_of is None or len(set(attack_of.values())) < 2:
            continue
        families = _families(table, list(dict.fromkeys(attack_of.values())))
        if not families:
            continue
        others = table.columns if axis == "rows" else table.rows
        evaluation_of = _evaluation_of_label(table, axis)
        evaluations = list(dict.fromkeys(evaluation_of.values()))
        out = []
        for parameter, value_of in families:
            clean = [label for label, a in attack_of.items() if a == "clean"] if parameter in BUDGETS else []
            plugin = table.attack_calls[next(iter(value_of))]["plugin"]
            for evaluation in evaluations:  # one line per evaluation: the same attack under two threat models
                along = sorted([(value_of[a], label) for label, a in attack_of.items()
                                if a in value_of and evaluation_of[label] == evaluation] +
                               [(0.0, label) for label in clean if evaluation_of[label] == evaluation])
                for other in others:
                    name = other if len(evaluations) == 1 else f"{other} ({evaluation})"
                    sweep = _sweep(table, Sweep(name, parameter, plugin), along, other, axis, published)
                    drawn = len(sweep.cells) >= 2 or (sweep.cells and sweep.failed)  # a failure keeps its mark
                    if drawn and len({table.metric(c) for c in sweep.cells}) == 1:
                        out.append(sweep)
        if out:  # one y axis: the lines of the first line's unit (a table may mix e.g. % and distortions)
            unit = table.unit(out[0].cells[0])
            return [s for s in out if table.unit(s.cells[0]) == unit]
    return []


def transfer_matrix(table: ResultTable) -> np.ndarray | None:
    """The table's values (rows x columns, NaN where missing) when each row is one source model and each column
    one target model, with at least two of each; else None. A mean row (column) is drawn as a row (column) of the
    matrix, not held against it: its cells average several sources (targets)."""
    sources: dict[str, set[str]] = {}
    targets: dict[str, set[str]] = {}
    for c in table.cells:
        if table.is_mean(c):
            continue
        sources.setdefault(c.row, set()).add(c.source)
        targets.setdefault(c.column, set()).add(c.target)
    if any(len(s) != 1 or not next(iter(s)) for s in sources.values()):
        return None
    if any(len(t) != 1 or not next(iter(t)) for t in targets.values()):
        return None
    if len({next(iter(s)) for s in sources.values()}) < 2 or len({next(iter(t)) for t in targets.values()}) < 2:
        return None
    if len({table.metric(c) for c in table.cells}) != 1:
        return None
    values = np.full((len(table.rows), len(table.columns)), np.nan)
    for c in table.cells:
        if c.value is not None:
            values[table.rows.index(c.row), table.columns.index(c.column)] = c.value
    return values


def _new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.subplots()


def _title(fig: Figure, ax: Axes, text: str) -> None:
    ax.set_title(fit_title(text, AXES_SHARE * fig.get_figwidth()), fontsize="medium")


def draw_sweeps(table: ResultTable, lines: list[Sweep]) -> Figure:
    """One panel per swept attack plugin (sharing the y axis), one line per label of the other axis."""
    from matplotlib.figure import Figure

    families = list(dict.fromkeys(s.family for s in lines))
    fig = Figure(figsize=(min(4.2 * len(families), 14.0) + 1.5, 4.8), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(families), sharey=True, squeeze=False)[0]
    labels = list(dict.fromkeys(s.label for s in lines))
    metrics = {table.metric(c) for s in lines for c in s.cells}
    unit = table.unit(lines[0].cells[0])
    name = next(iter(metrics)) if len(metrics) == 1 else "value"
    for ax, family in zip(axes, families, strict=True):
        for sweep in (s for s in lines if s.family == family):
            style = line_style(sweep.label in (table.mean_row, table.mean_column))
            colour = style.pop("color", f"C{labels.index(sweep.label) % 10}")
            y = np.array([c.value for c in sweep.cells], dtype=float)
            below = [c.value - c.low if c.low is not None else 0.0 for c in sweep.cells]  # type: ignore[operator]
            above = [c.high - c.value if c.high is not None else 0.0 for c in sweep.cells]  # type: ignore[operator]
            ax.errorbar(sweep.x, y, yerr=[below, above], marker="o", markersize=3, capsize=2, color=colour,
                        label=sweep.label, **style)
            if sweep.published:
                px, py = zip(*sweep.published, strict=True)
                ax.scatter(px, py, marker="x", s=40, color=colour, zorder=3, label=f"{sweep.label} (published)")
            if sweep.failed:  # on the x axis (x in data, y in axes coordinates): a gap in the line says why
                ax.scatter(sweep.failed, [0.02] * len(sweep.failed), marker="v", s=30, color=colour, zorder=3,
                           transform=ax.get_xaxis_transform(), clip_on=False, label=f"{sweep.label} (failed)")
        ax.set_xlabel(f"{family}: {lines[0].parameter if len({s.parameter for s in lines}) == 1 else 'parameter'}")
        ax.grid(True, linewidth=0.3)
    place_legends(fig, list(axes))
    axes[0].set_ylabel(f"{name} ({unit})" if unit else name)
    title = fit_title(f"{table.title} (bars: 95% intervals)", FIGURE_SHARE * fig.get_figwidth())
    fig.suptitle(title, fontsize="medium")
    return fig


def draw_heatmap(table: ResultTable, values: np.ndarray) -> Figure:
    fig, ax = _new_figure(max(4.5, 1.0 + 0.9 * len(table.columns)), max(3.5, 1.2 + 0.6 * len(table.rows)))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label=y_label(table))
    finite = values[np.isfinite(values)]
    middle = float(finite.min() + finite.max()) / 2 if finite.size else 0.0
    fmt = next(iter(table.formats.values()), ".1f")
    failed = {(c.row, c.column) for c in table.cells if c.value is None and c.error}
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            text = format_value(values[i, j], fmt) if not np.isnan(values[i, j]) \
                else "failed" if (table.rows[i], table.columns[j]) in failed else "-"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if np.isfinite(values[i, j]) and values[i, j] > middle else "white")
    ax.set_xticks(range(len(table.columns)), table.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(table.rows)), table.rows, fontsize=8)
    ax.set_xlabel(table.column_axis if table.column_axis != "columns" else "target")
    ax.set_ylabel(table.row_axis if table.row_axis != "rows" else "source")
    _title(fig, ax, table.title)
    return fig


def draw_distributions(table: ResultTable) -> Figure:
    fig, ax = _new_figure(7.0, 4.8)
    keys = [(c.row, c.column) for c in table.cells if (c.row, c.column) in table.samples]
    for i, key in enumerate(keys[:MAX_HISTOGRAMS]):
        values = np.asarray(table.samples[key], dtype=float)
        # matplotlib's colour cycle has 10 colours: the 11th series took the 1st one's colour and line
        ax.hist(values, bins=min(50, max(5, int(np.sqrt(values.size)))), histtype="step", linewidth=1.2,
                color=f"C{i % 10}", linestyle=("-", "--", ":", "-.")[i // 10 % 4],
                label=f"{' · '.join(key)} (n={values.size})")
    metrics = {table.metric(c) for c in table.cells if (c.row, c.column) in table.samples}
    ax.set_xlabel(next(iter(metrics)) if len(metrics) == 1 else "per-sample value")
    ax.set_ylabel("samples")
    ax.grid(True, linewidth=0.3)
    more = f"; {len(keys) - MAX_HISTOGRAMS} more cells in samples.parquet" if len(keys) > MAX_HISTOGRAMS else ""
    _title(fig, ax, f"{table.title}: per-sample values{more}")
    place_legends(fig, [ax])  # after the title: fitted to the axes' width, which a legend beside them leaves
    return fig


def _published(results: RunResults) -> dict[str, dict[tuple[str, str], float]]:
    if not results.published:
        return {}
    from rbench.compare import compare

    out: dict[str, dict[tuple[str, str], float]] = {}
    for c in compare(results):
        out.setdefault(c.table, {})[(c.row, c.column)] = c.published
    return out


class Figures(Reporter):
    """The figures every table's axes call for (see the module): robustness curves, transfer heatmaps and
    per-sample distributions."""

    name = "figures"
    suffix = None

    def figures_of(self, table: ResultTable) -> list[str]:
        """The files :meth:`write` draws of ``table`` (tables.md links them)."""
        return [figure_file(kind, table.name) for kind in self._kinds(table, {})]

    @staticmethod
    def _kinds(table: ResultTable, published: dict[tuple[str, str], float]) -> dict[str, Any]:
        """The figures ``table``'s axes call for: kind -> what to draw it from."""
        kinds: dict[str, Any] = {}
        lines = sweeps(table, published)
        if lines:
            kinds["robustness"] = lines
        matrix = transfer_matrix(table)
        if matrix is not None and np.isfinite(matrix).any():
            kinds["heatmap"] = matrix
        if table.samples:
            kinds["distribution"] = None
        return kinds

    def write(self, results: RunResults, run_dir: Path, store: Store | Any) -> list[Path]:
        published = _published(results)
        written = []
        for table in results.tables:
            drawn = table.without_outcomes()
            for kind, data in self._kinds(table, published.get(table.name, {})).items():
                path = figure_path(run_dir, kind, table)
                written.append(save_figure(path, draw_sweeps, drawn, data) if kind == "robustness"
                               else save_figure(path, draw_heatmap, drawn, data) if kind == "heatmap"
                               else save_figure(path, draw_distributions, drawn))
        return written
