"""The rich terminal rendering of result tables printed at the end of a run."""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rbench.compare import (
    ClaimCheck,
    Comparison,
    describe_claim,
    describe_verdict,
    fmt_delta,
    fmt_interval,
    fmt_number,
    paper_summary,
    summary,
    verdict_counts,
)
from rbench.report.reporters import describe_paired, full_title, grid, header
from rbench.results import RunResults
from rbench.run_diff import HEADERS, CellDiff, chance_note, counts, rows_of

COLOURS = {"within": "green", "inconclusive": "yellow", "outside": "red", "missing": "dim"}
#: the width of output written to a pipe or file: rich's 80 columns cut labels of mnist_full's wide tables to
#: "softma…" in a log; tables are not expanded, so they keep their natural width
UNWRAPPED = 1000


def output_console(quiet: bool = False, stderr: bool = False) -> Console:
    """A console on stdout (a command's product: tables, comparisons, the run's summary) or, with ``stderr``, on
    stderr (a run's live log: progress bars, one line per finished job, warnings as they happen), so that
    ``rbench run SUITE > tables.txt`` keeps just the tables. As wide as the terminal; written to a pipe or a file
    (and COLUMNS unset), wide enough that no table is wrapped or cut. Decided by whether its stream is a tty, not
    by rich's ``is_terminal``, which FORCE_COLOR or TTY_COMPATIBLE (set in many CI logs) turn on; a notebook keeps
    rich's own width."""
    console = Console(quiet=quiet, stderr=stderr)
    isatty = getattr(console.file, "isatty", None)
    piped = not console.is_jupyter and not (callable(isatty) and isatty())
    if piped and not os.environ.get("COLUMNS"):
        console.width = UNWRAPPED
    return console


def print_tables(results: RunResults, console: Console) -> None:
    for t in results.tables:
        # the title on a line of its own, not rich's table title: that one wraps at the table's width
        console.print(escape(full_title(t)), style="bold", highlight=False, soft_wrap=True)
        table = Table(show_lines=False)
        for i, name in enumerate(header(t)):  # narrower than the table, a terminal wraps row labels, never cuts
            # them; a value column's header wraps at spaces, and a token cut shows "…" (folded, "eps=0.05" read
            # "eps=0.0" over "5")
            table.add_column(escape(name), justify="left" if i == 0 else "right", style="bold" if i == 0 else None,
                             overflow="fold" if i == 0 else "ellipsis")
        for row in grid(t):
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
        for test in t.paired:
            console.print(escape(f"  paired: {describe_paired(test)}"), highlight=False)


def print_comparison(rows: list[Comparison], console: Console, details: bool = True,
                     claims: list[ClaimCheck] | None = None) -> None:
    """Each published cell beside ours (when ``details``), one summary line per table, the paper's claims (held or
    not held), and last one line per published file (per paper: cells within tolerance, claims held)."""
    if details:
        for name, figure, _, _ in summary(rows):
            mine = [r for r in rows if r.table == name]
            table = Table(title=escape(f"{name} vs {figure}: {verdict_counts(mine)}"), title_justify="left")
            for col in ("row", "column", "ours", "95% interval", "published", "delta", "tolerance", "verdict"):
                # a label without spaces wraps by character on a narrow terminal (a pipe: 80 columns), never cut
                table.add_column(col, justify="left" if col in ("row", "column", "verdict") else "right",
                                 overflow="fold" if col in ("row", "column") else "ellipsis")
            for r in mine:
                table.add_row(escape(r.row), escape(r.column), fmt_number(r.ours, fmt=r.fmt), escape(fmt_interval(r)),
                              f"{r.published:g}", fmt_delta(r), r.tolerance,
                              f"[{COLOURS[r.verdict]}]{escape(describe_verdict(r))}[/]")
            console.print(table)
            for line in note_lines(mine):
                console.print(escape(line), highlight=False)
    for name, figure, ok, total in summary(rows):
        mine = [r for r in rows if r.table == name]
        line = f"compare {name} ({figure}): {ok}/{total} cells within tolerance ({verdict_counts(mine)})"
        console.print(escape(line), highlight=False)
    for check in claims or []:
        console.print(escape(describe_claim(check)), highlight=False)
    papers = paper_summary(rows, claims or [])
    if papers:
        console.print("Summary over all published tables:", highlight=False)
        for paper in papers:
            console.print(escape(f"  {paper.describe()}"), highlight=False)


def note_lines(rows: list[Comparison]) -> list[str]:
    """The notes of one table's comparisons, each once, naming the cells it is on (a note on every cell says so):
    what the markdown and JSON formats give per cell ("the run has no cell", "in another unit?")."""
    cells: dict[str, list[str]] = {}
    for r in rows:
        if r.note:
            cells.setdefault(r.note, []).append(f"{r.row} / {r.column}")
    return [f"  note ({'every cell' if len(on) == len(rows) > 1 else '; '.join(on)}): {note}"
            for note, on in cells.items()]


RUN_DIFF_COLOURS = {"differs": "red", "no difference shown": "green", "equal": "green", "no interval": "yellow",
                    "only in one run": "dim", "failed": "red", "not comparable": "yellow"}


def print_run_diff(diffs: list[CellDiff], console: Console, a: str, b: str) -> None:
    """Each cell of run ``a`` beside run ``b``'s, one table per result table, then one summary line."""
    for name in dict.fromkeys(d.table for d in diffs):
        mine = [d for d in diffs if d.table == name]
        table = Table(title=escape(f"{name}: {counts(mine)}"), title_justify="left")
        for col in HEADERS:
            table.add_column(col, justify="left" if col in ("row", "column", "verdict", "note") else "right",
                             overflow="fold" if col in ("row", "column") else "ellipsis")
        for d, cells in zip(mine, rows_of(mine), strict=True):
            cells[6] = f"[{RUN_DIFF_COLOURS[d.verdict]}]{escape(d.verdict)}[/]"
            table.add_row(*(c if i == 6 else escape(c) for i, c in enumerate(cells)))
        console.print(table)
    console.print(escape(f"{a} vs {b}: {counts(diffs)}"), highlight=False)
    if note := chance_note(diffs):
        console.print(escape(note), highlight=False)
