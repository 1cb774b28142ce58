"""Run progress on the terminal (rich): an overall bar and one line per running job; a log line per job end and
per warning.

It is one implementer of the observer hooks (``rbench_job_started``, ``rbench_job_progress``,
``rbench_job_finished``, ``rbench_warning``), registered for the length of a run (:func:`rbench.events.listening`);
the runner fires the hooks, whatever the executor.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from rbench import hookimpl
from rbench.executors import JobResult
from rbench.plan import Job

_STYLE = {"done": "green", "cached": "dim", "failed": "bold red", "skipped": "yellow"}


class RunProgress:
    """Rich progress bars and log lines drawn from the observer hooks (quiet: only warnings are printed)."""

    def __init__(self, total: int, console: Console, quiet: bool = False):
        self.console, self.quiet = console, quiet
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console,
                             disable=quiet, transient=True)
        self.overall = self.bars.add_task("jobs", total=total, note="")
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RunProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    @hookimpl
    def rbench_job_started(self, job: Job, device: str) -> None:
        if job.key not in self.tasks:
            self.tasks[job.key] = self.bars.add_task(f"  {escape(job.label)}", total=None, note=device)

    @hookimpl
    def rbench_job_progress(self, key: str, completed: float, total: float, text: str) -> None:
        if key in self.tasks:
            self.bars.update(self.tasks[key], completed=completed, total=total, note=text)

    @hookimpl
    def rbench_warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning: {escape(message)}[/]", highlight=False)

    @hookimpl
    def rbench_job_finished(self, job: Job, result: JobResult) -> None:
        self.bars.advance(self.overall)
        task = self.tasks.pop(job.key, None)
        if task is not None:
            self.bars.remove_task(task)
        if self.quiet or result.status in ("cached", "skipped"):  # skipped: counted in the run's summary
            return
        line = f"[{_STYLE[result.status]}]{result.status:>7}[/] {escape(job.label)}"
        if result.status == "done":
            line += f" [dim]({result.seconds:.1f}s on {result.device})[/]"
        if result.error:
            line += f"\n         [red]{escape(result.error)}[/]"
        self.console.print(line, highlight=False)
