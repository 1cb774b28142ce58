"""End to end: stored entries swapped under each other's keys are never served (cache verify reports them, a run
recomputes them and gives the untouched tables); gc and verify running beside a live run never take its work."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from support import RBENCH, rbench, run_values, swap_entries

from rbench.gc import collect
from rbench.store import Store

pytestmark = pytest.mark.slow


def _key(run_dir, label: str) -> str:
    jobs = json.loads((run_dir / "results.json").read_text())["jobs"]
    return next(k for k, j in jobs.items() if j["label"] == label)


@pytest.mark.parametrize("labels", [
    ("eval mlp on fgsm(eps=0.1)@mlp", "eval mlp on fgsm(eps=0.3)@mlp"),   # predictions
    pytest.param(("attack fgsm(eps=0.1) on mlp", "attack fgsm(eps=0.3) on mlp"), marks=pytest.mark.full),  # sets
    pytest.param(("train mlp", "train cnn"), marks=pytest.mark.full),     # checkpoints (weights and sidecars)
])
def test_swapped_entries_are_caught_and_recomputed(tiny_reference, tmp_path, labels):
    suite, store, run, expected = tiny_reference
    shutil.copytree(store, tmp_path / "store")
    keys = [_key(run, label) for label in labels]
    swap_entries(tmp_path / "store", *keys)
    verify = rbench("cache", "verify", "--store", str(tmp_path / "store"))
    assert verify.returncode == 1 and "2 corrupt" in verify.stdout, verify.stdout
    assert all(f"store entry {k} is corrupt" in " ".join(verify.stdout.split()) for k in keys)
    out = rbench("run", str(suite), "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / "run"), "-q")
    assert out.returncode == 0, out.stderr
    jobs = json.loads((tmp_path / "run" / "results.json").read_text())["jobs"]
    assert all(jobs[k]["status"] == "done" for k in keys)
    assert run_values(tmp_path / "run") == expected


def test_gc_beside_a_live_run_deletes_none_of_its_work(tiny_reference, tmp_path):
    suite, _, _, expected = tiny_reference
    store = tmp_path / "store"
    other = tmp_path / "other.toml"
    other.write_text('[suite]\nname = "other"\n')  # keeps nothing: gc may delete everything no live run uses
    proc = subprocess.Popen([RBENCH, "run", str(suite), "--store", str(store), "--run-dir", str(tmp_path / "run"),
                             "-q", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    overlapping = 0  # gc + verify rounds (in this process, so many of them) while the run had work to lose
    while proc.poll() is None:
        ours = Store(store)
        had_work = bool(ours.keys())
        if (store / "objects").is_dir():
            collect(ours, [other], None, dry_run=False)
            for key in ours.keys():
                assert ours.verify(key) in ("ok", "busy")
        overlapping += had_work and proc.poll() is None
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, f"stdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}"  # -q: a failure is in stdout
    assert overlapping >= 5
    assert run_values(tmp_path / "run") == expected
    removed = rbench("cache", "gc", str(other), "--store", str(store))  # the run is over: now it may
    assert removed.returncode == 0 and not Store(store).keys()
