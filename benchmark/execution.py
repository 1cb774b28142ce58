"""One job under the engine's policy, in whatever process an executor runs it.

Every executor computes a job through :func:`compute`, so the policy is the same everywhere: the job runs under
its key's lock; an entry another process stored meanwhile is used only if it passes the same checks as at the
start of a run (else it is quarantined and recomputed); a job time limit is enforced; a failure is described on
one line naming the job and its plugin.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from filelock import Timeout

from rbench.blame import raising_plugin
from rbench.contract import torch_settings_kept
from rbench.devices import reproducible_on
from rbench.gates import InputPending, Unverifiable, check_stored
from rbench.inputs import PluginContractError
from rbench.jobs import run_job
from rbench.model import Progress
from rbench.plan import Job
from rbench.store import CorruptEntry, Store
from rbench.trust import distrust


class JobTimeout(BaseException):
    """A job ran past the job time limit. A BaseException, so plugin code that catches Exception cannot
    swallow it."""


#: seconds after which a job time limit that fell inside an import is tried again
IMPORT_GRACE = 0.05
#: seconds a job time limit waits at most for an import to finish (one that hangs is interrupted after all)
MAX_IMPORT_DEFERRAL = 30.0


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a caller of it runs Python's import machinery (a module's top level being executed)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


class _MainThreadAlarm:
    """SIGALRM sent to the main thread ``delay`` seconds from now, from a timer thread.

    Hand-written because neither the signal module nor threading offers it: ``setitimer`` signals the process,
    and the kernel may hand that signal to any thread not blocking it (a test runner's, a library's); the main
    thread, asleep in a system call, then slept on past the limit, its handler run only when the call returned.
    """

    def __init__(self) -> None:
        self._timer: threading.Timer | None = None
        self._main = threading.main_thread().ident

    def set(self, delay: float) -> None:
        self.cancel()
        assert self._main is not None
        self._timer = threading.Timer(delay, signal.pthread_kill, (self._main, signal.SIGALRM))
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        """Stop the timer; once this returns, no signal of it is still to be sent."""
        if self._timer is not None:  # called in the main thread only (the timer thread only sends the signal)
            self._timer.cancel()
            self._timer.join()
            self._timer = None


@contextlib.contextmanager
def time_limit(seconds: float | None, job: Job) -> Iterator[None]:
    """Raise :class:`JobTimeout` in this thread once ``seconds`` have passed inside the block (SIGALRM sent to
    this thread; only in a process's main thread, elsewhere the executor's own deadline applies). None: no
    limit."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    deferred = 0.0
    over = False
    alarm = _MainThreadAlarm()

    def expire(signum: int, frame: FrameType | None) -> None:
        nonlocal deferred
        if over:  # sent as the block ended
            return
        # raised inside an import, it left a half-initialised module in sys.modules and the worker's next job
        # failed on it: raised once the import ends, unless it has not ended within MAX_IMPORT_DEFERRAL
        if _importing(frame) and deferred < MAX_IMPORT_DEFERRAL:
            deferred += IMPORT_GRACE
            alarm.set(IMPORT_GRACE)
            return
        raise JobTimeout(f"exceeded the job time limit of {seconds:g} s"
                         + (" (inside an import)" if deferred >= MAX_IMPORT_DEFERRAL else ""))

    previous = signal.signal(signal.SIGALRM, expire)
    try:  # the alarm may go off while its own timer thread starts (a thread switch can take 5 ms), or as the block
        try:  # ends: the handler is put back whatever happens
            alarm.set(seconds)
            yield
        finally:
            over = True
    finally:
        alarm.cancel()
        signal.signal(signal.SIGALRM, previous)


def compute(job: Job, store: Store, device: str, progress: Progress, *, wait: bool = True,
            on_start: Callable[[], None] | None = None, timeout: float | None = None,
            warn: Callable[[str], None] | None = None) -> Literal["done", "cached", "busy"]:
    """Compute ``job`` under its lock unless another process stored it meanwhile (and it passes the gates):
    ``done`` or ``cached``. With ``wait=False``, return ``busy`` at once if another process holds the lock.
    ``on_start()`` is called once the job really starts computing; ``timeout`` limits its seconds; ``warn(text)``
    hears of a stored entry found failing its checks (quarantined, then recomputed), as the runner's own check
    reports one."""
    try:
        with store.lock(job.key).acquire(timeout=-1 if wait else 0):
            if store.has(job.key):
                try:
                    check_stored(store, job)
                    return "cached"
                except (InputPending, Unverifiable):
                    pass  # an input is gone (an executor runs inputs first: computing the job reports it), or the
                    # entry cannot be tied to its inputs: computed again, replacing it
                except (CorruptEntry, PluginContractError) as exc:
                    note = distrust(store, job, exc)
                    if warn is not None:
                        warn(note)
            if on_start is not None:
                on_start()
            with reproducible_on(device), time_limit(timeout, job), torch_settings_kept() as changed:
                run_job(job, store, device, progress)
            if changed:  # put back for the worker's next jobs; the result itself passed every check
                note = f"{job.label} [{job.plugin}] changed torch's process-wide settings ({', '.join(changed)}): " \
                       "put back; a plugin leaves them as it found them"
                if warn is not None:
                    warn(note)
                else:
                    warnings.warn(note, RuntimeWarning, stacklevel=2)
            return "done"
    except Timeout:
        return "busy"


