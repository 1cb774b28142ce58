"""Run options checked before any work: ``--device``, ``--workers`` and the run folder (rbench.rundir)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from rbench.devices import MAX_WORKERS, cpu_threads_per_worker, resolve_devices
from rbench.errors import RbenchError
from rbench.rundir import prepare_run_dir


@pytest.mark.parametrize("device", [",", " , ", ",,,", "", " "])
def test_a_device_list_naming_no_device_is_one_line(device):
    with pytest.raises(RbenchError) as info:
        resolve_devices(device, None)
    message = str(info.value)
    assert message.startswith("--device: ") and "names no device" in message and "\n" not in message


def test_device_lists_and_worker_counts():
    assert resolve_devices("cpu", None) == (["cpu"], 1)
    assert resolve_devices(" cpu , cpu ", 3) == (["cpu", "cpu", "cpu"], 3)
    assert resolve_devices("cpu,", MAX_WORKERS)[1] == MAX_WORKERS
    for workers in (MAX_WORKERS + 1, 10**9):
        with pytest.raises(RbenchError, match=rf"^--workers: must be at most {MAX_WORKERS} \(got {workers}\)$"):
            resolve_devices("cpu", workers)
    with pytest.raises(RbenchError, match="--workers: must be at least 1"):
        resolve_devices("cpu", 0)


def test_workers_split_the_threads_this_process_may_use():
    """Each worker's torch threads are this process's divided by the workers: torch.set_num_threads, and the CPUs
    the process may run on (a batch scheduler's cpuset; here sched_setaffinity before torch is imported), count,
    not the machine's cores (os.cpu_count() would give each of two workers 32 threads on 4 CPUs of a 64-core node)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(6)
        assert [cpu_threads_per_worker(n) for n in (1, 2, 4, 7)] == [6, 3, 1, 1]
    finally:
        torch.set_num_threads(threads)
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: no smaller set of CPUs to confine a process to")
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from rbench.devices import cpu_threads_per_worker; print(cpu_threads_per_worker(1), os.cpu_count())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    confined, cores = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     env=env).stdout.split()
    assert confined == "1" and int(cores) > 1


def test_run_dir_is_created_and_probed(tmp_path):
    target = tmp_path / "runs" / "a" / "b"
    prepare_run_dir(target)
    assert target.is_dir() and list(target.iterdir()) == []  # the probe is gone
    prepare_run_dir(target)  # an existing folder is fine
    (target / "results.json").write_text("{}")
    prepare_run_dir(target)
    assert [p.name for p in target.iterdir()] == ["results.json"]


def test_run_dir_that_is_a_file_or_under_a_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RbenchError, match=rf"^--run-dir {blocker}: is a file, not a folder$"):
        prepare_run_dir(blocker)
    for below in (blocker / "run", blocker / "x" / "run"):
        with pytest.raises(RbenchError, match=rf"^--run-dir {below}: a folder above it is a file$"):
            prepare_run_dir(below)
    with pytest.raises(RbenchError, match=r"^run folder .*: is a file, not a folder$"):
        prepare_run_dir(blocker, "run folder")
    assert blocker.read_text() == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: permission bits do not stop root's writes "
                    "(the permission-denied path is covered by test_run_dir_probe_permission_denied)")
def test_run_dir_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(RbenchError, match=rf"^--run-dir {locked}: not writable \(permission denied\)$"):
            prepare_run_dir(locked)
        with pytest.raises(RbenchError, match=r"not writable \(permission denied\)$"):
            prepare_run_dir(locked / "new")
    finally:
        locked.chmod(0o700)


def test_run_dir_probe_permission_denied(tmp_path, monkeypatch):
    """Whoever runs the tests (root included): a probe that cannot be created is one line."""
    real_open = os.open

    def deny(path, flags, *args, **kwargs):
        if ".rbench-probe-" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(RbenchError, match=rf"^--run-dir {tmp_path}: not writable \(permission denied\)$"):
        prepare_run_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []



def test_jobs_on_a_gpu_use_deterministic_algorithms_and_put_the_settings_back(tmp_path, monkeypatch):
    """A job on a CUDA device runs under torch's deterministic algorithms (with cuBLAS's fixed workspace, a user's
    own setting kept), a CPU job with the settings as they are; each is put back after the job, since
    rbench.evaluate runs jobs in the caller's process (a user's strict setting was switched off by a CPU job). A
    GPU's convolution gradients otherwise sum in a run-dependent order (a Ray and a local quickstart on one H200
    differed by up to 1.3 points)."""
    from types import SimpleNamespace

    import rbench.execution as execution
    from rbench.store import Store

    def settings() -> tuple:
        return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                os.environ.get("CUBLAS_WORKSPACE_CONFIG"))

    seen = []
    monkeypatch.setattr(execution, "run_job", lambda job, store, device, progress: seen.append((device, *settings())))
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # so that undoing the test removes it, whatever happens
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    store = Store(tmp_path / "store")
    job = SimpleNamespace(key="a" * 64, label="train:m", plugin="mlp")
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    after = []
    try:
        for device, user in (("cuda:0", (False, False)), ("cpu", (False, False)), ("cuda", (True, False)),
                             ("cpu", (True, False))):
            torch.use_deterministic_algorithms(user[0], warn_only=user[1])
            assert execution.compute(job, store, device, lambda *a, **k: None) == "done"
            after.append(settings())
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
        execution.compute(job, store, "cuda:1", lambda *a, **k: None)
        after.append(settings())
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    assert seen == [("cuda:0", True, True, ":4096:8"), ("cpu", False, False, None), ("cuda", True, True, ":4096:8"),
                    ("cpu", True, False, None), ("cuda:1", True, True, ":16:8")]
    assert after == [(False, False, None), (False, False, None), (True, False, None), (True, False, None),
                     (True, False, ":16:8")]
