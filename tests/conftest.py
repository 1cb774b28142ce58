"""Shared fixtures: real MNIST from ../shared/data (or RBENCH_DATA), a fresh store per test, tiny suites."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch
from support import SHARED_DATA, TINY_SUITE

# Under pytest-xdist, each worker's torch (in its tests and in every rbench process they start) would use every
# core: two workers on 2 cores ran four threads, and two concurrent cold runs of the tiny suite took 11.5 s instead
# of 7.6 s with one thread each (2026-12-03). So the workers split the threads, unless the caller set
# OMP_NUM_THREADS (torch, imported already by rbench's pytest plugin, is told too).
_XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if "OMP_NUM_THREADS" not in os.environ and _XDIST_WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, torch.get_num_threads() // _XDIST_WORKERS))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True, scope="session")
def _env(tmp_path_factory):
    """Every test reads the real data files offline and writes to a test store, never the user's
    (session-wide so module-scoped fixtures see it too; tests that need a fresh store pass --store)."""
    if not SHARED_DATA.exists():
        pytest.skip(f"no MNIST data folder at {SHARED_DATA}")
    mp = pytest.MonkeyPatch()
    mp.setenv("RBENCH_DATA", str(SHARED_DATA))
    mp.setenv("RBENCH_OFFLINE", "1")
    mp.setenv("RBENCH_STORE", str(tmp_path_factory.mktemp("store")))
    mp.setenv("RBENCH_DATA_CACHE", str(tmp_path_factory.mktemp("datacache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _library_caches():
    """In-process CLI calls point the library caches at their store (rbench.cli._store, LIBRARY_CACHES): undo
    that after each test, so no later test (or its subprocesses) inherits another test's store as the user's."""
    from rbench.store import LIBRARY_CACHES

    names = tuple(LIBRARY_CACHES)
    before = {name: os.environ.get(name) for name in names}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def write_suite(tmp_path):
    """write_suite(text, name="suite.toml") -> Path: a suite file in the test's folder."""

    def write(text: str, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def tiny_suite(write_suite) -> Path:
    return write_suite(TINY_SUITE, "tiny.toml")



@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: small models train many times faster that way on a busy 2-core
    machine (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory):
    """The tiny suite run once on a cold store through the CLI: (suite, store, run folder, cell values).
    Tests that change the store work on a copy (``shutil.copytree``)."""
    from support import rbench, run_values

    root = tmp_path_factory.mktemp("tiny_reference")
    suite = root / "tiny.toml"
    suite.write_text(TINY_SUITE)
    out = rbench("run", str(suite), "--store", str(root / "store"), "--run-dir", str(root / "run"), "-q",
                 "--device", "cpu")
    assert out.returncode == 0, out.stderr
    return suite, root / "store", root / "run", run_values(root / "run")
