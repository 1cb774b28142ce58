"""Which stored outputs a run may use: the runner's trust policy, the same whatever executor computes the rest.

A stored entry of the plan is used (reported ``cached``) only when it passes every check of
:func:`rbench.gates.check_stored`: bound to its job's key, checksum, well formed, finite, and the validity gate
against the job itself. One that fails is quarantined, reported once (with its key and the reason), and
computed again. An entry whose lock another process holds is being written right now: it is left to
:func:`rbench.execution.compute`, which waits for the lock and checks the entry then.
"""

from __future__ import annotations

from rbench.executors import JobResult, Observer
from rbench.gates import check_stored
from rbench.inputs import PluginContractError
from rbench.plan import Job, Plan
from rbench.store import CorruptEntry, EntryMissing, Store


def stored_jobs(plan: Plan, store: Store) -> list[Job]:
    """The jobs of ``plan`` whose output is in the store (not yet checked: :func:`trusted_results` checks them;
    ``rbench run --dry-run`` counts them without touching the store)."""
    return [job for job in plan.jobs.values() if store.has(job.key)]


def trusted_results(plan: Plan, store: Store, observer: Observer) -> dict[str, JobResult]:
    """A ``cached`` result for every job of ``plan`` whose stored output can be trusted."""
    results: dict[str, JobResult] = {}
    for job in stored_jobs(plan, store):
        with store.try_lock(job.key) as free:
            if not free:
                continue
            try:
                check_stored(store, job)
            except EntryMissing:
                continue
            except CorruptEntry as exc:
                observer.warning(f"{exc}; recomputing", job)
                continue
            except PluginContractError as exc:
                moved = store.quarantine(job.key, str(exc)).moved_to
                observer.warning(f"{exc}; not trusted, moved to {moved}; recomputing", job)
                continue
        results[job.key] = JobResult(job.key, job.label, "cached")
        observer.finished(job, results[job.key])
    return results
