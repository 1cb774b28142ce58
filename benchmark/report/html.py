"""The ``html`` reporter: one self-contained page of a run, ``report.html`` in its run folder.

The page holds, from ``results.json`` and the PNG files beside it (nothing is recomputed and the store is not read):

- the title, suite and profile, and where the suite compares with published files, one summary per paper and its
  claims (held, NOT held, not checked);
- every result table as an HTML table: each cell ``value ±h`` (the half-width of its 95% interval) with its raw
  number in ``data-value`` (for sorting), and where a paper publishes the cell, the published value beside ours,
  the cell coloured by the verdict (within / inconclusive / outside / missing) and the tolerance, its reason and
  the verdict in the cell's ``title``; then the table's paired tests and its figures, embedded as base64 PNGs
  (every ``<figure>_<table>.png`` and ``units_<table>_*.png`` of the run folder), linked both ways with the table;
- the provenance, suite files, jobs and every cell's store keys, folded away in ``<details>``.

The only script sorts a table by a clicked column and shows each cell's hover text in the cell on request (print
shows it anyway); the page reads the same without JavaScript, and needs no
network. The reporter's ``order`` is 10, so it runs after the file reporters whose PNGs it embeds.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rbench.errors import RbenchError
from rbench.report.reporters import (
    INTERVAL_NOTE,
    Reporter,
    describe_attacks,
    describe_images,
    describe_models,
    describe_paired,
    full_title,
    header,
    run_models,
    safe_name,
    table_figures,
)
from rbench.results import Cell, ResultTable, RunResults, format_value
from rbench.rundir import write_output

if TYPE_CHECKING:
    from rbench.compare import Comparison
    from rbench.store import Store

REPORT_FILE = "report.html"
TEMPLATE = "report.html.j2"
#: a cell compared with several papers takes the colour of its worst verdict
VERDICT_RANK = {"outside": 0, "missing": 1, "inconclusive": 2, "within": 3}
#: each published value carries its verdict as a mark too, so that it reads without colour (printed, or by a
#: reader who does not tell the colours apart)
VERDICT_MARK = {"within": "✓", "inconclusive": "?", "outside": "✗", "missing": "–"}


def figures_of(results: RunResults, run_dir: Path) -> dict[str, list[Path]]:
    """Table name -> the PNG files of ``run_dir`` drawn of it, as the reporters that draw them name them
    (:func:`table_figures`), those the folder holds. A PNG no reporter names is not embedded (it was found by a
    ``*_<table>.png`` pattern until 2026-12-04, so a user's own ``plot_<table>.png`` in the folder was embedded as
    the run's, and ``lines_a_b.png`` of table ``a_b`` matched table ``b`` too)."""
    return {t.name: [p for p in (Path(run_dir) / f for f in table_figures(t)) if p.suffix == ".png" and p.is_file()]
            for t in results.tables}


@dataclass
class HtmlCell:
    text: str
    #: the raw number (``repr``), "" without one: what sorting compares
    value: str = ""
    css: str = ""
    title: str = ""


@dataclass
class HtmlFigure:
    id: str
    file: str
    uri: str


@dataclass
class HtmlTable:
    id: str
    name: str
    title: str
    header: list[str]
    rows: list[tuple[HtmlCell, list[HtmlCell]]]
    paired: list[str] = field(default_factory=list)
    figures: list[HtmlFigure] = field(default_factory=list)
    #: one line per paper compared with the table, and the published cells the table lacks
    compared: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    #: (row, column, store keys) of every cell
    keys: list[tuple[str, str, list[str]]] = field(default_factory=list)
    #: what the published files note on the table
    notes: list[str] = field(default_factory=list)
    #: every attack of the table with its plugin and parameters (:func:`describe_attacks`)
    attacks: list[str] = field(default_factory=list)
    #: the images each evaluation of the table is computed on (:func:`describe_images`)
    images: list[str] = field(default_factory=list)


@dataclass
class Comparisons:
    """What the run's published files say about it; ``error`` where they can no longer be read."""

    papers: list[dict[str, str]] = field(default_factory=list)
    claims: list[dict[str, str]] = field(default_factory=list)
    cells: dict[tuple[str, str, str], list[Comparison]] = field(default_factory=dict)
    by_table: dict[str, list[Comparison]] = field(default_factory=dict)
    #: (paper, table, column) -> why its tolerance is defensible; the table's ``why`` for columns without their own
    why: dict[tuple[str, str, str], str] = field(default_factory=dict)
    #: table -> what its published files note on it
    notes: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""


def comparisons(results: RunResults) -> Comparisons:
    """The comparison with the run's published files (empty without any)."""
    from rbench.compare import check_claims, compare, paper_summary, run_published

    out = Comparisons()
    if not results.published:
        return out
    try:
        rows, claims = compare(results), check_claims(results)
        citations = {}
        for path in results.published:
            pub = run_published(results, path)
            citations[Path(path).stem] = pub.source.citation
            for name, table in pub.tables.items():  # a column with its own tolerance is not what ``why`` explains
                out.notes.setdefault(name, []).extend(table.notes)
                for column in {c for row in table.values.values() for c in row}:
                    out.why[(Path(path).stem, name, column)] = table.why if column not in table.column_tolerance \
                        else "this column's own tolerance (the table's reason is given for its others)"
    except RbenchError as exc:  # a published file moved or changed since the run: the tables still render
        out.error = str(exc)
        return out
    out.papers = [{"text": p.describe(), "citation": citations.get(p.paper, "")}
                  for p in paper_summary(rows, claims)]
    verdicts = {True: ("held", "held"), False: ("not-held", "NOT held"), None: ("unchecked", "not checked")}
    out.claims = [{"css": verdicts[c.held][0], "verdict": verdicts[c.held][1], "text": c.text, "table": c.table,
                   "detail": c.detail, "paper": c.paper} for c in claims]
    for r in rows:
        out.cells.setdefault((r.table, r.row, r.column), []).append(r)
        out.by_table.setdefault(r.table, []).append(r)
    return out


def describe_comparison(r: Comparison, why: str, shown_error: str | None = None) -> str:
    """One published cell beside ours in words (a cell's hover text); ``shown_error``: the cell's error, already
    in the hover text, not repeated as the comparison's note."""
    from rbench.compare import describe_verdict, fmt_delta, fmt_interval, fmt_number

    lines = [f"{r.paper}, {r.figure}: published {r.published:g}; ours {fmt_number(r.ours, fmt=r.fmt)}"
             + (f", 95% interval {fmt_interval(r)}" if r.low is not None else "")
             + ("" if r.delta is None else f", delta {fmt_delta(r)}"),
             f"tolerance {r.tolerance}" + (f": {why}" if why else ""),
             f"verdict: {describe_verdict(r)}"]
    if r.note and r.note != shown_error:
        lines.append(r.note)
    return "\n".join(lines)


def _interval(table: ResultTable, cell: Cell) -> str:
    """``n = 200, 95% interval [3.8, 10.8], wilson``: in the cell's own format, as the comparison beside it."""
    if cell.value is None or cell.low is None or cell.high is None:
        return ""
    method = f", {cell.interval}" if cell.interval else ""
    n = f"n = {cell.n}, " if cell.n is not None else ""
    fmt = table.fmt(cell)
    return f"{n}95% interval [{format_value(cell.low, fmt)}, {format_value(cell.high, fmt)}]{method}"


def html_cell(table: ResultTable, cell: Cell | None, compared: list[Comparison],
              why: dict[tuple[str, str, str], str]) -> HtmlCell:
    """A table cell: its text (with the published values beside ours), raw value, verdict class and hover text."""
    if cell is None:  # a (row, column) the table has no cell for
        return HtmlCell("-", css="empty")
    text = table.format(cell, spread=True)
    title = [cell.error] if cell.error else []
    if cell.value is not None and _interval(table, cell):
        title.append(_interval(table, cell))
    css = ["failed"] if cell.error else []
    if compared:
        # the published value as published, not in our format, then its verdict's mark
        text += "".join(f" · paper {r.published:g} {VERDICT_MARK.get(r.verdict, '')}".rstrip() for r in compared)
        worst = min(compared, key=lambda r: VERDICT_RANK.get(r.verdict, 0))
        css += ["compared", worst.verdict]
        title += [describe_comparison(r, why.get((r.paper, r.table, r.column), ""), cell.error) for r in compared]
    value = "" if cell.value is None else repr(float(cell.value))
    return HtmlCell(text, value, " ".join(css), "\n".join(title))


def html_table(index: int, table: ResultTable, figures: list[Path], cmp: Comparisons) -> HtmlTable:
    from rbench.compare import summary, verdict_counts

    tid = f"table-{index}-{safe_name(table.name)}"
    cells = {(c.row, c.column): c for c in table.cells}
    rows = []
    for row in table.rows:
        label = HtmlCell(row, row, "mean" if row == table.mean_row else "")  # set apart, and kept last by sorting
        rows.append((label, [html_cell(table, cells.get((row, col)), cmp.cells.get((table.name, row, col), []),
                                       cmp.why) for col in table.columns]))
    shown = [HtmlFigure(f"fig-{png.name}", png.name,
                        "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii"))
             for png in figures if png.is_file()]
    mine = cmp.by_table.get(table.name, [])
    compared = []
    for paper in dict.fromkeys(r.paper for r in mine):
        of_paper = [r for r in mine if r.paper == paper]
        for _, figure, ok, total in summary(of_paper):
            compared.append(f"{paper}, {figure}: {ok}/{total} published cells within tolerance "
                            f"({verdict_counts(of_paper)})")
    absent = [f"{r.row} / {r.column}: {r.published:g} in {r.paper}, {r.figure} ({r.note})" for r in mine
              if (r.row, r.column) not in cells]
    return HtmlTable(tid, table.name, full_title(table), header(table), rows,
                     [_paired(p) for p in table.paired], shown, compared, absent,
                     [(c.row, c.column, list(c.jobs)) for c in table.cells], cmp.notes.get(table.name, []),
                     describe_attacks(table), describe_images(table))


