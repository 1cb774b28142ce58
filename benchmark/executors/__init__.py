"""Executors run jobs of a plan's graph. The contract (for executor plugins, e.g. a Ray executor):

``run(plan, store, jobs, *, devices, workers, observer, job_timeout=None) -> dict[key, JobResult]``

The runner owns trust: before calling an executor it has checked every stored entry of the plan (checksums,
binding to the key, validity gates, quarantine) and hands over only ``jobs``, the ones to compute, in dependency
order; every dependency of a job that is not in ``jobs`` is stored and trusted. The executor computes each job
through :func:`rbench.execution.compute` (the engine's per-job policy: lock, re-check, time limit), dispatching a
job once its dependencies are done, and reports through ``observer`` (``started(job, device)``,
``progress(key, completed, total, text)``, ``finished(job, result)``, ``warning(message, job)``), which the runner
relays to the observer hooks of every plugin (:mod:`rbench.events`): an executor never fires hooks or draws
progress itself. A job that raises or runs past
``job_timeout`` seconds fails alone; jobs that depend on it are ``skipped``. :class:`Scheduler` keeps that
bookkeeping for any executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from rbench.dataset import NoParams
from rbench.plan import Job, Plan
from rbench.store import Store

Status = Literal["done", "cached", "failed", "skipped"]


@dataclass
class JobResult:
    key: str
    label: str
    status: Status
    seconds: float = 0.0
    device: str = ""
    error: str | None = None


class Observer(Protocol):
    def started(self, job: Job, device: str) -> None: ...
    def progress(self, key: str, completed: float, total: float, text: str) -> None: ...
    def finished(self, job: Job, result: JobResult) -> None: ...
    def warning(self, message: str, job: Job | None = None) -> None: ...


class Scheduler:
    """Which of ``jobs`` can run now, and what happened to each: a job is ready once every dependency in
    ``jobs`` is done or cached (dependencies outside ``jobs`` are stored already); a failed job's dependents
    are skipped (and reported to ``observer``)."""

    def __init__(self, plan: Plan, jobs: list[Job], observer: Observer):
        self.plan, self.observer = plan, observer
        self.todo = {job.key: job for job in jobs}
        self.waiting = list(jobs)
        self.results: dict[str, JobResult] = {}

    def ready(self) -> list[Job]:
        """Jobs not yet taken whose dependencies are satisfied, in dependency order."""
        self.waiting = [j for j in self.waiting if j.key not in self.results]
        return [j for j in self.waiting if all(
            d not in self.todo or (d in self.results and self.results[d].status in ("done", "cached"))
            for d in j.deps)]

    def take(self, job: Job) -> None:
        """``job`` is being run (it is no longer offered by :meth:`ready`)."""
        self.waiting.remove(job)

    def finish(self, job: Job, result: JobResult) -> None:
        self.results[job.key] = result
        self.observer.finished(job, result)
        if result.status == "failed":
            for dep_key in self.plan.dependents(job.key):
                if dep_key in self.todo and dep_key not in self.results:
                    dep = self.plan.jobs[dep_key]
                    self.results[dep_key] = JobResult(dep_key, dep.label, "skipped",
                                                      error=f"not run: needs {job.label}, which failed")
                    self.observer.finished(dep, self.results[dep_key])

    @property
    def finished(self) -> bool:
        return len(self.results) == len(self.todo)


class Executor:
    """Base of every executor plugin (see the module docstring for the contract)."""

    name: ClassVar[str]
    Params = NoParams

    def run(self, plan: Plan, store: Store, jobs: list[Job], *, devices: list[str], workers: int,
            observer: Observer, job_timeout: float | None = None) -> dict[str, JobResult]:
        raise NotImplementedError
