"""The command line on bad input: one line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from support import RBENCH, SHARED_DATA, cli_in_process, rbench

from rbench.estimate import wilson


def _clean(out) -> None:
    assert "Traceback" not in out.stderr + out.stdout


def test_missing_suite_file(tmp_path):
    out = rbench("run", str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert out.returncode == 2 and "missing.toml: file not found" in out.stderr
    _clean(out)


@pytest.mark.parametrize("args", [["run"], ["frobnicate"], ["run", "x.toml", "--workers", "many"],
                                  ["report", "."], ["cache", "ls", "--bogus"]])
def test_bad_arguments_exit_2(args, tmp_path):
    out = rbench(*args, cwd=tmp_path)
    assert out.returncode == 2, out
    _clean(out)


def test_bad_device_and_workers(tiny_suite, tmp_path, capsys):
    for args, message in ((["--workers", "0"], "--workers: must be at least 1"),
                          (["--device", "tpu"], "--device: 'tpu'"),
                          (["--device", "cuda:7"], "cuda:7")):
        code, err = cli_in_process(capsys, "run", str(tiny_suite), "--store", str(tmp_path / "s"), *args)
        assert code == 2 and message in err, err
    assert not (tmp_path / "s").exists()


def test_unwritable_store(tiny_suite, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = rbench("run", str(tiny_suite), "--store", str(blocker / "store"), cwd=tmp_path)
    assert out.returncode == 2 and "not writable" in out.stderr and str(blocker) in out.stderr
    _clean(out)


def test_corrupt_and_missing_data_files_stop_the_run_before_any_work(tiny_suite, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SHARED_DATA / "mnist", data / "mnist")
    victim = data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:100])
    store = tmp_path / "store"
    out = rbench("run", str(tiny_suite), "--store", str(store), env={"RBENCH_DATA": str(data)}, cwd=tmp_path)
    assert out.returncode == 2 and str(victim) in out.stderr and "corrupt" in out.stderr
    assert out.stderr.count("\n") == 1
    victim.unlink()
    out = rbench("run", str(tiny_suite), "--store", str(store), env={"RBENCH_DATA": str(data)}, cwd=tmp_path)
    assert out.returncode == 2 and "t10k-labels-idx1-ubyte.gz is missing" in out.stderr
    assert not list(store.glob("objects/*/*"))  # nothing was computed
    _clean(out)


def test_cache_commands_find_corrupt_entries(tmp_path):
    from rbench.keys import content_key
    from rbench.store import Store

    store = Store(tmp_path / "store")
    specs = [{"kind": "test", "n": 1}, {"kind": "test", "n": 2}]
    empty, ones = (content_key(spec) for spec in specs)
    store.save_checkpoint(empty, {}, {"key": empty, "spec": specs[0], "label": "empty"})  # an entry records its key
    import torch

    store.save_checkpoint(ones, {"w": torch.ones(50)}, {"key": ones, "spec": specs[1], "label": "ones"})
    ls = rbench("cache", "ls", "--store", str(store.root))
    assert ls.returncode == 0 and "2 entries" in ls.stdout
    ok = rbench("cache", "verify", "--store", str(store.root))
    assert ok.returncode == 0 and "2 entries checked, 0 corrupt" in ok.stdout
    weights = next(p for p in store.paths(ones) if p.suffix == ".safetensors")
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    bad = rbench("cache", "verify", "--store", str(store.root))
    assert bad.returncode == 1 and "1 corrupt" in bad.stdout and ones[:6] in bad.stdout
    gc = rbench("cache", "gc", "--store", str(store.root))
    assert gc.returncode == 0 and "removed 2 files" in gc.stdout  # the quarantined weights and sidecar


def test_cache_commands_agree_on_half_written_and_half_removed_checkpoints(tmp_path):
    """Weights whose writer died before the sidecar: `verify` quarantined them as corrupt (exit 1) where `gc` removes
    them as an interrupted write's debris; now both call them that. A sidecar whose weights were deleted: `ls`
    listed a 0 MB checkpoint; it says the weights are missing (and `verify` finds it corrupt)."""
    import torch

    from rbench.keys import content_key
    from rbench.store import Store

    store = Store(tmp_path / "store")
    specs = [{"kind": "test", "n": n} for n in (1, 2)]
    half, gone = (content_key(spec) for spec in specs)
    for key, spec in zip((half, gone), specs, strict=True):
        store.save_checkpoint(key, {"w": torch.ones(50)}, {"key": key, "spec": spec, "label": key[:4]})
    next(p for p in store.paths(half) if p.suffix == ".json").unlink()
    next(p for p in store.paths(gone) if p.suffix == ".safetensors").unlink()
    ls = rbench("cache", "ls", "--store", str(store.root))
    rows = {line.split()[1]: line for line in ls.stdout.splitlines() if line.split()[1:2] in ([half[:16]], [gone[:16]])}
    assert "incomplete" in rows[half[:16]] and "weights missing" in rows[gone[:16]], ls.stdout
    verify = rbench("cache", "verify", "--store", str(store.root))
    assert verify.returncode == 1 and f"incomplete: {half}: a checkpoint's weights without their sidecar" in \
        " ".join(verify.stdout.split()), verify.stdout
    assert "2 entries checked, 1 corrupt, 1 interrupted writes (left for gc)" in verify.stdout
    assert store.paths(half) and not store.paths(gone)
    gc = rbench("cache", "gc", "--store", str(store.root))
    assert gc.returncode == 0 and not store.keys(), gc.stdout


# -- bad input of every kind: one line, exit 2, and `rbench run` does no work ---------------------------------
MINI = """
[suite]
name = "mini"

