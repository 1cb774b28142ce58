"""The warm check's fast path: an HDF5 entry whose bytes are those that passed every check of its job is used
without being parsed again (rbench.gates.verified_copy); anything else takes the full check."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from rich.console import Console
from support import TINY_SUITE

import rbench.store
from rbench.gates import verified_copy
from rbench.runner import run_suite, suite_plan
from rbench.store import Store
from rbench.suite import load_suite
from rbench.trust import trusted_results

pytestmark = pytest.mark.slow


class Heard:
    """An observer that keeps the warnings."""

    def __init__(self):
        self.warnings = []

    def started(self, job, device):
        pass

    def progress(self, key, completed, total, text):
        pass

    def finished(self, job, result):
        pass

    def warning(self, message, job=None):
        self.warnings.append(message)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("verified")
    suite = root / "tiny.toml"
    suite.write_text(TINY_SUITE)
    run_suite(suite, profile=None, store=Store(root / "store"), run_dir=root / "run", device="cpu", workers=None,
              executor="local", console=Console(quiet=True), quiet=True)
    return suite, root / "store"


@pytest.fixture
def copy(stored, tmp_path):
    """A copy of the stored tiny suite's store, its plan, and the keys of its HDF5 entries."""
    suite, store_dir = stored
    shutil.copytree(store_dir, tmp_path / "store")
    plan = suite_plan(load_suite(suite), None)
    h5 = [job for job in plan.jobs.values() if job.kind != "train"]
    return tmp_path / "store", plan, h5


def _memo(root, key) -> dict:
    return json.loads((root / "gates" / f"{key}.json").read_text())


def _no_parsing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an HDF5 file was parsed")

    monkeypatch.setattr(rbench.store, "read_h5", refuse)
    monkeypatch.setattr(rbench.store, "read_h5_attribute", refuse)


def test_a_run_records_each_entrys_bytes_and_a_warm_check_parses_none(copy, monkeypatch):
    root, plan, h5 = copy
    for job in h5:
        memo = _memo(root, job.key)
        path = root / "objects" / job.key[:2] / f"{job.key}.h5"
        assert memo["key"] == job.key and memo["file"] == hashlib.sha256(path.read_bytes()).hexdigest()
    _no_parsing(monkeypatch)
    heard = Heard()
    results = trusted_results(plan, Store(root), heard)
    assert len(results) == len(plan.jobs) and {r.status for r in results.values()} == {"cached"}
    assert heard.warnings == []


def test_a_memo_without_the_files_digest_takes_the_full_check_and_gains_it(copy):
    """A store written before the digest was recorded: checked in full once, then recognised."""
    root, plan, h5 = copy
    for job in h5:
        memo = _memo(root, job.key)
        del memo["file"], memo["key"]
        (root / "gates" / f"{job.key}.json").write_text(json.dumps(memo))
    store = Store(root)
    assert not any(verified_copy(store, job) for job in h5)
    results = trusted_results(plan, store, Heard())
    assert {r.status for r in results.values()} == {"cached"}
    fresh = Store(root)
    assert all(verified_copy(fresh, job) for job in h5)


def test_changed_bytes_a_changed_source_a_moved_memo_or_a_link_are_not_vouched_for(copy):
    root, plan, h5 = copy
    store = Store(root)
    first, second = [job for job in h5 if job.kind == "attack"][:2]
    assert verified_copy(store, first) and verified_copy(store, second)

    memo = _memo(root, first.key)
    (root / "gates" / f"{first.key}.json").write_text(json.dumps(dict(memo, on="another source model")))
    assert not verified_copy(Store(root), first)
    (root / "gates" / f"{first.key}.json").write_text(json.dumps(memo))

    path = root / "objects" / first.key[:2] / f"{first.key}.h5"
    data = path.read_bytes()
    path.write_bytes(data + b"\0")  # one more byte, harmless to HDF5: no longer the bytes checked
    assert not verified_copy(Store(root), first)
    path.write_bytes(data)
    assert verified_copy(Store(root), first)

    # the first entry's file and memo copied under the second's key: the memo names the first key
    other = root / "objects" / second.key[:2] / f"{second.key}.h5"
    other.write_bytes(data)
    (root / "gates" / f"{second.key}.json").write_text(json.dumps(memo))
    assert not verified_copy(Store(root), second)
    heard = Heard()
    results = trusted_results(plan, Store(root), heard)
    assert second.key not in results and len(heard.warnings) == 1 and second.key in heard.warnings[0]

    path.unlink()
    path.symlink_to(root / "elsewhere.h5")
    (root / "elsewhere.h5").write_bytes(data)
    assert not verified_copy(Store(root), first)
