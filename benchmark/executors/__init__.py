"""Executors run a plan's job graph. The contract (for executor plugins, e.g. a Ray executor):

``run(plan, store, *, devices, workers, observer) -> dict[key, JobResult]`` computes every job of ``plan``
that the store lacks (jobs it holds are reported ``cached``), dispatching a job once its inputs are stored,
and reports through ``observer`` (``started(job)``, ``progress(key, completed, total, text)``,
``finished(job, result)``). A job that raises fails alone; jobs that depend on it are ``skipped``.
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


class Executor:
    """Base of every executor plugin."""

    name: ClassVar[str]
    Params = NoParams

    def run(self, plan: Plan, store: Store, *, devices: list[str], workers: int, observer: Observer
            ) -> dict[str, JobResult]:
        raise NotImplementedError
