"""Bad command-line input found by an audit: one line, exit code 2, before any work, nothing left behind (usage
errors, a run folder in the store, a store that is a file, a module that calls sys.exit(), non-finite weights or
normalisation, a generated suite's errors, a refused run's folders)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import save_file
from support import BASE_SUITE, cli_in_process

from rbench.rundir import prepare_run_dir, remove_folders

NET = """\
import sys
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, exit_in_init: bool = False):
        super().__init__()
        if exit_in_init:
            sys.exit(3)
        self.fc = nn.Linear(784, 10)
        self.spare = nn.Parameter(torch.zeros(3))  # never used by forward

    def forward(self, x):
        return self.fc(x.flatten(1))
"""


@pytest.mark.parametrize(("args", "fragment"), [
    (["run", "x.toml", "--workers", "two"], "rbench run: Invalid value for '--workers'"),
    (["run", "x.toml", "--job-timeout", "inf"], "rbench run: Invalid value for '--job-timeout'"),
    (["run", "x.toml", "--job-timeout", "1e300"], "1e300 seconds: give a number from 0.001 to 1e+07"),
    (["run", "x.toml", "--job-timeout", "nan"], "nan seconds: give a number from 0.001 to 1e+07"),
    (["eval", "m.py:M", "--weights", "w.pt", "--job-timeout", "0"], "0 seconds: give a number from 0.001"),
    (["run", "x.toml", "--bogus"], "rbench run: No such option: --bogus"),
    (["cache", "bogus"], "rbench cache: No such command 'bogus'"),
    (["plugins", "pgd", "fgsm"], "rbench plugins: Got unexpected extra argument"),
    (["frobnicate"], "rbench: No such command 'frobnicate'")])
def test_usage_errors_are_one_line(capsys, args, fragment):
    code, err = cli_in_process(capsys, *args)
    assert code == 2 and err.startswith("rbench: error: ") and fragment in err and err.count("\n") == 1, err
    assert "--help)" in err


def test_a_run_folder_in_the_store_is_refused_before_anything_is_written(capsys, tiny_suite, tmp_path):
    store = tmp_path / "store"
    for run_dir, how in ((store / "runs" / "mine", "lies inside"), (store, "is")):
        for extra in ([], ["--dry-run"]):
            code, err = cli_in_process(capsys, "run", str(tiny_suite), "--store", str(store), "--run-dir",
                                       str(run_dir), *extra)
            assert code == 2 and f"--run-dir {run_dir}: {how} the store {store}; put run folders outside" in err
            assert not store.exists()


def test_a_store_that_is_a_file_is_refused_by_every_command(capsys, tiny_suite, tmp_path):
    store = tmp_path / "afile"
    store.write_text("mine")
    for args in (["cache", "ls"], ["cache", "verify"], ["cache", "gc"], ["run", str(tiny_suite), "--dry-run"]):
        code, err = cli_in_process(capsys, *args, "--store", str(store))
        assert code == 2 and f"store {store}: is a file, not a folder" in err, (args, err)
    assert store.read_text() == "mine"
    code, err = cli_in_process(capsys, "cache", "verify", "--store", str(tmp_path / "typo"))
    assert code == 0 and not (tmp_path / "typo").exists()  # an empty store, said so, and not created


def test_a_refused_run_removes_every_folder_it_made(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    assert prepare_run_dir(target) == [target, target.parent, target.parent.parent]
    remove_folders(prepare_run_dir(target))  # made nothing this time: removes nothing
    assert target.is_dir()
    remove_folders([target, target.parent, target.parent.parent])
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def own_model(tmp_path):
    import torch

    (tmp_path / "nets.py").write_text(NET)
    # small random weights: all-zero ones give every input a zero gradient, which the attack job fails as masking
    weight = torch.randn(10, 784, generator=torch.Generator().manual_seed(0)) * 0.01
    state = {"fc.weight": weight, "fc.bias": torch.zeros(10), "spare": torch.zeros(3)}
    save_file(state, tmp_path / "good.safetensors")
    save_file({**state, "spare": torch.tensor([float("nan"), 0.0, 0.0])}, tmp_path / "unused_nan.safetensors")
    return tmp_path


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--kwargs", '{"exit_in_init": true}'], "Net(**kwargs) failed: SystemExit: 3"),
    (["--weights", "{dir}/unused_nan.safetensors"], "the network's 'spare' holds non-finite values"),
    (["--mean", "0.1", "--std", "inf"], "std.0: Input should be a finite number"),
    (["--n", "20000"], "the suite rbench eval generates: evaluations.eval.n: 20000 exceeds")])
def test_eval_refuses_what_would_make_a_meaningless_run(capsys, own_model, extra, fragment):
    run_dir = own_model / "run"
    extra = [e.replace("{dir}", str(own_model)) for e in extra]
    weights = [] if "--weights" in extra else ["--weights", str(own_model / "good.safetensors")]
    code, err = cli_in_process(capsys, "eval", f"{own_model}/nets.py:Net", *weights, *extra, "--attack",
                               "fgsm:eps=0.1", "--run-dir", str(run_dir), "--store", str(own_model / "store"))
    assert code == 2 and fragment in err and err.count("\n") == 1, err
    assert not run_dir.exists() and ".suite.toml" not in err


def test_eval_names_its_generated_suite_whatever_the_run_folder_is_spelt(capsys, own_model, monkeypatch):
    monkeypatch.chdir(own_model)  # a relative --run-dir: the suite's error names the draft by its absolute path
    code, err = cli_in_process(capsys, "eval", "nets.py:Net", "--weights", "good.safetensors", "--n", "20000",
                               "--run-dir", "runs/rel", "--store", "store")
    assert code == 2 and err.startswith("rbench: error: the suite rbench eval generates: evaluations.eval.n"), err
    assert not (own_model / "runs").exists()


@pytest.mark.parametrize("command", ["eval", "run"])
def test_refused_for_missing_data_leaves_no_run_folder_and_no_store(capsys, own_model, monkeypatch, command):
    (own_model / "no-data").mkdir()
    monkeypatch.setenv("RBENCH_DATA", str(own_model / "no-data"))
    monkeypatch.setenv("RBENCH_DATA_CACHE", str(own_model / "no-cache"))
    run_dir, store = own_model / "runs" / "x", own_model / "new-store"
    if command == "eval":
        what = ["eval", f"{own_model}/nets.py:Net", "--weights", str(own_model / "good.safetensors"), "--n", "10",
                "--attack", "fgsm:eps=0.1"]
    else:
        (own_model / "suite.toml").write_text(BASE_SUITE)
        what = ["run", str(own_model / "suite.toml")]
    code, err = cli_in_process(capsys, *what, "--run-dir", str(run_dir), "--store", str(store), "-q")
    assert code == 2 and "is missing" in err and "RBENCH_OFFLINE=1 forbids downloading" in err, err
    assert not (own_model / "runs").exists() and not store.exists()


def test_eval_checks_a_ray_cluster_once_and_leaves_no_run_folder_when_refused(capsys, own_model, monkeypatch):
    """``rbench eval --executor ray --address A`` checks its executor (the Ray executor's check joins the cluster)
    once, before it writes its suite: it ran twice, joining the cluster twice; a refused check leaves nothing."""
    pytest.importorskip("ray")
    from rbench.errors import RbenchError
    from rbench.executors.ray_executor import RayExecutor

    checked = []

    def stop(*args, **kwargs):
        raise RbenchError("stopped where the executor would compute")

    monkeypatch.setattr(RayExecutor, "check", lambda self, params: checked.append(params.address))
    monkeypatch.setattr(RayExecutor, "run", stop)
    run_dir = own_model / "runs" / "ray"
    code, err = cli_in_process(capsys, "eval", f"{own_model}/nets.py:Net", "--weights",
                               str(own_model / "good.safetensors"), "--n", "10", "--attack", "fgsm:eps=0.1",
                               "--executor", "ray", "--address", "127.0.0.1:9", "--run-dir", str(run_dir),
                               "--store", str(own_model / "store"), "-q")
    assert code == 2 and "stopped where the executor would compute" in err, err
    assert checked == ["127.0.0.1:9"]
    code, err = cli_in_process(capsys, "eval", f"{own_model}/nets.py:Net", "--weights",
                               str(own_model / "good.safetensors"), "--executor", "ray", "--gpu-fraction", "2",
                               "--run-dir", str(own_model / "runs" / "bad"), "--store", str(own_model / "store"),
                               "-q")
    assert code == 2 and "--gpu-fraction 2.0" in err and err.count("\n") == 1, err
    assert not (own_model / "runs" / "bad").exists() and checked == ["127.0.0.1:9"]

    def refuse(self, params):
        raise RbenchError(f"--address {params.address}: the cluster refuses the run")

    monkeypatch.setattr(RayExecutor, "check", refuse)
    code, err = cli_in_process(capsys, "eval", f"{own_model}/nets.py:Net", "--weights",
                               str(own_model / "good.safetensors"), "--executor", "ray", "--address", "127.0.0.1:9",
                               "--run-dir", str(own_model / "runs" / "refused"), "--store", str(own_model / "store"),
                               "-q")
    assert code == 2 and "the cluster refuses the run" in err and err.count("\n") == 1, err
    assert not (own_model / "runs" / "refused").exists()


def test_eval_refused_for_a_store_it_cannot_make_leaves_no_run_folder(capsys, own_model):
    run_dir = own_model / "runs" / "y"
    store = own_model / "good.safetensors" / "store"  # under a file: cannot be made
    code, err = cli_in_process(capsys, "eval", f"{own_model}/nets.py:Net", "--weights",
                               str(own_model / "good.safetensors"), "--n", "10", "--attack", "fgsm:eps=0.1",
                               "--run-dir", str(run_dir), "--store", str(store), "-q")
    assert code == 2 and f"store {store}: not writable" in err and err.count("\n") == 1, err
    assert not (own_model / "runs").exists()


def test_unreadable_weights_and_an_empty_store_variable_are_one_line(capsys, own_model, monkeypatch):
    """A weights file that exists but cannot be read (as root without DAC capabilities, chmod 000) was an internal
    error; ``RBENCH_STORE=`` (set, empty) silently meant the default store, where ``--store ''`` is refused."""
    from pathlib import Path

    weights = own_model / "good.safetensors"
    real = Path.read_bytes

    def denied(self):
        if self == weights:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    with monkeypatch.context() as patched:
        patched.setattr(Path, "read_bytes", denied)
        code, err = cli_in_process(capsys, "eval", f"{own_model}/nets.py:Net", "--weights", str(weights),
                                   "--run-dir", str(own_model / "run"), "--store", str(own_model / "store"))
    assert code == 2 and "not readable (permission denied)" in err and err.count("\n") == 1, err
    monkeypatch.setenv("RBENCH_STORE", "")
    code, err = cli_in_process(capsys, "cache", "ls")
    assert code == 2 and "RBENCH_STORE is set but empty" in err and err.count("\n") == 1, err
    monkeypatch.setenv("RBENCH_STORE", "~/rbench-store")
    from rbench.store import default_root

    assert default_root() == Path.home() / "rbench-store"
    assert not (own_model / "store").exists() and not (own_model / "run").exists()


def test_a_data_folder_that_is_not_one_or_an_unreadable_data_file_is_named(capsys, own_model, monkeypatch):
    """RBENCH_DATA naming no folder was ignored (the cache was tried, then a download, whose error never said the
    folder was missing); a data file that cannot be read was called corrupt."""
    from support import BASE_SUITE, SHARED_DATA

    import rbench.data as data_module

    (own_model / "suite.toml").write_text(BASE_SUITE)
    args = ["run", str(own_model / "suite.toml"), "--store", str(own_model / "store"), "-q"]
    monkeypatch.setenv("RBENCH_DATA", str(own_model / "typo"))
    code, err = cli_in_process(capsys, *args)
    assert code == 2 and f"RBENCH_DATA='{own_model / 'typo'}' is not a folder (missing)" in err, err
    monkeypatch.setenv("RBENCH_DATA", str(own_model / "suite.toml"))
    code, err = cli_in_process(capsys, *args)
    assert code == 2 and "is not a folder (a file)" in err, err
    monkeypatch.setenv("RBENCH_DATA", str(SHARED_DATA))

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data_module, "_sha256", denied)
    code, err = cli_in_process(capsys, *args)
    assert code == 2 and "not readable (permission denied)" in err and "corrupt" not in err, err
    assert not (own_model / "store").exists()


def test_eval_of_a_pretrained_model_needs_no_training_files(capsys, own_model, monkeypatch):
    """The model is evaluated as it is: its 'none' trainer reads no data, so the MNIST training files need not be
    there (the run asked for them), and its job is a load, not a training."""
    import json

    from support import SHARED_DATA

    data = own_model / "test-split-only" / "mnist"
    data.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (data / name).symlink_to(SHARED_DATA / "mnist" / name)
    monkeypatch.setenv("RBENCH_DATA", str(data.parent))
    monkeypatch.setenv("RBENCH_DATA_CACHE", str(own_model / "no-cache"))
    code, err = cli_in_process(capsys, "eval", f"{own_model}/nets.py:Net", "--weights",
                               str(own_model / "good.safetensors"), "--n", "20", "--attack", "fgsm:eps=0.1",
                               "--run-dir", str(own_model / "run"), "--store", str(own_model / "store"), "-q")
    assert code == 0, err
    jobs = json.loads((own_model / "run" / "results.json").read_text())["jobs"]
    assert [j["label"] for j in jobs.values() if j["label"].split()[0] in ("load", "train")] == ["load Net"]


@pytest.mark.parametrize("other", ["empty", "someone_elses"])
def test_report_writes_nothing_into_a_recorded_store_that_is_not_one(tiny_reference, tmp_path, monkeypatch, other):
    """``report -f figures`` pointed the libraries' caches (matplotlib's font list) into the folder results.json
    names as the store, even an empty one or one holding someone else's files: that folder stays as it was."""
    import shutil

    _, _, run, _ = tiny_reference
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    folder = tmp_path / "not-a-store"
    folder.mkdir()
    if other == "someone_elses":
        (folder / "precious.txt").write_text("mine")
    doc = json.loads((copy / "results.json").read_text())
    doc["provenance"]["store"] = str(folder)
    (copy / "results.json").write_text(json.dumps(doc))
    from support import rbench

    from rbench.store import LIBRARY_CACHES

    for var in LIBRARY_CACHES:  # a fresh process with the caches unset: matplotlib writes its font list anew
        monkeypatch.delenv(var, raising=False)
    out = rbench("report", str(copy), "-f", "figures")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in folder.rglob("*")) == ([] if other == "empty" else ["precious.txt"])


