"""Run progress on the terminal (rich): an overall bar and one line per running job; a log line per job end.

It is also the bridge to the observer hooks ``rbench_job_started`` / ``rbench_job_finished``.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from rbench.executors import JobResult
from rbench.manager import hook
from rbench.plan import Job

_STYLE = {"done": "green", "cached": "dim", "failed": "bold red", "skipped": "yellow"}


class RunProgress:
    """An :class:`rbench.executors.Observer` drawing rich progress bars (quiet: hooks only)."""

    def __init__(self, total: int, console: Console, quiet: bool = False):
        self.console, self.quiet = console, quiet
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console,
                             disable=quiet, transient=True)
        self.overall = self.bars.add_task("jobs", total=total, note="")
        self.tasks: dict[str, TaskID] = {}
        self.counts = {"done": 0, "cached": 0, "failed": 0, "skipped": 0}

    def __enter__(self) -> RunProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def started(self, job: Job, device: str) -> None:
        hook().rbench_job_started(job=job)
        if job.key not in self.tasks:
            self.tasks[job.key] = self.bars.add_task(f"  {escape(job.label)}", total=None, note=device)

    def progress(self, key: str, completed: float, total: float, text: str) -> None:
        if total == 0:  # a message, not a progress update
            self.console.print(f"[yellow]{escape(text)}[/]", highlight=False)
            return
        if key in self.tasks:
            self.bars.update(self.tasks[key], completed=completed, total=total, note=text)

    def finished(self, job: Job, result: JobResult) -> None:
        hook().rbench_job_finished(job=job, result=result)
        self.counts[result.status] += 1
        self.bars.advance(self.overall)
        task = self.tasks.pop(job.key, None)
        if task is not None:
            self.bars.remove_task(task)
        if self.quiet or result.status == "cached":
            return
        line = f"[{_STYLE[result.status]}]{result.status:>7}[/] {escape(job.label)}"
        if result.status == "done":
            line += f" [dim]({result.seconds:.1f}s on {result.device})[/]"
        if result.error:
            line += f"\n         [red]{escape(result.error)}[/]"
        self.console.print(line, highlight=False)
