"""``handlers_kept``: while foreign code runs (``ray.init``), the run's stop handlers stay in place; with ``hold`` a
first stop signal waits for the block to end, a second one stops at once."""

from __future__ import annotations

import signal

import pytest

from rbench.interrupt import Terminated, handlers_kept, stop_on_signals


def _foreign(signum: int, frame: object) -> None:  # what ray.init would install: exits where it is
    raise SystemExit(signum)


def test_foreign_code_cannot_replace_the_run_s_handlers_and_a_signal_stops_at_once_without_hold():
    real = signal.signal
    with pytest.raises(Terminated), stop_on_signals():  # caught inside, so raised again as the block ends
        mine = signal.getsignal(signal.SIGTERM)
        reached = []
        with pytest.raises(Terminated) as stopped:
            with handlers_kept(hold=False):
                assert signal.signal(signal.SIGTERM, _foreign) is mine  # said, not done
                assert signal.getsignal(signal.SIGTERM) is not _foreign
                signal.raise_signal(signal.SIGTERM)
                reached.append("after the signal")
        assert stopped.value.signum == signal.SIGTERM and not reached
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # as the run's handler left it, unwinding
    assert signal.signal is real  # the real function is back


def test_with_hold_a_first_signal_waits_for_the_block_and_then_reaches_the_run_s_handler():
    with pytest.raises(Terminated), stop_on_signals():
        mine = signal.getsignal(signal.SIGTERM)
        reached = []
        with pytest.raises(Terminated):
            with handlers_kept(hold=True):
                signal.signal(signal.SIGTERM, _foreign)
                signal.raise_signal(signal.SIGTERM)
                reached.append("after the signal")
            reached.append("after the block")
        assert reached == ["after the signal"]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # the run's handler ran, and left it so
        assert mine is not signal.SIG_IGN


@pytest.fixture
def python_s_sigint():
    """SIGINT as Python installs it at start: a process started with SIGINT ignored (a job a non-interactive shell
    put in the background, as ``make test &``) keeps it ignored, and no KeyboardInterrupt ever comes."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_with_hold_the_stop_replaces_an_error_of_the_block_and_a_second_signal_stops_at_once(python_s_sigint):
    with pytest.raises(KeyboardInterrupt):
        with handlers_kept(hold=True):
            signal.raise_signal(signal.SIGINT)
            raise RuntimeError("ray.init failed")
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with handlers_kept(hold=True):
            signal.raise_signal(signal.SIGINT)
            reached.append("held")
            signal.raise_signal(signal.SIGINT)
            reached.append("not reached")
    assert reached == ["held"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_a_signal_nothing_changes():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with handlers_kept(hold=True):
        signal.signal(signal.SIGHUP, _foreign)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # other signals are the foreign code's to set
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_signal_ignored_before_the_block_is_ignored_in_it_and_takes_nothing_from_the_hold():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a script's background job
    try:
        with pytest.raises(Terminated), stop_on_signals():
            reached = []
            with pytest.raises(Terminated):
                with handlers_kept(hold=True):
                    signal.raise_signal(signal.SIGINT)
                    reached.append("after the ignored SIGINT")
                    signal.raise_signal(signal.SIGTERM)
                    reached.append("after SIGTERM: held")
                    signal.signal(signal.SIGTERM, _foreign)
            assert reached == ["after the ignored SIGINT", "after SIGTERM: held"]
        with handlers_kept(hold=False):
            signal.raise_signal(signal.SIGINT)
            signal.signal(signal.SIGTERM, _foreign)  # still guarded after an ignored signal
        assert signal.getsignal(signal.SIGTERM) is not _foreign
    finally:
        signal.signal(signal.SIGINT, previous)


class _StopsWhenCollected:
    """Raises ``signum`` from its ``__del__``, where Python prints the exception as ignored and drops it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        signal.raise_signal(self.signum)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped exception, expected
@pytest.mark.parametrize("signum, stop", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_stop_swallowed_inside_the_block_is_raised_again_as_it_ends(python_s_sigint, signum, stop):
    """A Ctrl-C that landed in a file lock's ``__del__`` was dropped and the run went on to end 0; the stop now
    comes when the block ends, and it is the signal's."""
    reached = []
    with pytest.raises(stop):
        with stop_on_signals():
            _StopsWhenCollected(signum)  # collected at once (reference counting): its __del__ runs here
            reached.append("went on")
    assert reached == ["went on"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_a_stop_the_block_ends_as_it_would(python_s_sigint):
    with stop_on_signals():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # watched
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped exception, expected
def test_a_swallowed_stop_ends_the_run_before_its_next_job_starts(python_s_sigint):
    """The executors' scheduler raises a swallowed stop before it hands out the next job, so a long run stops at
    once rather than computing everything first; without a signal it hands jobs out as ever."""
    from types import SimpleNamespace

    from rbench.executors import JobResult, Scheduler
    from rbench.plan import Job, Plan

    def scheduler() -> Scheduler:
        jobs = [Job(k, "train", SimpleNamespace(kind="train"), (), k) for k in "abc"]  # type: ignore[arg-type]
        return Scheduler(Plan(suite=None, jobs={j.key: j for j in jobs}), jobs, SimpleNamespace(  # type: ignore
            finished=lambda job, result: None))

    started = []
    s = scheduler()
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signals():
            while s.ready():
                job = s.ready()[0]
                s.take(job)
                started.append(job.key)
                if job.key == "a":
                    _StopsWhenCollected(signal.SIGINT)
                s.finish(job, JobResult(job.key, job.label, "done"))
    assert started == ["a"]
    s = scheduler()
    with stop_on_signals():
        for job in s.ready():
            s.take(job)
    assert not s.ready()