def test_a_mangled_results_file_is_one_line_naming_it(capsys, tiny_reference, tmp_path):
    """``report`` and ``compare --run`` read results.json: a document nested thousands deep, or a cell whose interval
    does not hold its value, is a one-line error naming the file (was: an internal RecursionError; accepted)."""
    _, _, run, _ = tiny_reference
    doc = json.loads((run / "results.json").read_text())
    cell = next(c for t in doc["tables"] for c in t["cells"] if c.get("low") is not None)
    cell["low"] = cell["value"] + 1.0
    bad_interval = tmp_path / "interval"
    bad_interval.mkdir()
    (bad_interval / "results.json").write_text(json.dumps(doc))
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "results.json").write_text("[" * 100_000 + "]" * 100_000)
    for folder, fragment in ((bad_interval, "does not hold its value"), (deep, "nested too deeply")):
        for args in (["report", str(folder)], ["compare", str(run), "--run", str(folder)]):
            code, err = cli_in_process(capsys, *args)
            assert code == 2 and fragment in err and str(folder / "results.json") in err, err
            assert len(err.strip().splitlines()) == 1


def test_a_rate_cells_interval_and_a_cells_samples_are_checked_when_read(capsys, tiny_reference, tmp_path):
    """A rate cell's interval follows from its n and value (the Wilson interval of k of n): one widened in
    results.json was printed (``6.5 ±92.5``); samples.parquet's values are checked against the count and digest
    results.json recorded (another run's file redrew the distribution figure under this run's table)."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    _, _, run, _ = tiny_reference
    doc = json.loads((run / "results.json").read_text())
    rate = next(c for t in doc["tables"] for c in t["cells"] if c.get("interval") == "wilson" and 0 < c["low"])
    edits = {"widened": {"low": 0.0}, "not_a_count": {"value": rate["value"] + 1e-3 * 100 / rate["n"]}}
    for name, edit in edits.items():
        folder = tmp_path / name
        shutil.copytree(run, folder)
        (folder / "results.json").write_text(json.dumps({**doc, "tables": [
            {**t, "cells": [{**c, **edit} if c is rate else c for c in t["cells"]]} for t in doc["tables"]]}))
        code, err = cli_in_process(capsys, "report", str(folder), "-f", "md")
        fragment = "is not the Wilson interval of" if name == "widened" else "is no count of its n ="
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    samples = pq.read_table(run / "samples.parquet").to_pydict()
    assert samples["value"], "the reference run keeps per-sample values"
    for name, change in (("other_values", lambda v: [x * 1.5 for x in v]), ("fewer", lambda v: v[:-1])):
        folder = tmp_path / name
        shutil.copytree(run, folder)
        values = change(samples["value"])
        pq.write_table(pa.table({k: v[:len(values)] for k, v in samples.items()} | {"value": values}),
                       folder / "samples.parquet")
        code, err = cli_in_process(capsys, "report", str(folder), "-f", "md")
        fragment = "SHA-256 differs" if name == "other_values" else "where results.json counts n ="
        assert code == 2 and fragment in err and "samples.parquet" in err, err


def test_report_into_a_folder_it_cannot_write_is_one_line(capsys, tiny_reference, tmp_path):
    """An immutable run folder (``chattr +i``: as root, permissions alone do not stop a write) makes ``report``
    fail with one line naming the file, not an internal error."""
    import shutil
    import subprocess

    _, _, run, _ = tiny_reference
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        code, err = cli_in_process(capsys, "report", str(folder), "-f", "html")
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert code == 2 and f"{folder / 'report.html'}: not writable" in err and len(err.strip().splitlines()) == 1


def test_a_run_folder_is_new_empty_or_an_earlier_runs(capsys, tmp_path, tiny_suite):
    """--run-dir / (or ~, or a folder of notes) wrote results.json, tables.md ... among the user's files,
    overwriting those of the same names: refused before any work, the folder untouched."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "tables.md").write_text("mine")
    for folder in (notes, Path("/")):
        code, err = cli_in_process(capsys, "run", str(tiny_suite), "--run-dir", str(folder), "--dry-run",
                                   "--store", str(tmp_path / "store"))
        assert code == 2 and f"--run-dir {folder}: holds other files (" in err and err.count("\n") == 1, err
    assert [p.name for p in notes.iterdir()] == ["tables.md"] and (notes / "tables.md").read_text() == "mine"
    assert not (tmp_path / "store").exists()
    desktop = tmp_path / "desktop"
    desktop.mkdir()
    (desktop / ".DS_Store").write_bytes(b"\0")  # hidden files do not count
    code, err = cli_in_process(capsys, "run", str(tiny_suite), "--run-dir", str(desktop), "--dry-run",
                               "--store", str(tmp_path / "store"))
    assert code == 0, err
    dotfiles = tmp_path / "home"  # a home of dotfiles only (--run-dir ~ wrote a run among them)
    dotfiles.mkdir()
    (dotfiles / ".bashrc").write_text("mine")
    code, err = cli_in_process(capsys, "run", str(tiny_suite), "--run-dir", str(dotfiles), "--dry-run",
                               "--store", str(tmp_path / "store"))
    assert code == 2 and f"--run-dir {dotfiles}: holds other files (.bashrc)" in err, err
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(desktop))
        code, err = cli_in_process(capsys, "run", str(tiny_suite), "--run-dir", str(desktop), "--dry-run",
                                   "--store", str(tmp_path / "store"))
    assert code == 2 and f"--run-dir {desktop}: is your home folder" in err, err
    (notes / "results.json").write_text("{}")  # an earlier run's folder (its results are rewritten by a run)
    code, err = cli_in_process(capsys, "run", str(tiny_suite), "--run-dir", str(notes), "--dry-run",
                               "--store", str(tmp_path / "store"))
    assert code == 0, err


