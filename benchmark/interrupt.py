"""Stopping a run from outside: SIGTERM and SIGHUP stop it as cleanly as Ctrl-C.

Inside :func:`stop_on_signals`, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread, exactly where
Ctrl-C raises KeyboardInterrupt, so the same unwinding runs: workers are stopped, the temporary file being
written is deleted, locks are released, and the next run resumes from what was stored.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """The process was asked to stop by ``signum`` (a BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` in a job swallows it)."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` inside the block (a repeated signal is ignored while the
    run unwinds); the previous handlers come back afterwards."""

    def stop(signum: int, frame: object) -> None:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, stop) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
