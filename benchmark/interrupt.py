"""Stopping a run from outside: SIGTERM and SIGHUP stop it as cleanly as Ctrl-C.

Inside :func:`stop_on_signals`, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread, exactly where
Ctrl-C raises KeyboardInterrupt, so the same unwinding runs: workers are stopped, the temporary file being
written is deleted, locks are released, and the next run resumes from what was stored.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """The process was asked to stop by ``signum`` (a BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` in a job swallows it)."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")


#: the stop signals :func:`stop_on_signals` received whose exception may have been swallowed (cleared as the block
#: ends, and when :func:`raise_swallowed_stop` raises one again)
_received: list[int] = []


def _stop_exception(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def raise_swallowed_stop() -> None:
    """Inside :func:`stop_on_signals`, in code that runs only while no stop is under way (a scheduler handing out
    the next job): raise the stop of a signal whose exception was swallowed. A Ctrl-C landing while a ``__del__``
    runs (a file lock's, seen in a test run) is printed as "Exception ignored" and dropped, and the run went on to
    end 0; so is one caught by a library's ``except BaseException``."""
    if _received:
        signum = _received[0]
        _received.clear()
        raise _stop_exception(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` inside the block (a repeated signal is ignored while the
    run unwinds); the previous handlers come back afterwards. A stop whose exception was swallowed is raised again
    at the next job boundary (:func:`raise_swallowed_stop`), or as the block ends, so the command still stops with
    its exit code. Ctrl-C is watched only where it raises KeyboardInterrupt (not where it is ignored, as in a
    shell's background job)."""

    def stop(signum: int, frame: object) -> None:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        _received.append(signum)
        raise Terminated(signum)

    def interrupt(signum: int, frame: Any) -> None:
        _received.append(signum)
        signal.default_int_handler(signum, frame)

    _received.clear()
    previous = {sig: signal.signal(sig, stop) for sig in SIGNALS}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        swallowed = list(_received)
        _received.clear()
    if swallowed:  # the block ended normally after a stop signal: its exception was swallowed on the way
        raise _stop_exception(swallowed[0])


#: the signals that stop a run: Ctrl-C's and :data:`SIGNALS`
STOP_SIGNALS = (signal.SIGINT, *SIGNALS)


@contextlib.contextmanager
def handlers_kept(*, hold: bool) -> Iterator[None]:
    """Inside the block (main thread only), foreign code cannot replace the handlers of :data:`STOP_SIGNALS`: its
    calls of ``signal.signal`` for them do nothing (``ray.init`` sets a SIGTERM handler that exits the process
    wherever it is, mid-start). With ``hold``, the first stop signal is held until the block has finished and is
    then delivered to the handler in place before it, so that the run stops as it would have a moment later (a
    start cut short leaves processes that nothing stops); a second one is delivered at once. A signal ignored
    before the block (SIG_IGN) stays ignored in it.

    Hand-written: Python has no way to defer signals around a call, and Ray's own deferral (SIGINT only) is
    private. ``signal.signal`` is replaced for the block's duration, as Ray's deferral does."""
    real = signal.signal
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    held: list[int] = []
    guarding = True

    def unguard() -> None:  # once: the run's handler may change them as it runs (stop_on_signals ignores repeats)
        nonlocal guarding
        if guarding:
            guarding = False
            try:
                for sig, handler in previous.items():
                    real(sig, signal.SIG_DFL if handler is None else handler)  # None: not set from Python
            finally:
                signal.signal = real

    def deliver(signum: int, frame: Any) -> None:  # as the handler before the block would have
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        elif handler is not signal.SIG_IGN:  # the default action (ends the process), as without the block
            signal.raise_signal(signum)

    def caught(signum: int, frame: Any) -> None:
        if previous[signum] is signal.SIG_IGN:  # ignored before the block, ignored in it
            return
        if hold and guarding and not held:
            held.append(signum)
            return
        unguard()  # the stop begins now, under the run's handler
        deliver(signum, frame)

    def guarded(signum: int, handler: Any) -> Any:
        if signum in previous:
            return previous[signum]
        return real(signum, handler)

    for sig in STOP_SIGNALS:
        real(sig, caught)
    signal.signal = guarded  # type: ignore[assignment]
    try:
        yield
    finally:
        unguard()
        if held:  # its handler runs here, and its exception (the stop) replaces any other
            deliver(held[0], None)
