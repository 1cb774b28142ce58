"""The local executor: jobs in this process, or in worker processes (one per device, or ``--workers``).

One worker and no job time limit: jobs run in this process, in dependency order. Otherwise jobs run in spawned
worker processes (CUDA needs ``spawn``), each pinned to one device; a job is dispatched as soon as its inputs
are stored. Every job goes through :func:`rbench.execution.compute` (its key's lock, re-check, time limit).

Stopping: workers ignore SIGINT; on Ctrl-C, SIGTERM or SIGHUP the coordinator sends every worker SIGTERM, on
which a worker deletes the temporary file it is writing and exits at once (SIGKILL after a grace period if
it does not), so no process outlives the run and nothing partial is left. A worker whose coordinator died
(SIGKILL) notices within a second and exits the same way. A job that runs past the time limit is stopped by
SIGALRM inside its worker, or, if it is stuck in native code, by killing the worker, which is replaced.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

from rbench import hookimpl
from rbench.devices import cpu_threads_per_worker
from rbench.execution import STOP_GRACE, compute_or_fail, hard_deadline, stuck_failure
from rbench.executors import Executor, JobResult, Observer, Scheduler
from rbench.plan import Job, Plan
from rbench.store import Store, remove_partial_writes


# -- worker process side -------------------------------------------------------------------------------
def _stop_worker(signum: int, frame: Any) -> None:
    remove_partial_writes()
    os._exit(128 + signum)


def _exit_with_parent(parent: int) -> None:
    """A thread that ends this worker once its coordinator is gone (the worker is re-parented)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        _stop_worker(signal.SIGTERM, None)

    threading.Thread(target=watch, daemon=True, name="rbench-parent-watch").start()


def _worker_main(conn: Connection, device: str, threads: int, store_root: str, timeout: float | None,
                 parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_worker)
    _exit_with_parent(parent)
    torch.set_num_threads(threads)
    store = Store(store_root)
    try:
        _serve(conn, device, store, timeout)
    except (EOFError, OSError):  # the coordinator is gone (killed outright: a reset pipe): nobody to report to
        return


def _serve(conn: Connection, device: str, store: Store, timeout: float | None) -> None:
    """Compute the jobs the coordinator sends until it sends None, reporting on ``conn``."""
    while True:
        job = conn.recv()
        if job is None:
            return
        started = time.perf_counter()

        def progress(completed: float, total: float, text: str = "", key: str = job.key) -> None:
            conn.send(("progress", key, (completed, total, text)))

        def on_start(key: str = job.key) -> None:
            conn.send(("started", key, device))

        def warn(text: str, key: str = job.key) -> None:
            conn.send(("warning", key, text))

        status, error = compute_or_fail(job, store, device, progress, on_start=on_start, timeout=timeout, warn=warn)
        conn.send(("finished", job.key, (status, time.perf_counter() - started, error)))