def _paired(test: dict[str, Any]) -> str:
    try:
        return describe_paired(test)
    except (KeyError, TypeError, ValueError):  # a test recorded in another layout: shown as recorded
        return json.dumps(test, sort_keys=True)


def _seconds(job: dict[str, Any]) -> tuple[str, str]:
    """A job's seconds as shown and as sorted ("" when not recorded as a number)."""
    seconds = job.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "", ""
    return f"{seconds:.2f}", repr(float(seconds))


def _computed(job: dict[str, Any]) -> dict[str, str]:
    """Where and when a job read from the store was computed, and how long it took (``computed``, its text, and
    ``computed_value``, its time, for sorting); empty for a job computed in this run (its seconds and device are
    the row's)."""
    where = job.get("computed")
    if not isinstance(where, dict):
        return {"computed": "", "computed_value": ""}
    created = str(where.get("created") or "")
    seconds = _seconds(where)[0]
    parts = [f"{seconds} s" if seconds else "", str(where.get("device") or ""), str(where.get("host") or ""),
             _minute(created)]
    return {"computed": ", ".join(p for p in parts if p), "computed_value": created}


def _minute(stamp: str) -> str:
    """An ISO timestamp to the minute, in UTC and saying so where it carries its offset (``2026-12-01 11:47
    UTC``); one without an offset as it is (its zone unknown), cut to the minute."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp[:16].replace("T", " ")
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def context(results: RunResults, run_dir: Path) -> dict[str, Any]:
    """Everything the template shows, as plain values (the template only lays them out)."""
    cmp = comparisons(results)
    figures = figures_of(results, run_dir)
    names = {t.name for t in results.tables}
    absent = sorted({r.table for rs in cmp.by_table.values() for r in rs} - names)
    provenance = dict(results.provenance)
    packages = provenance.pop("packages", {}) or {}
    jobs = [{"key": key, "label": j.get("label", ""), "status": j.get("status", ""), "seconds": _seconds(j)[0],
             "seconds_value": _seconds(j)[1], "device": j.get("device") or "", "error": j.get("error") or "",
             **_computed(j)}
            for key, j in results.jobs.items() if isinstance(j, dict)]
    return {
        "title": results.title or results.suite,
        "description": results.description,
        "suite": results.suite,
        "profile": results.profile or "default",
        "only": results.only,
        "interval_note": INTERVAL_NOTE,
        "papers": cmp.papers,
        "claims": cmp.claims,
        "compare_error": cmp.error,
        "comparison": bool(cmp.papers or cmp.claims or cmp.error or absent),  # the section and its contents link
        "absent_tables": absent,
        "tables": [html_table(i, t, figures[t.name], cmp) for i, t in enumerate(results.tables)],
        "packages": {str(k): _shown(v) for k, v in dict(packages).items()} if isinstance(packages, dict) else {},
        "provenance": {str(k): _shown(v) for k, v in provenance.items()},
        "files": results.files,
        "published": results.published,
        "jobs": jobs,
        "models": describe_models(run_models(results)),
    }


def render(results: RunResults, run_dir: Path) -> str:
    """The page of ``results``, embedding the PNG files of ``run_dir``."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**context(results, Path(run_dir)))


class Html(Reporter):
    """``report.html``: the run's tables, comparisons and figures in one self-contained page (see the module)."""

    name = "html"
    suffix = None
    order: ClassVar[int] = 10  # after every file reporter whose PNGs it embeds

    def write(self, results: RunResults, run_dir: Path, store: Store | Any) -> list[Path]:
        path = Path(run_dir) / REPORT_FILE
        text = render(results, Path(run_dir))
        write_output(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return [path]
