"""The rich terminal rendering of result tables printed at the end of a run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from rbench.report.reporters import grid, header, unit_note
from rbench.results import RunResults


def print_tables(results: RunResults, console: Console) -> None:
    for t in results.tables:
        table = Table(title=f"{t.title}{unit_note(t)}", title_justify="left", show_lines=False)
        for i, name in enumerate(header(t)):
            table.add_column(name, justify="left" if i == 0 else "right", style="bold" if i == 0 else None)
        for row in grid(t):
            table.add_row(*row)
        console.print(table)
