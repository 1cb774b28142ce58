"""Which stored outputs a run may use: the runner's trust policy, the same whatever executor computes the rest.

A stored entry of the plan is used (reported ``cached``) only when it passes every check of
:func:`rbench.gates.check_stored`: bound to its job's key, checksum, well formed, finite, and the validity gate
against the job itself. One that fails is quarantined, reported once (with its key and the reason), and
computed again. An entry whose lock another process holds is being written right now: it is left to
:func:`rbench.execution.compute`, which waits for the lock and checks the entry then.

An entry whose file is byte for byte one that passed every check of its job (:func:`rbench.gates.verified_copy`)
is used without taking its lock: files are only ever replaced whole (renamed into place), so the bytes hashed are
a complete entry, and the run's lease keeps gc from deleting it. Taking and releasing a lock costs about as much
as that whole check.
"""

from __future__ import annotations

from rbench.executors import JobResult, Observer
from rbench.gates import check_stored, verified_copy
from rbench.inputs import PluginContractError
from rbench.plan import Job, Plan
from rbench.store import CorruptEntry, EntryMissing, Store, StoreReadError


def stored_jobs(plan: Plan, store: Store) -> list[Job]:
    """The jobs of ``plan`` whose output is in the store (not yet checked: :func:`trusted_results` checks them;
    ``rbench run --dry-run`` counts them without touching the store)."""
    return [job for job in plan.jobs.values() if store.has(job.key)]


def trusted_results(plan: Plan, store: Store, observer: Observer) -> dict[str, JobResult]:
    """A ``cached`` result for every job of ``plan`` whose stored output can be trusted: it passes its checks and
    so does every job it depends on. A job with an input not trusted here (missing, busy, or failing its checks:
    quarantined, to be recomputed) is left to the executor, after that input: :func:`rbench.execution.compute`
    judges its stored entry then, against the input as stored by that time (:func:`rbench.gates.check_inputs`;
    one made from the failed input is stale)."""
    results: dict[str, JobResult] = {}
    for job in stored_jobs(plan, store):  # the plan's order: every job after the jobs it depends on
        if not all(dep in results for dep in job.deps):
            continue
        if verified_copy(store, job) or _passes_under_lock(store, job, observer):
            results[job.key] = JobResult(job.key, job.label, "cached")
            observer.finished(job, results[job.key])
    return results


def _passes_under_lock(store: Store, job: Job, observer: Observer) -> bool:
    """Check ``job``'s stored entry under its lock (False: busy, gone, or failed, quarantined and reported)."""
    with store.try_lock(job.key) as free:
        if not free:
            return False
        try:
            check_stored(store, job)
        except EntryMissing:
            return False
        except (CorruptEntry, PluginContractError) as exc:
            observer.warning(distrust(store, job, exc), job)
            return False
        except StoreReadError as exc:  # the machine's failure: the entry stays; the job meets it again, or not
            observer.warning(str(exc), job)
            return False
    return True


def distrust(store: Store, job: Job, exc: CorruptEntry | PluginContractError, then: str = "recomputing") -> str:
    """The warning for ``job``'s stored entry that failed a check: the store quarantined it already when its own
    checks failed (``CorruptEntry``); one the job's contract refused is quarantined here. ``then``: what follows."""
    if isinstance(exc, CorruptEntry):
        return f"{exc}; {then}"
    return f"{exc}; not trusted, {store.quarantine(job.key, str(exc)).where}; {then}"


def checked_reports(plan: Plan, store: Store, reported: dict[str, JobResult], observer: Observer
                    ) -> dict[str, JobResult]:
    """``reported`` (an executor's results), every job it says is ``done`` checked as a stored entry is
    (:func:`rbench.gates.check_stored`, under the job's lock), so that no executor gets an unchecked output into
    a table: one written without :func:`rbench.execution.compute` (whose lock, re-check and gates it skipped) that
    fails is quarantined and its job failed, naming the problem; a job made from such an output is skipped (the
    observers, told it was done, hear a warning of each). Sets and predictions
    :func:`~rbench.execution.compute` made pass from their gate memo (each file hashed once); a checkpoint, which
    has no memo, is read again and its network built (on the CPU). One the driver does not see (a cluster's shared
    filesystem may lag) or cannot read stays done: the tables read every output, and one missing makes its cells
    errors. A failed job's incomplete entry (weights whose writer was killed before their sidecar) is removed."""
    out = dict(reported)
    failed: set[str] = set()
    for job in plan.jobs.values():  # the plan's order: every job after its inputs
        result = out.get(job.key)
        if result is not None and result.status == "failed":
            store.discard_incomplete(job.key)  # what a writer killed mid-entry left (its worker died)
        if result is None or result.status != "done":
            continue
        bad_input = next((dep for dep in job.deps if dep in failed), None)
        if bad_input is not None:
            error = f"{job.label}: its input {plan.jobs[bad_input].label!r} failed its checks"
            observer.warning(f"{error}: not used", job)
            out[job.key] = JobResult(job.key, job.label, "skipped", result.seconds, result.device, error)
            failed.add(job.key)
            continue
        with store.lock(job.key):
            try:
                check_stored(store, job)
            except EntryMissing:
                continue
            except (CorruptEntry, PluginContractError) as exc:
                error = distrust(store, job, exc, "its job failed")
            except StoreReadError as exc:  # the machine's failure: the entry stays
                observer.warning(str(exc), job)
                continue
            else:
                continue
        observer.warning(error, job)
        out[job.key] = JobResult(job.key, job.label, "failed", result.seconds, result.device, f"{job.label}: {error}")
        failed.add(job.key)
    return out

