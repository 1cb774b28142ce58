"""Built-in reporters: Markdown, CSV and JSON renderings of a run's result tables (and, registered here too, the
LaTeX tables of :mod:`rbench.report.latex`, the figure reporters of :mod:`rbench.report` and the self-contained
HTML page of :mod:`rbench.report.html`).

A reporter plugin has ``name`` (the ``--format`` value) and is one of two kinds:

- a **text reporter**: ``suffix`` (the file it writes in a run folder) and ``render(results) -> str``; or
- a **file reporter** (figures): ``suffix = None`` and ``write(results, run_dir, store) -> list[Path]``, which
  may read the stored job outputs the cells name (their ``jobs``) and writes its files into ``run_dir``
  atomically (:func:`rbench.rundir.write_output`), returning their paths (none when it has nothing to draw).
  File reporters write in ascending ``order`` (default 0), so one that embeds the others' files runs last.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rbench import hookimpl
from rbench.dataset import NoParams
from rbench.markdown import md, md_paragraphs, md_table
from rbench.results import ResultTable, RunResults, images_text
from rbench.rundir import write_output

if TYPE_CHECKING:
    from rbench.store import Store


class Reporter:
    """Base of every reporter plugin."""

    name: ClassVar[str]
    Params = NoParams
    #: the file a text reporter writes in a run folder; None for a file reporter (which implements ``write``)
    suffix: ClassVar[str | None]
    #: when a file reporter writes, after text reporters: lower first (a reporter that embeds others' files, like
    #: ``html``, comes last); sorting is stable, so equal orders keep the registration order
    order: ClassVar[int] = 0

    def render(self, results: RunResults) -> str:
        raise NotImplementedError

    def figures_of(self, table: ResultTable) -> list[str]:
        """The files this (file) reporter writes for ``table`` into a run folder, for other reports to link to;
        only those it decides on from the table itself (figures named by the table's ``figure`` option are
        linked from that option)."""
        return []

    def write(self, results: RunResults, run_dir: Path, store: Store) -> list[Path]:
        """Write this reporter's files into ``run_dir``; a text reporter writes ``render(results)`` to ``suffix``."""
        return [write_text_report(self, results, run_dir)]