def test_a_dry_run_refuses_the_folders_the_run_could_not_write(capsys, tmp_path, tiny_suite, monkeypatch):
    """--dry-run said "nothing was computed or written" and exit 0 for a --run-dir or --store below a file, or
    in a folder the user may not write, which the run itself then refused: it checks them too, writing nothing."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store, run = ["--store", str(tmp_path / "store")], ["--run-dir", str(tmp_path / "run")]
    for args, message in [(["--run-dir", str(blocker / "run"), *store], f"--run-dir {blocker / 'run'}: a folder "
                           "above it is a file"),
                          ([*run, "--store", str(blocker / "store")], f"store {blocker / 'store'}: a folder above "
                           "it is a file")]:
        code, err = cli_in_process(capsys, "run", str(tiny_suite), "--dry-run", *args)
        assert code == 2 and message in err and err.count("\n") == 1, err
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != locked and real(path, mode, **kw))
    for args, message in [(["--run-dir", str(locked / "run"), *store], f"--run-dir {locked / 'run'}: not writable "
                           f"(permission denied) ({locked} is not writable)"),
                          ([*run, "--store", str(locked)], f"store {locked}: not writable (permission denied)")]:
        code, err = cli_in_process(capsys, "run", str(tiny_suite), "--dry-run", *args)
        assert code == 2 and message in err and err.count("\n") == 1, err
    monkeypatch.chdir(blocker.parent)
    (tmp_path / "runs").write_text("")  # the default run folder, runs/<suite>-<time>, lies below a file
    code, err = cli_in_process(capsys, "run", str(tiny_suite), "--dry-run", *store)
    assert code == 2 and "run folder runs/" in err and "a folder above it is a file" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "locked", "runs", "tiny.toml"]
    assert not any(locked.iterdir())


def test_a_run_folder_another_process_writes_into_is_refused_before_any_work(capsys, tmp_path, tiny_suite,
                                                                             monkeypatch):
    """Two runs writing one folder deleted each other's files and records (the second failed at the end on the
    first's marker); a run, or rbench report, finding the folder's lock held is one line, exit 2, and makes no
    store. Two runs of one suite started in one second get two default folders."""
    import subprocess
    import sys

    from rbench.runner import default_run_dir

    folder = tmp_path / "run"
    folder.mkdir()
    hold = (f"import time; from filelock import FileLock; lock = FileLock({str(folder / '.rbench-lock')!r}); "
            "lock.acquire(); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = cli_in_process(capsys, "run", str(tiny_suite), "--run-dir", str(folder), "--store",
                                   str(tmp_path / "store"))
        assert code == 2 and err.strip() == (f"rbench: error: --run-dir {folder}: another rbench run or report is "
                                             "writing into it; wait for it to end, or give another folder"), err
        assert not (tmp_path / "store").exists() and sorted(p.name for p in folder.iterdir()) == [".rbench-lock"]
    finally:
        holder.kill()
        holder.wait()
    import datetime

    import rbench.runner

    class Frozen(datetime.datetime):  # two runs in one second
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 2, 8, 30, 0)

    monkeypatch.setattr(rbench.runner._dt, "datetime", Frozen)
    monkeypatch.chdir(tmp_path)  # default folders go under ./runs
    first = default_run_dir("tiny")
    assert first == Path("runs") / "tiny-20261202-083000"
    first.mkdir(parents=True)
    assert default_run_dir("tiny") == Path("runs") / "tiny-20261202-083000-2"


def test_eval_into_a_run_folder_in_use_leaves_that_runs_suite_alone(capsys, own_model):
    """rbench eval writes its suite into the folder before it runs it: into a folder another run writes, it is
    refused before that, and the other run's suite.toml stays."""
    import subprocess
    import sys

    folder = own_model / "busy"
    folder.mkdir()
    (folder / "suite.toml").write_text("# the running eval's suite\n")
    (folder / "results.json").write_text("{}")
    hold = (f"import time; from filelock import FileLock; lock = FileLock({str(folder / '.rbench-lock')!r}); "
            "lock.acquire(); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = cli_in_process(capsys, "eval", f"{own_model}/nets.py:Net", "--weights",
                                   str(own_model / "good.safetensors"), "--n", "10", "--attack", "fgsm:eps=0.1",
                                   "--run-dir", str(folder), "--store", str(own_model / "store"), "-q")
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and "another rbench run or report is writing into it" in err and err.count("\n") == 1, err
    assert (folder / "suite.toml").read_text() == "# the running eval's suite\n"
    assert sorted(p.name for p in folder.iterdir()) == [".rbench-lock", "results.json", "suite.toml"]
    assert not (own_model / "store").exists()