[datasets.mnist]
plugin = "mnist"

[models.mlp]
plugin = "mlp"
params = { widths = [8] }
dataset = "mnist"
n_train = 100
trainer = { params = { epochs = 1 } }

[attacks.fgsm]
plugin = "fgsm"
params = { eps = 0.1 }

[evaluations.ev]
dataset = "mnist"
n = 10
sources = ["mlp"]
attacks = ["fgsm"]

[tables.t]
evaluation = "ev"
rows = "attack"
columns = "model"
metric = "error"
"""


def _objects(store) -> list:
    return [p for p in (store / "objects").rglob("*") if p.is_file()] if (store / "objects").exists() else []


def _one_line_exit_2(code: int, err: str, fragment: str) -> None:
    assert code == 2, (code, err)
    assert err.startswith("rbench: error: ") and err.count("\n") == 1, err
    assert fragment in err, (fragment, err)


def _setup_bad_suite(folder, kind: str):
    """(suite path, the fragment its error must hold) for one kind of bad suite."""
    text = MINI
    if kind == "name":
        text = text.replace('name = "mini"', 'name = "../../escaped"')
        fragment = "suite.name: holds a path separator"
    elif kind == "name_nul":
        text = text.replace('name = "mini"', 'name = "a\\u0000b"')
        fragment = "suite.name: holds a control"
    elif kind == "table_name":
        text = text.replace("[tables.t]", '[tables."../t"]')
        fragment = "tables.'../t': name holds a path separator"
    elif kind == "published":
        (folder / "pub.toml").write_bytes(b"\xff\xfe not UTF-8")
        text = text.replace('name = "mini"', 'name = "mini"\npublished = ["pub.toml"]')
        fragment = "suite.published[0]: " + str(folder / "pub.toml") + ": not a UTF-8 text file"
    elif kind == "n":
        text = text.replace("\nn = 10\n", "\nn = 20000\n")
        fragment = "evaluations.ev.n: 20000 exceeds the 10000 images of mnist/test"
    elif kind == "include_device":
        text = text.replace('name = "mini"', 'name = "mini"\ninclude = ["/dev/zero"]')
        fragment = "suite.include[0]: /dev/zero: is a character device, not a regular file"
    elif kind == "include_huge":
        with open(folder / "huge.toml", "wb") as f:
            f.truncate(1 << 30)
        text = text.replace('name = "mini"', 'name = "mini"\ninclude = ["huge.toml"]')
        fragment = "huge.toml: is 1073741824 bytes, more than the 1048576 a suite file may have"
    elif kind == "deep":
        text += "\n[profiles.q]\nx = " + "[" * 5000 + "]" * 5000 + "\n"
        fragment = "nests deeper than 32 levels"
    else:  # include_chain
        for i in range(40):
            (folder / f"c{i}.toml").write_text(f'[suite]\nname = "c{i}"\ninclude = ["c{i + 1}.toml"]\n')
        text = text.replace('name = "mini"', 'name = "mini"\ninclude = ["c0.toml"]')
        fragment = "includes nest deeper than 32 levels"
    path = folder / "suite.toml"
    path.write_text(text)
    return path, fragment


# through the CLI's main() in this process (its console script's exit path: test_bad_arguments_exit_2)
@pytest.mark.parametrize("kind", ["name", "n", "include_device", "name_nul", "table_name", "published",
                                  "include_huge", "deep", "include_chain"])
def test_bad_suites_stop_validate_and_run_before_any_work(tmp_path, kind, capsys, monkeypatch):
    folder = tmp_path / "suites"
    folder.mkdir()
    path, fragment = _setup_bad_suite(folder, kind)
    _one_line_exit_2(*cli_in_process(capsys, "validate", str(path)), fragment)
    cwd = tmp_path / "work" / "dir"  # a run folder escaping it would land in tmp_path
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    store = tmp_path / "store"
    _one_line_exit_2(*cli_in_process(capsys, "run", str(path), "--store", str(store), "-q", "--device", "cpu"),
                     fragment)
    assert not _objects(store)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["suites", "work"] + (["store"] if store.exists()
                                                                                       else []))
    assert not list(cwd.iterdir())


@pytest.mark.parametrize(("args", "fragment"), [
    (["--device", ","], "--device: ',' names no device"),
    (["--device", " , "], "--device: ' , ' names no device"),
    (["--workers", "1000"], "--workers: must be at most 256 (got 1000)"),
])
def test_bad_device_lists_and_worker_counts_do_no_work(tmp_path, args, fragment, capsys):
    path = tmp_path / "mini.toml"
    path.write_text(MINI)
    _one_line_exit_2(*cli_in_process(capsys, "run", str(path), "--store", str(tmp_path / "store"), "--run-dir",
                                     str(tmp_path / "run"), "-q", *args), fragment)
    assert not _objects(tmp_path / "store") and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [["run", "SUITE", "--run-dir", ""], ["run", "SUITE", "--store", ""],
                                  ["cache", "gc", "--store", ""], ["validate", ""], ["report", ""],
                                  ["eval", "", "--weights", "w.safetensors"]])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(tmp_path, args, capsys, monkeypatch):
    """``Path("")`` is ``.``: ``--run-dir ""`` wrote a run into the shell's folder, ``--store ""`` made it a store
    (and ``cache gc`` would have cleaned it)."""
    path = tmp_path / "mini.toml"
    path.write_text(MINI)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code, err = cli_in_process(capsys, *[str(path) if a == "SUITE" else a for a in args])
    _one_line_exit_2(code, err, "empty path" if args[0] != "eval" else "MODULE ''")
    assert not list(cwd.iterdir())


def test_a_run_writes_nothing_outside_the_store_and_the_run_folder(tmp_path):
    """With a fresh home and temp folder and no cache variables set: matplotlib's font cache, the figures drawn and
    the folder torch makes at an optimizer's first step go into the store's library-cache/, not ~/.cache,
    ~/.config or $TMPDIR, and
    so does ART's ~/.art (made when ART is first imported); validating and re-drawing the figures of a run whose
    store is gone use a temporary folder and remove it."""
    path = tmp_path / "mini.toml"
    art = '[attacks.art_fgm]\nplugin = "art"\nparams = { attack = "FastGradientMethod", kwargs = { eps = 0.1 } }\n'
    path.write_text(MINI.replace("params = { eps = 0.1 }", "grid = { eps = [0.1, 0.2] }")  # a figure to draw
                    .replace("[evaluations.ev]", art + "[evaluations.ev]")  # ART would make ~/.art
                    .replace('attacks = ["fgsm"]', 'attacks = ["fgsm", "art_fgm"]'))
    home, temp, store, run = (tmp_path / name for name in ("home", "tmp", "store", "run"))
    home.mkdir()
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "TORCHINDUCTOR_CACHE_DIR",
                                                            "RBENCH_LIBRARY_CACHE", "RBENCH_FIGURE_CACHE")}
    env.update(HOME=str(home), TMPDIR=str(temp))
    out = subprocess.run([RBENCH, "run", str(path), "--store", str(store), "--run-dir", str(run), "-q"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert not list(home.iterdir()) and not list(temp.iterdir())
    assert (store / "library-cache" / "torch").is_dir() and list((store / "library-cache" / "matplotlib").iterdir())
    assert (store / "library-cache" / "art" / ".art" / "config.json").is_file()
    assert sorted(p.suffix for p in (store / "library-cache" / "figures").iterdir()) == [".png", ".sha256"]
    out = subprocess.run([RBENCH, "validate", str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and not list(home.iterdir()) and not list(temp.iterdir()), out.stderr
    shutil.rmtree(store)
    out = subprocess.run([RBENCH, "report", str(run), "-f", "figures"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert not list(home.iterdir()) and not list(temp.iterdir()) and not store.exists()


def test_library_caches_follow_each_command_s_store_and_never_the_user_s_setting(tmp_path, capsys, monkeypatch):
    """In one process (an API caller, pytest), each command's store holds the caches, not the first one's; a
    variable the user set is left alone."""
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    for name in ("a", "b"):
        code, err = cli_in_process(capsys, "cache", "ls", "--store", str(tmp_path / name))
        assert code in (0, None) and not err, err
        assert os.environ["MPLCONFIGDIR"] == str(tmp_path / name / "library-cache" / "matplotlib")
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_bad_notmnist_file_stops_the_run_before_any_work(tmp_path):
    """notMNIST is never checksummed: the run decodes and checks it up front (labels outside 0-9 here)."""
    import gzip

    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    for f in (SHARED_DATA / "mnist").iterdir():
        (data / "mnist" / f.name).symlink_to(f)
    (data / "notmnist").mkdir()
    images = b"\x00\x00\x08\x03" + (20).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(20 * 784)
    labels = b"\x00\x00\x08\x01" + (20).to_bytes(4, "big") + bytes([1] * 19 + [42])
    (data / "notmnist" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (data / "notmnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    suite = tmp_path / "ood.toml"
    suite.write_text(MINI + '\n[datasets.notmnist]\nplugin = "notmnist"\n[evaluations.ood]\ndataset = "notmnist"\n'
                            'n = 10\nsources = ["mlp"]\n')
    env = {"RBENCH_DATA": str(data)}
    ok = rbench("validate", str(suite), env=env)  # validation reads no data beyond the header's count
    assert ok.returncode == 0, ok.stderr
    store = tmp_path / "store"
    out = rbench("run", str(suite), "--store", str(store), "--run-dir", str(tmp_path / "run"), "-q", env=env)
    _one_line_exit_2(out.returncode, out.stderr, str(data / "notmnist" / "t10k-labels-idx1-ubyte.gz"))
    assert "labels outside 0-9" in out.stderr and not _objects(store)


def test_gc_and_dry_run_refuse_when_keyed_local_data_is_missing(tmp_path):
    """notMNIST's content enters its jobs' keys: with its files not found (RBENCH_DATA unset), the keys differ
    from the stored ones, so ``cache gc SUITE`` deleted the suite's own entries (the audit: 166 files removed,
    exit 0) and ``--dry-run`` counted stored jobs as to compute. Both now give the run's one-line data error."""
    suite = tmp_path / "ood.toml"
    suite.write_text(MINI + '\n[datasets.notmnist]\nplugin = "notmnist"\n[evaluations.ood]\ndataset = "notmnist"\n'
                            'n = 10\nsources = ["mlp"]\n')
    store = tmp_path / "store"
    out = rbench("run", str(suite), "--store", str(store), "--run-dir", str(tmp_path / "run"), "-q")
    assert out.returncode == 0, out.stderr
    stored = _objects(store)
    missing = {"RBENCH_DATA": str(tmp_path / "elsewhere"), "RBENCH_OFFLINE": "1"}
    (tmp_path / "elsewhere").mkdir()
    for args in (("cache", "gc", str(suite), "--store", str(store)),
                 ("run", str(suite), "--store", str(store), "--dry-run")):
        out = rbench(*args, env=missing)
        assert out.returncode == 2 and "notmnist" in out.stderr and len(out.stderr.strip().splitlines()) == 1, \
            (args, out.stdout, out.stderr)
    assert _objects(store) == stored
    kept = rbench("cache", "gc", str(suite), "--store", str(store))  # with the data found: nothing of it goes
    assert kept.returncode == 0 and _objects(store) == stored, kept.stdout


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_run_dir_that_cannot_be_a_folder_stops_the_run_before_any_work(tmp_path, where, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run_dir = blocker if where == "file" else blocker / "run"
    path = tmp_path / "mini.toml"
    path.write_text(MINI)
    store = tmp_path / "store"
    _one_line_exit_2(*cli_in_process(capsys, "run", str(path), "--store", str(store), "--run-dir", str(run_dir), "-q"),
                     f"--run-dir {run_dir}: " + ("is a file" if where == "file" else "a folder above it"))
    assert not _objects(store) and blocker.read_text() == ""


def test_version_and_the_environment_are_in_the_cli():
    from importlib.metadata import version

    out = rbench("--version")
    assert out.returncode == 0 and out.stdout.startswith(f"rbench {version('rbench')} (torch ")
    helped = rbench("--help", env={"COLUMNS": "200"})
    assert helped.returncode == 0
    for name in ("RBENCH_DATA", "RBENCH_STORE", "RBENCH_OFFLINE", "RBENCH_PLUGINS", "RBENCH_DEBUG", "--version"):
        assert name in helped.stdout
    run_help = rbench("run", "--help", env={"COLUMNS": "200"})
    assert "(default: one per device)" in run_help.stdout  # defaults stay visible (not eaten as markup)
    assert "<Path>" not in " ".join(line for line in run_help.stdout.splitlines() if "--" in line)  # PATH options


def test_a_folder_that_is_no_store_is_refused_by_run_as_by_verify_and_gc(tiny_suite, tmp_path, capsys):
    """`run --store` wrote a store's folders among a thesis (and into another store's objects/), which `cache
    verify` and `gc` then refused: every command now refuses such a folder before any work."""
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("chapter 1\n")
    for args in (["run", str(tiny_suite), "--run-dir", str(tmp_path / "run")], ["run", str(tiny_suite), "--dry-run"],
                 ["cache", "ls"], ["cache", "verify"]):
        code, err = cli_in_process(capsys, *args, "--store", str(thesis))
        assert code == 2 and f"store {thesis}: not an rbench store (it holds thesis.txt)" in err, (args, err)
    assert sorted(p.name for p in thesis.iterdir()) == ["thesis.txt"] and not (tmp_path / "run").exists()


def test_report_refuses_a_half_written_or_unreadable_run_folder(tiny_reference, tmp_path, capsys):
    """A run stopped while writing its reports left tables of the new run beside results.json of the old one, and
    `rbench report` printed the old; a FIFO named results.json hung it."""
    _, _, run, _ = tiny_reference
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    (folder / ".rbench-writing").write_bytes(b"")
    code, err = cli_in_process(capsys, "report", str(folder))
    assert code == 2 and "stopped before it finished writing its reports" in err and err.count("\n") == 1, err
    (folder / ".rbench-writing").unlink()
    doc = json.loads((folder / "results.json").read_text())  # a value edited to a plausible one inside its interval
    cell = next(c for t in doc["tables"] for c in t["cells"] if c.get("outcomes_sha256") and 10 < c["value"] < 90)
    k = round(cell["value"] * cell["n"] / 100) + 1  # one more hit: a whole rate, its Wilson interval with it
    cell.update(value=100 * k / cell["n"], low=100 * wilson(k, cell["n"])[0], high=100 * wilson(k, cell["n"])[1])
    (folder / "results.json").write_text(json.dumps(doc))
    code, err = cli_in_process(capsys, "report", str(folder))
    assert code == 2 and "its outcomes give" in err and err.count("\n") == 1, err
    (folder / "results.json").unlink()
    os.mkfifo(folder / "results.json")
    out = rbench("report", str(folder), timeout=60)
    assert out.returncode == 2 and "results.json: cannot be read (is a FIFO" in out.stderr, out.stderr


def test_an_unrecognised_offline_setting_is_one_line(tiny_suite, tmp_path, capsys, monkeypatch):
    (tmp_path / "nothing").mkdir()
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("RBENCH_OFFLINE", "maybe")
    code, err = cli_in_process(capsys, "run", str(tiny_suite), "--store", str(tmp_path / "s"))
    assert code == 2 and "RBENCH_OFFLINE='maybe': give 1 (or true, yes, on) or 0" in err, err
    assert not (tmp_path / "s").exists()
