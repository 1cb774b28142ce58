"""Executors run jobs of a plan's graph. The contract (for executor plugins, e.g. a Ray executor):

``run(plan, store, jobs, *, devices, workers, observer, job_timeout=None, params) -> dict[key, JobResult]``

``params`` is the executor's options, an instance of its ``Params`` (a pydantic model; :class:`NoParams` for an
executor that takes none). The runner builds it with :func:`configure` before any work, from the command-line
options that name its fields (``--address`` fills ``address``; see :data:`OPTIONS`): a bad value, or an option the
executor does not take, is a one-line error naming the option. :func:`configure` then calls ``check(params)``,
where the executor refuses (one-line :class:`~rbench.errors.RbenchError`) what it cannot work with, such as a
missing extra or an unreachable cluster, still before the store or the run folder is touched.

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

from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ValidationError

from rbench.dataset import NoParams
from rbench.errors import RbenchError
from rbench.interrupt import raise_swallowed_stop
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
    are skipped (and reported to ``observer``).

    Incremental, so that a run of 10^5 jobs does not rescan them all at every step: each job counts its
    dependencies in ``jobs`` that are not done yet, and the ready ones are kept sorted by their place in ``jobs``.
    :meth:`ready` costs the number of ready jobs; :meth:`take` and :meth:`finish` the jobs they touch."""

    def __init__(self, plan: Plan, jobs: list[Job], observer: Observer):
        self.plan, self.observer = plan, observer
        self.todo = {job.key: job for job in jobs}
        self.results: dict[str, JobResult] = {}
        self._jobs = list(self.todo.values())
        self._position = {key: i for i, key in enumerate(self.todo)}
        self._taken: set[str] = set()
        self._unmet: dict[str, int] = {}  # key -> dependencies in ``jobs`` not done or cached yet
        self._needed_by: dict[str, list[str]] = {}  # key -> the jobs in ``jobs`` that read it
        for job in self._jobs:
            deps = {d for d in job.deps if d in self.todo}
            self._unmet[job.key] = len(deps)
            for d in deps:
                self._needed_by.setdefault(d, []).append(job.key)
        self._ready = [i for i, job in enumerate(self._jobs) if not self._unmet[job.key]]  # positions, sorted
        self._downstream: dict[str, list[str]] | None = None  # the plan's dependents index, built on a failure
        self._plan_order: dict[str, int] = {}

    def ready(self) -> list[Job]:
        """Jobs not yet taken whose dependencies are satisfied, in dependency order."""
        return [self._jobs[i] for i in self._ready]

    def take(self, job: Job) -> None:
        """``job`` is being run (it is no longer offered by :meth:`ready`). A stop signal whose exception was
        swallowed is raised here, before the job starts (:func:`rbench.interrupt.raise_swallowed_stop`)."""
        raise_swallowed_stop()
        if job.key not in self.todo or job.key in self._taken:
            raise ValueError(f"{job.label}: not a job waiting to run")
        self._taken.add(job.key)
        self._unready(job.key)

    def finish(self, job: Job, result: JobResult) -> None:
        before = self.results.get(job.key)
        self.results[job.key] = result
        self.observer.finished(job, result)
        if job.key in self.todo:
            self._unready(job.key)
            was_ok, ok = before is not None and before.status in _SATISFIED, result.status in _SATISFIED
            if ok != was_ok:
                for key in self._needed_by.get(job.key, ()):
                    self._unmet[key] += -1 if ok else 1
                    if not self._unmet[key] and key not in self._taken and key not in self.results:
                        insort(self._ready, self._position[key])
                    elif not ok:
                        self._unready(key)
        if result.status == "failed":
            for dep_key in self._dependents(job.key):
                if dep_key in self.todo and dep_key not in self.results:
                    dep = self.plan.jobs[dep_key]
                    self.results[dep_key] = JobResult(dep_key, dep.label, "skipped",
                                                      error=f"not run: needs {job.label}, which failed")
                    self._unready(dep_key)
                    self.observer.finished(dep, self.results[dep_key])

    @property
    def finished(self) -> bool:
        return len(self.results) == len(self.todo)

    def _unready(self, key: str) -> None:
        """No longer offer ``key`` (if it is offered)."""
        position = self._position[key]
        i = bisect_left(self._ready, position)
        if i < len(self._ready) and self._ready[i] == position:
            del self._ready[i]

    def _dependents(self, key: str) -> list[str]:
        """What :meth:`rbench.plan.Plan.dependents` says (every job of the plan that reads ``key``, directly or
        through other jobs of the plan, in plan order), from an index of the plan built once."""
        if self._downstream is None:
            self._downstream, self._plan_order = {}, {}
            for i, job in enumerate(self.plan.jobs.values()):
                self._plan_order[job.key] = i
                for d in set(job.deps):
                    self._downstream.setdefault(d, []).append(job.key)
        found: set[str] = set()
        frontier = [key]
        while frontier:
            for other in self._downstream.get(frontier.pop(), ()):
                if other not in found:
                    found.add(other)
                    frontier.append(other)
        return sorted(found, key=self._plan_order.__getitem__)