def test_cache_verify_and_gc_touch_only_a_stores_own_files(capsys, tmp_path, tiny_suite):
    """--store aimed at another folder holding objects/: verify moved its files to a quarantine and gc deleted
    them. A folder that is not a store is refused; in a store, files not named as entries are never touched."""
    decoy = tmp_path / "decoy"
    (decoy / "objects" / "ab").mkdir(parents=True)
    (decoy / "objects" / "ab" / "abcdef.h5").write_text("theirs")
    (decoy / "quarantine").mkdir()
    (decoy / "quarantine" / "kept.txt").write_text("theirs")
    for command in ("verify", "gc"):
        code, err = cli_in_process(capsys, "cache", command, "--store", str(decoy))
        assert code == 2 and f"store {decoy}: not an rbench store (none of the files in its objects/ is an " \
            "entry)" in err and err.count("\n") == 1, err
    assert sorted(str(p.relative_to(decoy)) for p in decoy.rglob("*")) == [
        "objects", "objects/ab", "objects/ab/abcdef.h5", "quarantine", "quarantine/kept.txt"]
    (decoy / "HEAD").write_text("theirs")  # a folder of someone else's, say a git folder
    code, err = cli_in_process(capsys, "cache", "gc", "--store", str(decoy))
    assert code == 2 and "not an rbench store (it holds HEAD)" in err, err
    store = tmp_path / "store"
    code, _ = cli_in_process(capsys, "run", str(tiny_suite), "--store", str(store), "--run-dir",
                             str(tmp_path / "run"), "-q", "--only", "errors")
    assert code == 0
    (store / ".DS_Store").write_bytes(b"\0")  # a desktop's file at the root does not make it another's folder
    stray = store / "objects" / "ab" / "notes.h5"
    stray.parent.mkdir(exist_ok=True)
    stray.write_text("theirs")
    for command in ("verify", "gc"):
        code, err = cli_in_process(capsys, "cache", command, "--store", str(store))
        assert code == 0, err
    assert stray.read_text() == "theirs"


