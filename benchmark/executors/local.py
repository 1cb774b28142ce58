"""The local executor: a pool with one worker per device (or ``--workers`` CPU workers).

One worker runs jobs in this process. Several workers are spawned processes (CUDA needs ``spawn``), each
pinned to one device; jobs are dispatched as soon as their inputs are stored. Every job runs under the
store's per-key file lock and re-checks the store first, so concurrent runs never compute a key twice.
Workers ignore SIGINT: on Ctrl-C the coordinator terminates them; atomic writes mean nothing partial is
left under a final name, and the next run resumes from what was stored.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch
from filelock import Timeout

from rbench import hookimpl
from rbench.devices import cpu_threads_per_worker
from rbench.executors import Executor, JobResult, Observer
from rbench.jobs import PluginContractError, gate_stored_advset
from rbench.plan import Job, Plan
from rbench.store import CorruptEntry, Store


def describe_failure(job: Job, exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
    return f"{job.label} [{job.plugin}]: {type(exc).__name__}: {exc}{at}"


def compute(job: Job, store: Store, device: str, progress: Any, wait: bool = True,
            on_start: Any = None) -> str:
    """Compute ``job`` under its lock unless another process stored it meanwhile: ``done`` or ``cached``.
    With ``wait=False``, return ``busy`` at once if another process holds the lock. ``on_start()`` is called
    once the job really starts computing."""
    from rbench.jobs import run_job

    try:
        with store.lock(job.key).acquire(timeout=-1 if wait else 0):
            if store.has(job.key):
                return "cached"
            if on_start is not None:
                on_start()
            run_job(job, store, device, progress)
            return "done"
    except Timeout:
        return "busy"


# -- worker process side -------------------------------------------------------------------------------
_worker: dict[str, Any] = {}


def _init_worker(devices: Any, events: Any, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _worker["device"] = devices.get()
    _worker["events"] = events


def _run_in_worker(job: Job, store_root: str) -> tuple[str, str, float]:
    device, events = _worker["device"], _worker["events"]
    events.put(("started", job.key, device))
    started = time.perf_counter()

    def progress(completed: float, total: float, text: str = "") -> None:
        events.put(("progress", job.key, (completed, total, text)))

    status = compute(job, Store(store_root), device, progress)
    return status, device, time.perf_counter() - started


# -- coordinator side ----------------------------------------------------------------------------------
class LocalExecutor(Executor):
    name = "local"

    def run(self, plan: Plan, store: Store, *, devices: list[str], workers: int, observer: Observer
            ) -> dict[str, JobResult]:
        results = self._cached(plan, store, observer)
        todo = self._needed(plan, results)
        if workers == 1:
            self._run_inline(plan, store, devices[0], todo, results, observer)
        else:
            self._run_pool(plan, store, devices, todo, results, observer)
        return results

    @staticmethod
    def _cached(plan: Plan, store: Store, observer: Observer) -> dict[str, JobResult]:
        results: dict[str, JobResult] = {}
        for job in plan.jobs.values():
            if not store.has(job.key):
                continue
            try:
                store.verify(job.key)
                if job.kind in ("attack", "transform"):
                    gate_stored_advset(store, job)
            except CorruptEntry as exc:
                observer.progress(job.key, 0, 0, f"warning: {exc}; recomputing")
                continue
            except PluginContractError as exc:
                moved = store.quarantine(job.key, str(exc)).moved_to
                observer.progress(job.key, 0, 0, f"warning: {exc}; not trusted, moved to {moved}; recomputing")
                continue
            results[job.key] = JobResult(job.key, job.label, "cached")
            observer.finished(job, results[job.key])
        return results

    @staticmethod
    def _needed(plan: Plan, results: dict[str, JobResult]) -> list[Job]:
        """Every job the store lacks (or held corrupt), in dependency order."""
        return [j for j in plan.jobs.values() if j.key not in results]

    @staticmethod
    def _skip_dependents(plan: Plan, key: str, results: dict[str, JobResult], observer: Observer) -> None:
        for dep_key in plan.dependents(key):
            if dep_key not in results:
                job = plan.jobs[dep_key]
                results[dep_key] = JobResult(dep_key, job.label, "skipped",
                                             error=f"not run: needs {plan.jobs[key].label}, which failed")
                observer.finished(job, results[dep_key])

    def _finish(self, plan: Plan, job: Job, result: JobResult, results: dict[str, JobResult],
                observer: Observer) -> None:
        results[job.key] = result
        observer.finished(job, result)
        if result.status == "failed":
            self._skip_dependents(plan, job.key, results, observer)

    def _run_inline(self, plan: Plan, store: Store, device: str, todo: list[Job], results: dict[str, JobResult],
                    observer: Observer) -> None:
        """Jobs in dependency order; a job another process is computing is put off while other work is ready,
        so concurrent runs on one store share the work instead of queueing behind each other."""
        pending = list(todo)
        while pending:
            ready = [j for j in pending if j.key not in results and all(
                d in results and results[d].status in ("done", "cached") for d in j.deps)]
            pending = [j for j in pending if j.key not in results]  # drop jobs skipped after a failure
            if not ready:
                break
            for i, job in enumerate(ready):
                # the last ready job waits for the lock: nothing else can be done meanwhile
                result = self._run_one(job, store, device, observer, wait=i == len(ready) - 1)
                if result is not None:
                    pending.remove(job)
                    self._finish(plan, job, result, results, observer)
                    break

    @staticmethod
    def _run_one(job: Job, store: Store, device: str, observer: Observer, wait: bool) -> JobResult | None:
        started = time.perf_counter()

        def progress(completed: float, total: float, text: str = "") -> None:
            observer.progress(job.key, completed, total, text)

        try:
            status = compute(job, store, device, progress, wait=wait,
                             on_start=lambda: observer.started(job, device))
        except Exception as exc:  # a failing job fails alone
            return JobResult(job.key, job.label, "failed", time.perf_counter() - started, device,
                             describe_failure(job, exc))
        if status == "busy":
            return None
        return JobResult(job.key, job.label, status, time.perf_counter() - started, device)

    def _run_pool(self, plan: Plan, store: Store, devices: list[str], todo: list[Job],
                  results: dict[str, JobResult], observer: Observer) -> None:
        ctx = mp.get_context("spawn")
        device_queue, events = ctx.Queue(), ctx.Queue()
        for d in devices:
            device_queue.put(d)
        pool = ProcessPoolExecutor(len(devices), mp_context=ctx, initializer=_init_worker,
                                   initargs=(device_queue, events, cpu_threads_per_worker(len(devices))))
        pending = list(todo)
        running: dict[Future, Job] = {}
        try:
            while pending or running:
                for job in list(pending):
                    if job.key in results:
                        pending.remove(job)
                    elif len(running) < len(devices) and all(
                            d in results and results[d].status in ("done", "cached") for d in job.deps):
                        pending.remove(job)
                        running[pool.submit(_run_in_worker, job, str(store.root))] = job
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                self._drain(events, plan, observer)
                for future in done:
                    job = running.pop(future)
                    exc = future.exception()
                    if exc is None:
                        status, device, seconds = future.result()
                        result = JobResult(job.key, job.label, status, seconds, device)
                    else:
                        result = JobResult(job.key, job.label, "failed", error=describe_failure(job, exc))
                    self._finish(plan, job, result, results, observer)
            self._drain(events, plan, observer)
        except BaseException:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    @staticmethod
    def _drain(events: Any, plan: Plan, observer: Observer) -> None:
        while True:
            try:
                kind, key, payload = events.get_nowait()
            except queue.Empty:
                return
            if kind == "started":
                observer.started(plan.jobs[key], payload)
            else:
                observer.progress(key, *payload)


@hookimpl
def rbench_executors():
    return [LocalExecutor()]
