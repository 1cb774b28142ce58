"""The rich terminal rendering of result tables printed at the end of a run."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rbench.compare import ClaimCheck, Comparison, describe_claim, fmt_number, paper_summary, summary
from rbench.report.reporters import grid, header, unit_note
from rbench.results import RunResults


def print_tables(results: RunResults, console: Console) -> None:
    for t in results.tables:
        table = Table(title=escape(f"{t.title}{unit_note(t)}"), title_justify="left", show_lines=False)
        for i, name in enumerate(header(t)):
            table.add_column(escape(name), justify="left" if i == 0 else "right", style="bold" if i == 0 else None)
        for row in grid(t):
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)


def print_comparison(rows: list[Comparison], console: Console, details: bool = True,
                     claims: list[ClaimCheck] | None = None) -> None:
    """Each published cell beside ours (when ``details``), one summary line per table, the paper's claims (held or
    not held), and last one line per published file (per paper: cells within tolerance, claims held)."""
    if details:
        for name, figure, ok, total in summary(rows):
            table = Table(title=escape(f"{name} vs {figure}: {ok}/{total} within tolerance"), title_justify="left")
            for col in ("row", "column", "ours", "published", "delta", "tolerance", "within"):
                table.add_column(col, justify="left" if col in ("row", "column") else "right")
            for r in rows:
                if r.table == name:
                    table.add_row(escape(r.row), escape(r.column), fmt_number(r.ours), fmt_number(r.published),
                                  fmt_number(r.delta, signed=True), r.tolerance,
                                  "[green]yes[/]" if r.within_tolerance else "[red]NO[/]")
            console.print(table)
    for name, figure, ok, total in summary(rows):
        console.print(escape(f"compare {name} ({figure}): {ok}/{total} cells within tolerance"), highlight=False)
    for check in claims or []:
        console.print(escape(describe_claim(check)), highlight=False)
    papers = paper_summary(rows, claims or [])
    if papers:
        console.print("Summary over all published tables:", highlight=False)
        for paper in papers:
            console.print(escape(f"  {paper.describe()}"), highlight=False)