def test_results_files_are_checked_for_what_their_intervals_say(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text("[1, 2]")
    code, err = cli_in_process(capsys, "report", str(results))
    assert code == 2 and "not a valid rbench results file (ValueError: not a JSON object with a list" in err, err
    from rbench.estimate import wilson
    from rbench.results import BOUNDS, Cell, _check_cell

    assert BOUNDS["wilson"] == (0.0, 100.0)
    low, high = wilson(9, 10)
    _check_cell("t", Cell("r", "c", 90.0, n=10, low=100 * low, high=100 * high, interval="wilson"))
    with pytest.raises(ValueError, match=r"a wilson estimate of 150.0 \[140.0, 150.0\] lies outside \[0, 100\]"):
        _check_cell("t", Cell("r", "c", 150.0, n=10, low=140.0, high=150.0, interval="wilson"))
    _check_cell("t", Cell("r", "c", 150.0, n=10, low=140.0, high=160.0, interval="t"))  # a mean: any range


def test_a_suite_saved_with_a_byte_order_mark_loads(tmp_path):
    from rbench.suite import load_suite

    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE_SUITE.encode())
    assert load_suite(path).name


def test_validate_checks_every_file_and_names_each_bad_one(capsys, tmp_path, tiny_suite):
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE_SUITE + "\n[bogus]\nx = 1\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("[suite\n")
    code, err = cli_in_process(capsys, "validate", str(bad), str(tiny_suite), str(broken))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2 and str(bad) in lines[0] and str(broken) in lines[1], err
    code, err = cli_in_process(capsys, "validate", str(bad))  # one file: its one line, as every command
    assert code == 2 and err.count("\n") == 1 and str(bad) in err


def test_a_run_stopped_midway_can_be_run_again_into_its_folder(capsys, own_model, tmp_path):
    """A run killed while writing its reports (the record, then tables.md, no results.json yet), or an eval killed
    before any report (its generated suite.toml alone), leaves a folder the same command may write into again; a
    user's own suite.toml there is another's file."""
    from rbench.rundir import check_run_dir

    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / ".rbench-outputs.json").write_text("[]\n")
    (stopped / "tables.md").write_text("half")
    check_run_dir(stopped, tmp_path / "store")
    args = ["eval", f"{own_model}/nets.py:Net", "--weights", str(own_model / "good.safetensors"), "--n", "20000",
            "--store", str(tmp_path / "store")]  # refused by its n after the run folder's check: no work
    for header, verdict in (("# Generated by: rbench eval nets.py:Net\n", "evaluations.eval.n"),
                            ("[suite]\n", "holds other files (suite.toml)"),
                            ("# Generated by make_suite.py\n", "holds other files (suite.toml)")):
        folder = tmp_path / f"eval{len(header)}"
        folder.mkdir()
        (folder / "suite.toml").write_text(header)
        code, err = cli_in_process(capsys, *args, "--run-dir", str(folder))
        assert code == 2 and verdict in err, err
        assert (folder / "suite.toml").read_text() == header


