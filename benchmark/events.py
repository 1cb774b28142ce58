"""Run events: the observer an executor reports to, relayed to the observer hooks of every registered plugin.

The runner hands an executor a :class:`RunEvents`; every ``started`` / ``progress`` / ``finished`` / ``warning``
call becomes a call of the hooks ``rbench_job_started``, ``rbench_job_progress``, ``rbench_job_finished`` and
``rbench_warning`` (see :mod:`rbench.hookspecs`). Which plugins hear them is pluggy's business: a third-party
plugin implements the hooks, and the rich progress display (:class:`rbench.progress.RunProgress`) is registered
for the length of a run by :func:`listening`, the way pytest's terminal reporter is one implementer of pytest's
hooks. So no executor and no display can skip or reorder what the others are told.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rbench.executors import JobResult
from rbench.manager import get_registry, hook
from rbench.plan import Job


class RunEvents:
    """The :class:`rbench.executors.Observer` of a run: each call fires the matching hook."""

    def started(self, job: Job, device: str) -> None:
        hook().rbench_job_started(job=job, device=device)

    def progress(self, key: str, completed: float, total: float, text: str) -> None:
        hook().rbench_job_progress(key=key, completed=completed, total=total, text=text)

    def finished(self, job: Job, result: JobResult) -> None:
        hook().rbench_job_finished(job=job, result=result)

    def warning(self, message: str, job: Job | None = None) -> None:
        hook().rbench_warning(message=message, job=job)


@contextlib.contextmanager
def listening(listener: object) -> Iterator[object]:
    """Register ``listener`` (an object with ``@rbench.hookimpl`` methods) for the observer hooks while the
    block runs."""
    manager = get_registry().manager
    assert manager is not None
    manager.register(listener)
    try:
        yield listener
    finally:
        manager.unregister(listener)
