"""Stopping a run: SIGTERM and SIGHUP stop it as cleanly as Ctrl-C (no process of the run outlives it, nothing
partial stays, the next run resumes); a coordinator killed outright takes its workers with it; a job time limit
ends a hanging job alone."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time

import pytest
from support import RBENCH, alive, descendants, plugin_dist, rbench, run_values

from rbench.store import Store

pytestmark = pytest.mark.slow


def _start(suite, store, run_dir, *extra, env=None):
    import os

    return subprocess.Popen([RBENCH, "run", str(suite), "--store", str(store), "--run-dir", str(run_dir), "-q",
                             "--device", "cpu", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.parametrize("sig, workers", [(signal.SIGTERM, 2), pytest.param(signal.SIGHUP, 2, marks=pytest.mark.full),
                                          pytest.param(signal.SIGTERM, 1, marks=pytest.mark.full)])
def test_a_signal_stops_the_run_and_every_worker(tiny_reference, tmp_path, sig, workers):
    suite, _, _, expected = tiny_reference
    store = tmp_path / "store"
    proc = _start(suite, store, tmp_path / "r1", "--workers", str(workers))
    # running: the first checkpoint is stored and (with two workers) both workers are up
    _wait_for(lambda: list(store.glob("objects/*/*.json")) and (workers == 1 or len(descendants(proc.pid)) >= 2))
    family = descendants(proc.pid)
    proc.send_signal(sig)  # to the coordinator only, as `kill PID` does
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert f"stopped by {signal.Signals(sig).name}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    deadline = time.monotonic() + 10
    while any(alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in family if alive(p)], "processes of the run outlived it"
    assert not Store(store).temporaries()  # nothing partial stays
    again = rbench("run", str(suite), "--store", str(store), "--run-dir", str(tmp_path / "r2"), "-q", "--device",
                   "cpu")
    assert again.returncode == 0, again.stderr
    assert run_values(tmp_path / "r2") == expected


def test_workers_end_when_their_coordinator_is_killed(tiny_reference, tmp_path):
    suite = tiny_reference[0]
    store = tmp_path / "store"
    proc = _start(suite, store, tmp_path / "r1", "--workers", "2")
    _wait_for(lambda: len(descendants(proc.pid)) >= 2 and list(store.glob("objects/*/*.json")))
    family = descendants(proc.pid)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in family if alive(p)], "orphaned workers"


def test_a_worker_whose_coordinator_is_gone_ends_quietly(tmp_path):
    """The signal audit: after the coordinator was killed outright, an idle worker printed a multiprocessing
    traceback (a reset pipe is ConnectionResetError, not the EOFError the worker caught)."""
    import os
    import sys

    script = ("import os\n"
              "from rbench.executors.local import _worker_main\n"
              "class Reset:\n"
              "    def recv(self):\n"
              "        raise ConnectionResetError(104, 'Connection reset by peer')\n"
              f"_worker_main(Reset(), 'cpu', 1, {str(tmp_path / 'store')!r}, None, os.getppid())\n"
              "print('returned')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0 and out.stdout == "returned\n" and not out.stderr, out.stderr


HANGING = '''
import signal
import time

from pydantic import BaseModel, ConfigDict

from rbench import hookimpl
from rbench.attack import MinimizationAttack


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sleepy(MinimizationAttack):
    """Hangs in Python (time.sleep): SIGALRM ends it."""

    name = "sleepy"
    Params = Params

    def run(self, model, x, y, params, *, generator=None):
        time.sleep(3600)


class Stuck(Sleepy):
    """Hangs as code stuck in a native library does: the signals that would end it never reach Python (here
    they are blocked), so only killing its process ends it."""

    name = "stuck"

    def run(self, model, x, y, params, *, generator=None):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
        time.sleep(3600)


@hookimpl
def rbench_attacks():
    return [Sleepy(), Stuck()]
'''


def test_a_job_time_limit_ends_hanging_jobs_alone(tiny_reference, tmp_path):
    suite, store, _, expected = tiny_reference
    import shutil

    shutil.copytree(store, tmp_path / "store")
    env = plugin_dist(tmp_path / "plugins", "rbench_test_hang", HANGING)
    # the tiny suite's mlp (so its stored checkpoint is reused) attacked by fgsm and by the two hanging attacks
    text = suite.read_text().split("[models.cnn]")[0] + """