def test_every_file_written_into_a_run_folder_is_recorded_as_it_is_written(tmp_path):
    """A run stopped after its figures (its record written only at the end) left them unknown to the next run,
    which kept a figure of a table it no longer had."""
    import json as _json

    from rbench.rundir import OUTPUTS_FILE, record_outputs, remove_previous_outputs, write_output

    run = tmp_path / "run"
    run.mkdir()
    record_outputs(run, [], merge=False)  # what write_run_dir does first
    write_output(run / "heatmap_transfer.png", lambda tmp: tmp.write_bytes(b"png"))  # then the run stops
    assert list(_json.loads((run / OUTPUTS_FILE).read_text())) == ["heatmap_transfer.png"]
    remove_previous_outputs(run, keep={"tables.md"})  # the next run into the folder
    assert not (run / "heatmap_transfer.png").exists()
    elsewhere = tmp_path / "plain"  # a folder without a record gets none
    elsewhere.mkdir()
    write_output(elsewhere / "x.txt", lambda tmp: tmp.write_text("x"))
    assert [p.name for p in elsewhere.iterdir()] == ["x.txt"]


def test_a_recorded_file_is_removed_only_while_it_holds_what_the_run_wrote(tmp_path):
    """The record names each file with the SHA-256 written: a figure the user replaced under its name, or a name
    of the user's added to the record, stays when the next run clears the last run's files; an older record (a
    plain list of names) is followed by name."""
    import json as _json

    from rbench.rundir import OUTPUTS_FILE, record_outputs, remove_previous_outputs, write_output

    run = tmp_path / "run"
    run.mkdir()
    record_outputs(run, [], merge=False)
    for name in ("a.png", "b.png"):
        write_output(run / name, lambda tmp: tmp.write_bytes(b"figure"))
    (run / "b.png").write_bytes(b"the user's own figure")  # replaced after the run
    (run / "notes.md").write_text("mine")
    record = _json.loads((run / OUTPUTS_FILE).read_text())
    (run / OUTPUTS_FILE).write_text(_json.dumps({**record, "notes.md": "0" * 64}))  # an edited record
    remove_previous_outputs(run, keep=set())
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["b.png", "notes.md"]
    (run / "old.png").write_bytes(b"x")
    (run / OUTPUTS_FILE).write_text(_json.dumps(["old.png"]))  # written by an rbench before the checksums
    write_output(run / "new.csv", lambda tmp: tmp.write_text("x"))  # e.g. rbench report -f csv into it
    assert set(_json.loads((run / OUTPUTS_FILE).read_text())) == {"old.png", "new.csv"}  # the old name kept
    remove_previous_outputs(run, keep=set())
    assert not (run / "old.png").exists() and (run / "notes.md").read_text() == "mine"
    assert not (run / "new.csv").exists()