# -- coordinator side ----------------------------------------------------------------------------------
class _Worker:
    """A worker process, the pipe to it, and the job it runs (if any)."""

    def __init__(self, ctx: Any, device: str, threads: int, store_root: str, timeout: float | None):
        self.device = device
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, device, threads, store_root, timeout,
                                                              os.getpid()), name=f"rbench-{device}")
        self.process.start()
        child.close()
        self.job: Job | None = None
        self.started: float | None = None  # when its job really started computing

    def send(self, job: Job) -> None:
        self.job, self.started = job, None
        self.conn.send(job)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within :data:`STOP_GRACE` seconds."""
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(STOP_GRACE)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(STOP_GRACE)
        self.conn.close()


class LocalExecutor(Executor):
    name = "local"

    def run(self, plan: Plan, store: Store, jobs: list[Job], *, devices: list[str], workers: int,
            observer: Observer, job_timeout: float | None = None, params: Any = None) -> dict[str, JobResult]:
        # params: NoParams (the local executor takes no options)
        scheduler = Scheduler(plan, jobs, observer)
        if workers == 1 and job_timeout is None:
            self._run_inline(scheduler, store, devices[0], observer)
        else:  # a time limit needs jobs in processes that can be ended
            self._run_workers(scheduler, store, devices, observer, job_timeout)
        return scheduler.results

    def _run_inline(self, scheduler: Scheduler, store: Store, device: str, observer: Observer) -> None:
        """Jobs in dependency order; a job another process is computing is put off while other work is ready,
        so concurrent runs on one store share the work instead of queueing behind each other."""
        while not scheduler.finished:
            ready = scheduler.ready()
            if not ready:
                return
            for i, job in enumerate(ready):
                # the last ready job waits for the lock: nothing else can be done meanwhile
                result = self._run_one(job, store, device, observer, wait=i == len(ready) - 1)
                if result is not None:
                    scheduler.take(job)
                    scheduler.finish(job, result)
                    break

    @staticmethod
    def _run_one(job: Job, store: Store, device: str, observer: Observer, wait: bool) -> JobResult | None:
        started = time.perf_counter()

        def progress(completed: float, total: float, text: str = "") -> None:
            observer.progress(job.key, completed, total, text)

        status, error = compute_or_fail(job, store, device, progress, wait=wait,
                                        on_start=lambda: observer.started(job, device),
                                        warn=lambda text: observer.warning(text, job))
        if status == "busy":
            return None
        return JobResult(job.key, job.label, status, time.perf_counter() - started, device, error)

    def _run_workers(self, scheduler: Scheduler, store: Store, devices: list[str], observer: Observer,
                     timeout: float | None) -> None:
        ctx = mp.get_context("spawn")
        threads = cpu_threads_per_worker(len(devices))

        def start(device: str) -> _Worker:
            return _Worker(ctx, device, threads, str(store.root), timeout)

        pool = [start(d) for d in devices]
        try:
            while not scheduler.finished:
                for worker in pool:
                    ready = scheduler.ready() if worker.job is None else []
                    if ready:
                        scheduler.take(ready[0])
                        worker.send(ready[0])
                busy = [w for w in pool if w.job is not None]
                if not busy:
                    return  # nothing runs and nothing is ready: the rest was skipped
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=0.2)
                for i, worker in enumerate(pool):
                    if worker.job is not None:
                        pool[i] = self._tend(worker, scheduler, observer, timeout, start)
        except BaseException:
            for worker in pool:
                worker.stop()
            raise
        for worker in pool:
            try:
                worker.conn.send(None)
            except OSError:
                pass
            worker.process.join(STOP_GRACE)
            worker.stop()

    @staticmethod
    def _tend(worker: _Worker, scheduler: Scheduler, observer: Observer, timeout: float | None,
              start: Any) -> _Worker:
        """Read ``worker``'s messages; end its job if it died or ran past the hard deadline (the worker is then
        replaced, and the replacement returned)."""
        job = worker.job
        assert job is not None
        try:
            while worker.conn.poll():
                kind, key, payload = worker.conn.recv()
                if kind == "started":
                    worker.started = time.monotonic()
                    observer.started(job, payload)
                elif kind == "progress":
                    observer.progress(key, *payload)
                elif kind == "warning":
                    observer.warning(payload, job)
                else:
                    status, seconds, error = payload
                    worker.job = None
                    scheduler.finish(job, JobResult(key, job.label, status, seconds, worker.device, error))
                    return worker
        except (EOFError, OSError):
            pass  # the worker died: handled below
        if not worker.process.is_alive():
            code = worker.process.exitcode
            why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            error = f"{job.label} [{job.plugin}]: its worker process died ({why})"
        elif timeout is not None and worker.started is not None and \
                time.monotonic() - worker.started > hard_deadline(timeout):
            error = stuck_failure(job, timeout, "its worker process")
        else:
            return worker
        worker.stop()
        scheduler.finish(job, JobResult(job.key, job.label, "failed", device=worker.device, error=error))
        return start(worker.device)


@hookimpl
def rbench_executors() -> list[Executor]:
    return [LocalExecutor()]
