"""The observer hooks are fired by the runner for every executor: a third-party listener hears each job start
and end (cached ones too), progress, and the trust policy's warnings, also when the display is quiet."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from rich.console import Console

from rbench import hookimpl
from rbench.events import listening
from rbench.runner import run_suite
from rbench.store import Store

pytestmark = pytest.mark.slow


class Listener:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.finished: dict[str, str] = {}
        self.progressed: set[str] = set()
        self.warnings: list[tuple[str, str | None]] = []

    @hookimpl
    def rbench_job_started(self, job, device):
        self.started.append((job.key, device))

    @hookimpl
    def rbench_job_progress(self, key):
        self.progressed.add(key)

    @hookimpl
    def rbench_job_finished(self, job, result):
        assert job.key not in self.finished, f"{job.label} finished twice"
        self.finished[job.key] = result.status

    @hookimpl
    def rbench_warning(self, message, job):
        self.warnings.append((message, job.key if job is not None else None))


# two worker processes in make check-full (make test's 10-minute budget); test_engine runs two workers already
@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.full)])
def test_a_listener_hears_every_job_and_the_trust_warnings(tiny_reference, tmp_path, workers):
    suite, store_dir, run_dir, _ = tiny_reference
    shutil.copytree(store_dir, tmp_path / "store")
    store = Store(tmp_path / "store")
    jobs = json.loads((run_dir / "results.json").read_text())["jobs"]
    key = next(k for k, j in jobs.items() if j["label"] == "attack fgsm(eps=0.1) on mlp")
    adv = store.load_advset(key)
    adv.x_adv = adv.x_adv + 0.5  # out of the box: the validity gate refuses it, the runner warns and recomputes
    store.save_advset(key, adv)

    listener = Listener()
    with listening(listener):
        outcome = run_suite(suite, profile=None, store=store, run_dir=tmp_path / "run", device="cpu",
                            workers=workers, executor="local", console=Console(quiet=True), quiet=True)
    statuses = {k: r.status for k, r in outcome.job_results.items()}
    assert listener.finished == statuses  # every job of the plan, exactly once, with its status
    done = {k for k, s in statuses.items() if s == "done"}
    assert key in done and len(done) < len(statuses)
    assert {k for k, _ in listener.started} == done and {d for _, d in listener.started} == {"cpu"}
    assert key in listener.progressed
    users = {k for k, j in jobs.items() if j["label"] == "eval mlp on fgsm(eps=0.1)@mlp"}
    assert [k for _, k in listener.warnings[:1]] == [key] and {k for _, k in listener.warnings[1:]} == users
    assert "not trusted" in listener.warnings[0][0]  # then its predictions, made from it, are stale
    assert all(f"made from other contents of its input {key}" in w for w, _ in listener.warnings[1:])
    fixed = store.load_advset(key)
    assert fixed.x_adv.max() <= 1.0 and np.isfinite(fixed.x_adv).all()


def test_the_display_is_only_one_listener(tiny_reference, tmp_path, capsys):
    """Quiet runs still tell every listener; an unregistered listener hears nothing more."""
    suite, store_dir, _, _ = tiny_reference
    shutil.copytree(store_dir, tmp_path / "store")
    listener = Listener()
    with listening(listener):
        run_suite(suite, profile=None, store=Store(tmp_path / "store"), run_dir=tmp_path / "run", device="cpu",
                  workers=1, executor="local", console=Console(quiet=True), quiet=True)
    assert set(listener.finished.values()) == {"cached"} and not listener.started
    heard = len(listener.finished)
    run_suite(suite, profile=None, store=Store(tmp_path / "store"), run_dir=tmp_path / "run2", device="cpu",
              workers=1, executor="local", console=Console(quiet=True), quiet=True)
    assert len(listener.finished) == heard


def test_suite_warnings_reach_every_listener(tiny_reference, tmp_path):
    """A suite's warnings (here: EOT where no source is randomized) are told to the listeners as the run starts,
    not only printed in the summary."""
    suite, store_dir, _, _ = tiny_reference
    shutil.copytree(store_dir, tmp_path / "store")
    warned = tmp_path / "warned.toml"
    warned.write_text(suite.read_text().replace("[evaluations.wb]\n", "[evaluations.wb]\neot = 4\n"))
    listener = Listener()
    with listening(listener):
        outcome = run_suite(warned, profile=None, store=Store(tmp_path / "store"), run_dir=tmp_path / "run",
                            device="cpu", workers=1, executor="local", console=Console(quiet=True), quiet=True)
    assert set(listener.finished.values()) == {"cached"}  # EOT is not used: the same jobs
    [(message, about)] = listener.warnings
    assert "evaluations.wb.eot: 4 draws, but no source has a randomized defense" in message and about is None
    assert outcome.notes == [message]