def compute_or_fail(job: Job, store: Store, device: str, progress: Progress, **options: Any
                    ) -> tuple[Literal["done", "cached", "busy", "failed"], str | None]:
    """:func:`compute` (``options`` are its keywords), with a failing job failing alone: ``(status, error)``,
    the error (:func:`describe_failure`) only for ``failed``. Every executor runs a job through this."""
    try:
        return compute(job, store, device, progress, **options), None
    except SystemExit as exc:  # a plugin's sys.exit() ended the whole run, exit 3, nothing said
        if getattr(exc, "ray_terminate_msg", None) is not None:
            raise  # Ray stopping its worker (SIGTERM: a node drained or scaled down): it dies and Ray retries the job
        return "failed", describe_failure(job, exc)
    except (Exception, JobTimeout) as exc:
        return "failed", describe_failure(job, exc)


#: seconds a worker (a process, a Ray task) gets to end after it is asked to stop, before it is killed
STOP_GRACE = 3.0


def hard_deadline(timeout: float) -> float:
    """How long after its start a job is ended by killing its worker (its SIGALRM comes at ``timeout``): for a job
    stuck outside Python, where no signal handler runs."""
    return timeout + max(5.0, 0.1 * timeout)


def stuck_failure(job: Job, timeout: float, killed: str) -> str:
    """The error of a job ended at :func:`hard_deadline`; ``killed``: what was killed (``its worker process``)."""
    return (f"{job.label} [{job.plugin}]: JobTimeout: exceeded the job time limit of {timeout:g} s (stuck outside "
            f"Python: {killed} was killed)")


def code_place(exc: BaseException) -> str | None:
    """Where ``exc`` was raised, as a failure line names it: ``rbench/defense.py:165``, ``torch/nn/functional.py:12``,
    ``my_plugin/attack.py:40``: the raising module's dotted name as a path (a bare ``defense.py`` read as a line of
    the user's own plugin when it was rbench's); the file's name where the module has none or another than its
    path says (a user's checkpoint file, ``__main__``). None without a traceback."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename, module = tb.tb_frame.f_code.co_filename, tb.tb_frame.f_globals.get("__name__")
    name = Path(filename).name
    if isinstance(module, str) and module and name.endswith(".py"):
        dotted = f"{module.replace('.', '/')}{'/__init__.py' if name == '__init__.py' else '.py'}"
        # rbench's own files under their import path (the checkout maps benchmark/ to rbench/); another module
        # only where its name is its file's path (a checkpoint's file runs under a generated module name)
        own = module == "rbench" or module.startswith("rbench.")
        if own or Path(filename).as_posix().endswith("/" + dotted):
            return f"{dotted}:{tb.tb_lineno}"
    return f"{name}:{tb.tb_lineno}"


def describe_failure(job: Job, exc: BaseException) -> str:
    """One line: the job, the plugin at fault (the one a contract violation names; else the one whose code raised
    the error, :func:`rbench.blame.raising_plugin`, such as a defense in front of the attacked model, with the
    job's own beside it where a library raised inside that code, ``[model 'mlp', called by attack 'x']``; else the
    job's own), the error, and where in the code it was raised."""
    where = code_place(exc)
    at = f" at {where}" if where and not isinstance(exc, JobTimeout) else ""
    text = " ".join(str(exc).split())
    if isinstance(exc, PluginContractError) and exc.plugin:
        plugin = exc.plugin
    elif isinstance(exc, JobTimeout):  # wherever the alarm happened to land: the job as a whole ran too long
        plugin = job.plugin
    else:
        raised = _raising_plugin(exc)
        plugin = job.plugin if raised is None else raised[0] if raised[1] or raised[0] == job.plugin else \
            f"{raised[0]}, called by {job.plugin}"
    return f"{job.label} [{plugin}]: {type(exc).__name__}: {text}{at}"


def _raising_plugin(exc: BaseException) -> tuple[str, bool] | None:
    """:func:`rbench.blame.raising_plugin`, or None should reading the traceback itself fail: describing a failure
    must not fail."""
    try:
        return raising_plugin(exc)
    except Exception:
        return None
