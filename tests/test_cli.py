"""The command line on bad input: one line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import shutil

import pytest
from support import SHARED_DATA, rbench


def _clean(out) -> None:
    assert "Traceback" not in out.stderr + out.stdout


def test_missing_suite_file(tmp_path):
    out = rbench("run", str(tmp_path / "missing.toml"))
    assert out.returncode == 2 and "missing.toml: file not found" in out.stderr
    _clean(out)


@pytest.mark.parametrize("args", [["run"], ["frobnicate"], ["run", "x.toml", "--workers", "many"],
                                  ["report", "."], ["cache", "ls", "--bogus"]])
def test_bad_arguments_exit_2(args, tmp_path):
    out = rbench(*args, cwd=tmp_path)
    assert out.returncode == 2, out
    _clean(out)


def test_bad_device_and_workers(tiny_suite, tmp_path):
    for args, message in ((["--workers", "0"], "--workers: must be at least 1"),
                          (["--device", "tpu"], "--device: 'tpu'"),
                          (["--device", "cuda:7"], "cuda:7")):
        out = rbench("run", str(tiny_suite), "--store", str(tmp_path / "s"), *args)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        _clean(out)


def test_unwritable_store(tiny_suite, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = rbench("run", str(tiny_suite), "--store", str(blocker / "store"))
    assert out.returncode == 2 and "not writable" in out.stderr and str(blocker) in out.stderr
    _clean(out)


def test_corrupt_and_missing_data_files_stop_the_run_before_any_work(tiny_suite, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SHARED_DATA / "mnist", data / "mnist")
    victim = data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:100])
    store = tmp_path / "store"
    out = rbench("run", str(tiny_suite), "--store", str(store), env={"RBENCH_DATA": str(data)})
    assert out.returncode == 2 and str(victim) in out.stderr and "corrupt" in out.stderr
    assert out.stderr.count("\n") == 1
    victim.unlink()
    out = rbench("run", str(tiny_suite), "--store", str(store), env={"RBENCH_DATA": str(data)})
    assert out.returncode == 2 and "t10k-labels-idx1-ubyte.gz is missing" in out.stderr
    assert not list(store.glob("objects/*/*"))  # nothing was computed
    _clean(out)


def test_cache_commands_find_corrupt_entries(tmp_path):
    from rbench.store import Store

    store = Store(tmp_path / "store")
    store.save_checkpoint("cd" + "1" * 38, {}, {"label": "empty"})
    import torch

    store.save_checkpoint("ef" + "2" * 38, {"w": torch.ones(50)}, {"label": "ones"})
    ls = rbench("cache", "ls", "--store", str(store.root))
    assert ls.returncode == 0 and "2 entries" in ls.stdout
    ok = rbench("cache", "verify", "--store", str(store.root))
    assert ok.returncode == 0 and "2 entries checked, 0 corrupt" in ok.stdout
    weights = next(p for p in store.paths("ef" + "2" * 38) if p.suffix == ".safetensors")
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    bad = rbench("cache", "verify", "--store", str(store.root))
    assert bad.returncode == 1 and "1 corrupt" in bad.stdout and "ef2222" in bad.stdout
    gc = rbench("cache", "gc", "--store", str(store.root))
    assert gc.returncode == 0 and "removed 2 files" in gc.stdout  # the quarantined weights and sidecar
