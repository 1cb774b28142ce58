"""Faults: SIGKILL at random points and inside writes never leaves a partial artifact that a later run trusts;
the next run resumes and reproduces the uninterrupted tables. Two concurrent runs share one store safely."""

from __future__ import annotations

import json
import random
import subprocess

import pytest
from support import RBENCH, kill_and_resume, rbench

from rbench.store import Store

pytestmark = pytest.mark.slow


def _values(run_dir) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    return {(t["name"], c["row"], c["column"]): c["value"] for t in results["tables"] for c in t["cells"]}


@pytest.fixture(scope="module")
def reference(tiny_reference):
    suite, _, _, expected = tiny_reference
    return suite, expected


# five kill points in `make test`, twelve in `make check-full` (each point is one rbench start, about 4-10 s on 2
# cores; `make check-full` also runs tests/stress_kill.py, 30 kills)
@pytest.mark.parametrize("extra", [1, pytest.param(8, marks=pytest.mark.full)])
def test_kill_points_then_resume_gives_the_uninterrupted_tables(reference, tmp_path, extra):
    suite, expected = reference
    rng = random.Random(7)
    # kills inside writes (each run first completes a write or two, so the runs make progress) and at random
    # times (during training, attacks, evaluations, or start-up)
    # A run that outlives its kill point finishes everything, so all but the timed kills are at a small count
    # of writes: each such run completes one or two writes, then dies inside the next (about 35 writes in all).
    kills = [("fault", "between-weights-and-sidecar:1"), ("time", rng.uniform(1.0, 2.5)), ("fault", "mid-write:2"),
             ("time", rng.uniform(2.0, 4.0))]
    kills += [("fault", f"mid-write:{rng.randint(2, 3)}") for _ in range(extra)]
    final, endings = kill_and_resume(suite, tmp_path / "store", tmp_path / "run", kills)
    assert final.returncode == 0, final.stderr
    assert endings.count("killed") >= len(kills) - 2, endings
    assert _values(tmp_path / "run") == expected
    verify = rbench("cache", "verify", "--store", str(tmp_path / "store"))
    assert verify.returncode == 0 and " 0 corrupt" in verify.stdout, verify.stdout
    gc = rbench("cache", "gc", "--store", str(tmp_path / "store"))
    assert gc.returncode == 0
    assert not Store(tmp_path / "store").temporaries()


def test_a_worker_killed_inside_a_checkpoint_fails_its_job_and_leaves_nothing_partial(reference, tmp_path):
    """Each worker dies between a checkpoint's weights and its sidecar (killed outright: nothing unwinds): the
    training jobs fail, and the weights they left are removed, so that ``cache verify`` finds nothing corrupt."""
    suite, _ = reference
    store = tmp_path / "store"
    out = rbench("run", str(suite), "--store", str(store), "--run-dir", str(tmp_path / "run"), "-q", "--device",
                 "cpu", "--workers", "2", env={"RBENCH_FAULT_KILL": "between-weights-and-sidecar:1"})
    assert out.returncode == 1 and "its worker process died (signal 9)" in out.stdout, out.stdout + out.stderr
    assert not Store(store).keys()
    verify = rbench("cache", "verify", "--store", str(store))
    assert verify.returncode == 0 and " 0 corrupt" in verify.stdout, verify.stdout


def test_two_concurrent_runs_share_the_store_and_compute_each_job_once(reference, tmp_path):
    suite, expected = reference
    procs = [subprocess.Popen([RBENCH, "run", str(suite), "--store", str(tmp_path / "store"), "--run-dir",
                               str(tmp_path / f"run{i}"), "-q", "--device", "cpu"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for proc in procs:
        proc.wait(timeout=600)
        assert proc.returncode == 0, proc.stderr.read()
    statuses = [json.loads((tmp_path / f"run{i}" / "results.json").read_text())["jobs"] for i in range(2)]
    keys = set(statuses[0])
    assert keys == set(statuses[1])
    done = [sum(1 for s in run.values() if s["status"] == "done") for run in statuses]
    assert sum(done) == len(keys), done  # every job computed exactly once, by one of the two runs
    assert min(done) > 0  # both did work: they really ran at the same time
    assert _values(tmp_path / "run0") == _values(tmp_path / "run1") == expected


def test_a_plugin_s_system_exit_fails_its_job_but_ray_stopping_its_worker_goes_through(monkeypatch):
    """A plugin's sys.exit() ended the whole local run (exit 3, nothing said): it fails its job, named. Ray stops a
    worker (SIGTERM: a node drained) by raising SystemExit marked ray_terminate_msg: that one must reach Ray, which
    retries the job in a fresh worker, not be the plugin's failure."""
    from types import SimpleNamespace

    from rbench import execution

    job = SimpleNamespace(label="attack a on m", plugin="exits")

    def exits(*args, **kwargs):
        raise SystemExit(3)

    monkeypatch.setattr(execution, "compute", exits)
    status, error = execution.compute_or_fail(job, None, "cpu", None)
    assert status == "failed" and error.startswith("attack a on m [exits]: SystemExit: 3")

    def stopped(*args, **kwargs):
        exc = SystemExit(1)
        exc.ray_terminate_msg = "The process receives a SIGTERM."
        raise exc

    monkeypatch.setattr(execution, "compute", stopped)
    with pytest.raises(SystemExit):
        execution.compute_or_fail(job, None, "cpu", None)