EDITS = {  # an edit of results.json -> what the one-line error names
    "metric_calls a list": (lambda r: r["tables"][0].update(metric_calls=[1, 2]), "metric_calls is not a table"),
    "a call no plugin": (lambda r: r["tables"][0]["metric_calls"].update(error=5), "metric_calls['error'] is not a"),
    "a cell's unknown call": (lambda r: r["tables"][0]["cells"][0].update(call="zzz"),
                              "its metric call 'zzz' is not one of the table's metric_calls"),
    "a bad format": (lambda r: r["tables"][0]["formats"].update(error=".1zz"), "formats['error'] is '.1zz', not a"),
    "an escape in the description": (lambda r: r.update(description="evil\x1b[31mred"), "description holds a control"),
    "a job's checksum a number": (lambda r: next(iter(r["jobs"].values())).update(sha256=5), ".sha256 is 5, not a SHA"),
    "jobs a list": (lambda r: r.update(jobs=[1]), "jobs is not a table of jobs"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_results_file_is_one_line_before_any_report(tiny_reference, tmp_path, capsys, edit):
    """Edited results.json files that report and compare met as internal errors (a metric_calls list, a call no
    plugin), served silently (a cell's call naming nothing; a job checksum that is no checksum turned the check of
    a redrawn figure's entries off) or printed raw (an escape sequence in the description reached the terminal)."""
    import shutil

    _, _, run, _ = tiny_reference
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    raw = json.loads((folder / "results.json").read_text())
    change, fragment = EDITS[edit]
    change(raw)
    (folder / "results.json").write_text(json.dumps(raw))
    for args in (("report", str(folder)), ("compare", str(run), "--run", str(folder))):
        code, err = cli_in_process(capsys, *args)
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, (args, err)


def test_results_written_before_today_s_limits_still_read(tiny_reference, tmp_path, capsys):
    """A suite title over 300 characters (suites had no limit before), a job whose entry could not be read when
    the run ended (its checksum None): rbench wrote such files, so they are read."""
    import shutil

    _, _, run, _ = tiny_reference
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    raw = json.loads((folder / "results.json").read_text())
    raw["title"] = "a long title " * 30
    next(iter(raw["jobs"].values()))["sha256"] = None
    (folder / "results.json").write_text(json.dumps(raw))
    code, err = cli_in_process(capsys, "report", str(folder))
    assert code in (None, 0), err


@pytest.fixture
def stop_handlers():
    """The stop signals' handlers, restored after the test (the command line leaves them ignored for its exit)."""
    import signal

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    before = {name: signal.getsignal(getattr(signal, name)) for name in names}
    yield
    for name, handler in before.items():
        signal.signal(getattr(signal, name), handler)


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch, stop_handlers):
    """typer turns Ctrl-C inside a command into a silent exit 130: `cache gc` stopped by Ctrl-C printed nothing.
    And Ctrl-C while the command line's modules load printed a traceback of the import."""
    import sys

    import rbench.gc
    from rbench.__main__ import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rbench.gc, "collect", interrupted)
    assert cli_in_process(capsys, "cache", "gc", "--store", str(tmp_path / "store")) == (130, "rbench: interrupted\n")

    class InterruptedImport:  # a meta path finder: Ctrl-C while rbench.cli is being imported
        def find_spec(self, name, path=None, target=None):
            if name == "rbench.cli":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "rbench.cli")
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    with pytest.raises(SystemExit) as end:
        main()
    assert end.value.code == 130 and capsys.readouterr().err == "rbench: interrupted\n"