#: the results that satisfy a dependency
_SATISFIED = ("done", "cached")


class Executor:
    """Base of every executor plugin (see the module docstring for the contract)."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams

    def check(self, params: Any) -> None:
        """Refuse (one-line RbenchError) a setup this executor cannot run with, before any work; default: none."""

    def capacity(self, params: Any, devices: list[str], workers: int) -> str:
        """Where and how many jobs run at once, for ``rbench run --dry-run``; default: ``workers`` on ``devices``."""
        return workers_on(devices, workers)

    def run(self, plan: Plan, store: Store, jobs: list[Job], *, devices: list[str], workers: int,
            observer: Observer, job_timeout: float | None = None, params: Any = None) -> dict[str, JobResult]:
        raise NotImplementedError


def capacity(executor: object, params: Any, devices: list[str], workers: int) -> str:
    """:meth:`Executor.capacity` of ``executor``, or its default for an executor written to the contract without
    subclassing :class:`Executor`."""
    describe = getattr(executor, "capacity", None)
    return describe(params, devices, workers) if callable(describe) else workers_on(devices, workers)


def workers_on(devices: list[str], workers: int) -> str:
    """``2 on cpu``: the default :meth:`Executor.capacity`."""
    return f"{workers} on {', '.join(dict.fromkeys(devices))}"


#: command-line options of ``rbench run`` that fill a field of the executor's Params (option -> field)
OPTIONS = {"--address": "address", "--gpu-fraction": "gpu_fraction", "--num-cpus": "num_cpus",
           "--max-retries": "max_retries"}


def configure(name: str, options: dict[str, Any] | None = None, *, check: bool = True
              ) -> tuple[Executor, BaseModel]:
    """The executor plugin ``name`` and its validated Params, from ``options`` (command-line option -> value; None:
    not given), checked by the executor (:meth:`Executor.check`) unless ``check`` is False (a caller that checked
    them already: the Ray executor's check joins the cluster). Every problem is one :class:`RbenchError` line
    naming the option."""
    from rbench.manager import get_registry

    executor = get_registry().get("executor", name).obj
    model = getattr(executor, "Params", NoParams)
    values = {}
    for option, value in (options or {}).items():
        if value is None:
            continue
        field = OPTIONS.get(option, option.lstrip("-").replace("-", "_"))
        if field not in model.model_fields:
            raise RbenchError(f"{option}: executor {name!r} takes no such option")
        values[field] = value
    try:
        params = model.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        option = next((o for o, f in OPTIONS.items() if f == field), f"--{field.replace('_', '-')}")
        raise RbenchError(f"{option} {first.get('input')!r}: {first['msg']} (executor {name!r})") from None
    checker = getattr(executor, "check", None)
    if check and checker is not None:
        checker(params)
    return executor, params