def safe_name(name: str) -> str:
    """``name`` (a table's) as file names spell it: each character other than a letter, digit, ``_``, ``.`` or ``-``
    becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def figure_file(figure: str, table: str) -> str:
    """The file a figure reporter writes for ``figure`` (a table's ``figure`` option) of ``table``."""
    return f"{figure}_{safe_name(table)}.png"


def table_figures(table: ResultTable) -> list[str]:
    """The figure files drawn of ``table``, as the reporters that draw them name them: those of the table's
    ``figure`` option, then each registered reporter's :meth:`Reporter.figures_of`, each once. What tables.md
    links and report.html embeds: a PNG in the run folder that no reporter names (a user's own) is neither."""
    from rbench.manager import get_registry

    reporters = [info.obj for info in get_registry().plugins["reporter"].values()]
    drawn = [table.figure] if isinstance(table.figure, str) else (table.figure or [])
    files = [figure_file(f, table.name) for f in drawn]  # every figure reporter writes <figure>_<table>.png
    for reporter in reporters:
        files += [f for f in reporter.figures_of(table) if f not in files]
    return files


def renders_text(reporter: Any) -> bool:
    """True for a text reporter (``suffix`` + ``render``), False for a file reporter (``write``)."""
    return getattr(reporter, "suffix", None) is not None


def write_text_report(reporter: Any, results: RunResults, run_dir: Path) -> Path:
    """Write a text reporter's rendering into ``run_dir`` atomically; returns the file's path."""
    if Path(reporter.suffix).name != reporter.suffix:  # a reporter writes into the run folder, nowhere else
        raise ValueError(f"reporter {reporter.name!r}: suffix {reporter.suffix!r} is not a plain file name")
    path = Path(run_dir) / reporter.suffix
    text = reporter.render(results)
    write_output(path, lambda tmp: tmp.write_text(text))
    return path


def grid(table: ResultTable, spread: bool = True) -> list[list[str]]:
    """The table as rows of text: the row label, then each column's formatted cell (with ``spread``, `` ±h`` for
    the half-width of its 95% interval where it has one)."""
    return [[row] + [table.format(table.cell(row, col), spread) for col in table.columns] for row in table.rows]


def _units(table: ResultTable, column: str | None = None) -> set[str]:
    return {table.unit(c) for c in table.cells if column is None or c.column == column}


def header(table: ResultTable) -> list[str]:
    """Column headings; a column's unit is shown where the table mixes units (else the title has it)."""
    corner = f"{table.row_axis} \\ {table.column_axis}" if table.row_axis != "rows" else ""
    mixed = len(_units(table)) > 1
    out = [corner]
    for col in table.columns:
        units = _units(table, col)
        unit = next(iter(units)) if len(units) == 1 else ""
        out.append(f"{col} ({unit})" if mixed and unit else col)
    return out


def describe_attacks(table: ResultTable) -> list[str]:
    """One line per attack of ``table``: its label, the plugin and every parameter it ran with (defaults too: the
    label shows only what the suite set, so ``pgd(eps=0.1)`` did not say its norm or steps; an unset parameter the
    attack computes from the others as its value, marked ``(default)``: pgd's ``step_size``), and the attack whose
    sets a transform rescaled."""
    lines = []
    for label, call in table.attack_calls.items():
        source = f", applied to the sets of {call['input']}" if call.get("input") else ""
        lines.append(f"{label}: {_plugin_text(call, call.get('resolved', {}))}{source}")
    return lines


def describe_images(table: ResultTable) -> list[str]:
    """One line per evaluation of ``table`` (:attr:`ResultTable.data_calls`): the images its cells are computed on,
    ``whitebox: mnist test, 1000 images drawn with subset seed 5`` (``every image`` where ``n`` is unset; the
    dataset's params and the files' digest where recorded: :func:`rbench.results.images_text`); none in results
    written before they were recorded."""
    lines = []
    for evaluation, data in table.data_calls.items():
        n = data.get("n")
        drawn = f"{n} images drawn with subset seed {data.get('subset_seed')}" if n is not None else "every image"
        lines.append(f"{evaluation}: {images_text(data)}, {drawn}")
    return lines


def run_models(results: RunResults) -> dict[str, dict[str, Any]]:
    """How every model the run's tables read is made (:attr:`ResultTable.model_calls`), each once, in table order."""
    out: dict[str, dict[str, Any]] = {}
    for table in results.tables:
        for name, made in table.model_calls.items():
            out.setdefault(name, made)
    return out


def describe_models(model_calls: dict[str, dict[str, Any]]) -> list[str]:
    """One line per model: its plugin with every parameter, the trainer with its own and the data it trains on;
    or, for a defended model, each defense in order from the input, with its parameters, in front of what it
    defends."""
    lines = []
    for name, made in model_calls.items():
        if "defenses" in made:
            chain = " -> ".join(f"{d.get('name', '?')} = {_plugin_text(d)}"
                                + (f" ({_trained_text(d)})" if d.get("trainer") else "") for d in made["defenses"])
            behind = made.get("base") or " + ".join(made.get("members", []))
            lines.append(f"{name}: {chain} -> {behind}")
            continue
        parts = [_plugin_text(made)] if "plugin" in made else []
        if made.get("members"):
            parts.append(f"members {', '.join(made['members'])}")
        if made.get("init"):
            parts.append(f"from {made['init']}")
        if made.get("trainer"):
            parts.append(_trained_text(made))
        lines.append(f"{name}: {'; '.join(parts)}")
    return lines


def _trained_text(made: dict) -> str:
    """``trained by standard(...) on mnist train, part 0 of [30000, 30000], n = 2000, seed 11`` of a model or
    defense's record."""
    data = made.get("data") or {}
    where = ""
    if data:
        dataset = _plugin_text({"plugin": data.get("dataset", "?"), "params": data["params"]}) \
            if data.get("params") else data.get("dataset", "?")
        part = f", part {data['part']} of {data['parts']}" if data.get("parts") else ""
        n = f", n = {data['n']}" if data.get("n") is not None else ""
        where = f" on {dataset} {data.get('split', '?')}{part}{n}"
    seed = f", seed {made['seed']}" if made.get("seed") is not None else ""
    return f"trained by {_plugin_text(made['trainer'])}{where}{seed}"


def _plugin_text(call: dict, resolved: dict | None = None) -> str:
    """``plugin(key=value, ...)`` with the values as JSON; a parameter in ``resolved`` shows that value, marked
    ``(default)`` (:meth:`rbench.Attack.resolved_params`)."""
    resolved = resolved or {}
    params = ", ".join(f"{k}={json.dumps(resolved[k], ensure_ascii=False)} (default)" if k in resolved
                       else f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in call.get("params", {}).items())
    return f"{call.get('plugin', '?')}({params})"


def describe_paired(test: dict) -> str:
    """One McNemar test of a table in words: which two rows (columns), along which column (row), the discordant
    counts and the exact p-value."""
    outcome = test.get("metric", "outcome")
    p = test["p_value"]
    # an exact McNemar p-value is never 0: a 0.0 underflowed the float (1100 discordant pairs all one way: 2^-1099)
    shown = f"p = {p:.3g}" if p > 0 else "p < 1e-300"
    return (f"{test['a']} vs {test['b']} at {test['along']}: {outcome} for {test['a']} only on {test['a_only']} "
            f"samples, for {test['b']} only on {test['b_only']} (of {test['n']} shared); McNemar exact {shown}")


INTERVAL_NOTE = ("±h: the half-width of the cell's 95% interval (+a/−b where its two sides differ, +h or −h where it "
                 "lies wholly above or below the value, as at 0 or 100%; Wilson for rates, Student t for means, "
                 "normal for class-balanced rates, Hanley-McNeil for AUROC, order statistics for medians, Fisher's "
                 "z for correlations; binned statistics such as ECE carry none); n and the interval's ends are in "
                 "results.json and cells.csv.")


def title_unit(table: ResultTable) -> str:
    """``%`` when every cell of the table has that unit and the title does not say so already; else ""."""
    units = _units(table)
    if len(units) != 1 or not next(iter(units)):
        return ""
    unit = next(iter(units))
    return "" if f"({unit}" in table.title else unit


def size_note(table: ResultTable) -> str:
    """How many samples the cells rest on: ``n = 1000 per cell``, or ``n = 312 to 1000 per cell`` where they
    differ (a mean over the successful adversarials only, a smaller profile of one evaluation); "" when no cell
    has an n."""
    sizes = [c.n for c in table.cells if c.n is not None and c.value is not None and not table.is_mean(c)]
    mean = table.mean_row or table.mean_column
    across = f"{mean!r}: the mean of the {len(table.rows if table.mean_row else table.columns) - 1} " \
             f"{'rows' if table.mean_row else 'columns'}, a t interval over them" if mean else ""
    if not sizes:
        return across
    low, high = min(sizes), max(sizes)
    each = f"n = {low} per cell" if low == high else f"n = {low} to {high} per cell"
    return f"{each}; {across}" if across else each


def full_title(table: ResultTable) -> str:
    """The title every reporter shows: the suite's, then its unit (:func:`title_unit`) and sample sizes
    (:func:`size_note`) in one parenthesis: ``Test error under attack (%; n = 1000 per cell)``."""
    notes = "; ".join(part for part in (title_unit(table), size_note(table)) if part)
    return f"{table.title} ({notes})" if notes else table.title


class Markdown(Reporter):
    name = "md"
    suffix = "tables.md"

    def render(self, results: RunResults) -> str:
        parts = [f"# {md(results.title or results.suite)}\n",
                 *([md_paragraphs(results.description) + "\n"] if results.description else []),
                 f"Suite `{results.suite}`, profile `{results.profile or 'default'}`. {INTERVAL_NOTE}\n"]
        for t in results.tables:
            parts.append(f"## {md(full_title(t))}\n")
            parts.append(md_table(grid(t), header(t)) + "\n")
            if t.data_calls:
                parts.append("Images:\n\n" + "\n".join(f"- {md(line)}" for line in describe_images(t)) + "\n")
            if t.attack_calls:
                parts.append("Attacks:\n\n" + "\n".join(f"- {md(line)}" for line in describe_attacks(t)) + "\n")
            if t.paired:
                parts.append("Paired tests:\n\n" + "\n".join(f"- {md(describe_paired(p))}" for p in t.paired) + "\n")
            files = table_figures(t)
            if files:
                parts.append(f"Figures: {', '.join(f'[{f}]({f})' for f in files)}\n")
        models = describe_models(run_models(results))
        if models:  # once for the run: the tables share their models
            parts.append("## Models\n\n" + "\n".join(f"- {md(line)}" for line in models) + "\n")
        if results.published:
            from rbench.compare import as_markdown, check_claims, compare, table_notes

            parts.append(as_markdown(compare(results), check_claims(results), table_notes(results)))
        return "\n".join(parts)


class Csv(Reporter):
    """Long format, one line per cell: table, row, column, value, unit, the store keys it came from, and the error
    of a cell that could not be computed (its value is empty then, as for a cell that does not apply, whose error
    is empty too)."""

    name = "csv"
    suffix = "tables.csv"

    def render(self, results: RunResults) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["table", "row_axis", "row", "column_axis", "column", "value", "unit", "jobs", "error"])
        for t in results.tables:
            for c in t.cells:
                value = "" if c.value is None else repr(c.value)
                w.writerow([t.name, t.row_axis, c.row, t.column_axis, c.column, value, t.unit(c), " ".join(c.jobs),
                            c.error or ""])
        return out.getvalue()


class Json(Reporter):
    name = "json"
    suffix = "results.json"

    def render(self, results: RunResults) -> str:
        return json.dumps(results.to_dict(), indent=1, allow_nan=False)  # never a NaN a reader would refuse


@hookimpl
def rbench_reporters() -> list[Reporter]:
    from rbench.report.curves import Curves
    from rbench.report.figures import Figures
    from rbench.report.generated import Images
    from rbench.report.html import Html
    from rbench.report.latex import Latex
    from rbench.report.lines import Lines
    from rbench.report.tidy import Tidy

    return [Markdown(), Csv(), Json(), Latex(), Curves(), Lines(), Images(), Tidy(), Figures(), Html()]