def test_sigterm_during_cache_gc_is_one_line_and_exit_143(tmp_path, capsys, monkeypatch, stop_handlers):
    """The signal audit: `cache gc` stopped by SIGTERM ended with no word and no exit code of its own."""
    import signal

    import rbench.gc

    def stopped(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(rbench.gc, "collect", stopped)
    assert cli_in_process(capsys, "cache", "gc", "--store", str(tmp_path / "store")) == (
        143, "rbench: error: cache gc: stopped by SIGTERM\n")


def test_a_stop_signal_while_the_interpreter_shuts_down_is_ignored(stop_handlers, monkeypatch, capsys):
    """The signal audit: a second Ctrl-C after the "interrupted" line, or a late SIGTERM to a finished run, landed
    in a library's exit handler: "Exception ignored in atexit callback" and a traceback, and the process ended by
    the signal instead of with the command's code. A process whose last exit handler signals itself shows it."""
    import signal
    import subprocess
    import sys

    from rbench.__main__ import main

    monkeypatch.setattr(sys, "argv", ["rbench", "plugins", "--kind", "dataset"])
    with pytest.raises(SystemExit) as end:
        main()
    assert end.value.code == 0 and "usps" in capsys.readouterr().out
    assert all(signal.getsignal(getattr(signal, n)) is signal.SIG_IGN for n in ("SIGINT", "SIGTERM", "SIGHUP"))
    late = ("import atexit, os, signal, sys, time\n"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), os.kill(os.getpid(), signal.SIGTERM), "
            "time.sleep(0.3)))\n"
            "sys.argv = ['rbench', 'plugins', '--kind', 'dataset']\n"
            "from rbench.__main__ import main\nmain()\n")
    out = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usps" in out.stdout and not out.stderr, (out.returncode, out.stderr)