[attacks.fgsm]
plugin = "fgsm"
grid = { eps = [0.1] }
[attacks.sleepy]
plugin = "sleepy"
[attacks.stuck]
plugin = "stuck"
[evaluations.wb]
dataset = "mnist"
n = 64
batch_size = 25
sources = ["mlp"]
attacks = ["fgsm", "sleepy", "stuck"]
[tables.errors]
evaluation = "wb"
rows = "attack"
columns = "model"
metric = "error"
"""
    hang = tmp_path / "hang.toml"
    hang.write_text(text)
    started = time.monotonic()
    out = rbench("run", str(hang), "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / "run"), "-q",
                 "--device", "cpu", "--job-timeout", "3", env=env, timeout=300)
    assert out.returncode == 1, out.stderr
    assert time.monotonic() - started < 120
    text = " ".join(out.stdout.split())  # rich wraps long lines
    for name in ("sleepy", "stuck"):
        assert f"failed: attack {name} on mlp [attack '{name}']: JobTimeout: exceeded the job time limit of 3 s" \
            in text, out.stdout
    assert "attack 'stuck']: JobTimeout: exceeded the job time limit of 3 s (stuck outside Python: its worker " \
        "process was killed)" in text
    values = run_values(tmp_path / "run")
    assert values[("errors", "fgsm(eps=0.1)", "mlp")] == expected[("errors", "fgsm(eps=0.1)", "mlp")]  # went on
    assert values[("errors", "sleepy", "mlp")] is None and values[("errors", "stuck", "mlp")] is None
    assert not Store(tmp_path / "store").temporaries()


NAN_MODEL = '''
import torch
from pydantic import BaseModel, ConfigDict

from rbench import hookimpl
from rbench.model import ModelPlugin


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NanInEval(torch.nn.Module):
    """Trains normally; in eval mode every logit is NaN (a broken normalization, say)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(784, 10)

    def forward(self, x):
        out = self.linear(x.flatten(1))
        return out if self.training else out * float("nan")


class Plugin(ModelPlugin):
    name = "nan_in_eval"
    Params = Params

    def build(self, params):
        return NanInEval()


@hookimpl
def rbench_models():
    return [Plugin()]
'''


def test_a_model_with_non_finite_logits_fails_its_job_and_scores_nothing(tiny_reference, tmp_path):
    suite = tiny_reference[0]
    env = plugin_dist(tmp_path / "plugins", "rbench_test_nan", NAN_MODEL)
    text = suite.read_text().replace('plugin = "lenet"\nparams = { channels = [4, 8], hidden = 32 }',
                                     'plugin = "nan_in_eval"')
    broken = tmp_path / "nan.toml"
    broken.write_text(text)
    out = rbench("run", str(broken), "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / "run"), "-q",
                 "--device", "cpu", env=env)
    assert out.returncode == 1, out.stderr
    assert "model 'nan_in_eval' returned non-finite logits" in " ".join(out.stdout.split())
    values = run_values(tmp_path / "run")
    assert all(v is None for (table, row, column), v in values.items() if column == "cnn")  # no 86% error cell
    assert values[("errors", "clean", "mlp")] is not None


def test_a_job_time_limit_signals_the_jobs_thread_not_the_process(monkeypatch):
    """The limit's SIGALRM went to the process (setitimer), and the kernel may hand that to any thread: under a
    test runner with threads of its own the job's time.sleep(5) ran to its end before JobTimeout was raised. The
    alarm is now sent to the main thread itself, and no process timer is set."""
    from rbench.execution import JobTimeout, time_limit

    sent_to = []
    real_kill = signal.pthread_kill

    def spy(thread_id, signum):
        sent_to.append((thread_id, signum, signal.getitimer(signal.ITIMER_REAL)))
        real_kill(thread_id, signum)

    monkeypatch.setattr(signal, "pthread_kill", spy)
    started = time.monotonic()
    with pytest.raises(JobTimeout), time_limit(0.2, None):
        time.sleep(5)
    assert time.monotonic() - started < 2.0
    assert sent_to == [(threading.main_thread().ident, signal.SIGALRM, (0.0, 0.0))]
    with time_limit(0.2, None):  # ended before the limit: nothing is sent later
        pass
    time.sleep(0.4)
    assert len(sent_to) == 1


def test_a_job_time_limit_that_expires_at_once_still_puts_the_handler_back():
    """The alarm can go off while its timer thread starts (a busy thread holds the GIL for up to 5 ms): the
    JobTimeout escaped before the block's cleanup, and the job's SIGALRM handler stayed installed (127 of 300)."""
    from rbench.execution import JobTimeout, time_limit

    before = signal.getsignal(signal.SIGALRM)
    busy = True

    def spin():
        while busy:
            pass

    threading.Thread(target=spin, daemon=True).start()
    left = 0
    try:
        for _ in range(150):
            with contextlib.suppress(JobTimeout), time_limit(0.001, None):
                time.sleep(0.01)
            left += signal.getsignal(signal.SIGALRM) is not before
            signal.signal(signal.SIGALRM, before)
    finally:
        busy = False
    assert left == 0


def test_a_job_time_limit_waits_for_an_import_to_finish(tmp_path, monkeypatch):
    """Raised inside an import, the time limit left a half-initialised module in sys.modules, and the worker's next
    job failed on it ("partially initialized module 'torch._dynamo' has no attribute ..."): it is raised once the
    import has finished, and the module is whole."""
    import importlib
    import sys

    from rbench.execution import JobTimeout, time_limit

    (tmp_path / "slow_module_for_the_limit.py").write_text("import time\ntime.sleep(0.6)\nWHOLE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    started = time.monotonic()
    with pytest.raises(JobTimeout), time_limit(0.1, None):
        importlib.import_module("slow_module_for_the_limit")
        time.sleep(5)
    assert 0.6 <= time.monotonic() - started < 2.0
    assert sys.modules["slow_module_for_the_limit"].WHOLE is True
    sys.modules.pop("slow_module_for_the_limit")
