"""End to end: a tiny real suite on real MNIST, run twice (the second computes nothing), on one and on two
workers, with failing plugins, a budget violation, Ctrl-C and resume, and re-rendering from the run folder."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from rich.console import Console
from support import RBENCH, rbench

from rbench.attack import AttackOutput, FixedBudgetAttack, misclassified
from rbench.estimate import Estimate
from rbench.manager import PluginInfo, get_registry
from rbench.results import RunResults
from rbench.runner import run_suite
from rbench.store import Store

pytestmark = pytest.mark.slow


def _run(path: Path, store: Path, run_dir: Path, **kw):
    return run_suite(path, profile=None, store=Store(store), run_dir=run_dir, device=kw.pop("device", "cpu"),
                     workers=kw.pop("workers", None), executor="local", console=Console(quiet=True), quiet=True)


def _values(results: RunResults) -> dict:
    return {(t.name, c.row, c.column): c.value for t in results.tables for c in t.cells}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The tiny suite run once on a cold store, in this process (one inline worker)."""
    from support import SHARED_DATA, TINY_SUITE

    mp = pytest.MonkeyPatch()
    mp.setenv("RBENCH_DATA", str(SHARED_DATA))
    root = tmp_path_factory.mktemp("first")
    suite = root / "tiny.toml"
    suite.write_text(TINY_SUITE)
    outcome = _run(suite, root / "store", root / "run1")
    yield suite, root, outcome
    mp.undo()


def test_cold_run_computes_everything_and_writes_the_run_folder(first_run):
    suite, root, outcome = first_run
    statuses = {r.status for r in outcome.job_results.values()}
    assert statuses == {"done"}, outcome.failed
    # 2 trainings, 2 sources x 4 attack sets, 2 x 5 white-box evals, 2 cross evals (the rest are shared)
    assert len(outcome.job_results) == 22
    files = {p.name for p in (root / "run1").iterdir()}
    assert {"results.json", "tables.md", "tables.csv"} <= files
    results = RunResults.read(root / "run1")
    errors = next(t for t in results.tables if t.name == "errors")
    clean, pgd = errors.cell("clean", "cnn").value, errors.cell("pgd", "cnn").value
    assert clean is not None and pgd is not None and pgd > clean  # PGD raises the error
    assert all(len(c.jobs) == 1 and c.jobs[0] in outcome.job_results for c in errors.cells)
    assert results.provenance["packages"]["torch"].startswith("2.")


def test_attack_outputs_honour_their_budgets(first_run):
    _, _, outcome = first_run
    summary = next(t for t in outcome.results.tables if t.name == "summary")
    linf = "distortion (norm=linf)"
    assert summary.cell("fgsm(eps=0.1)", linf).value <= 0.1 + 1e-6
    assert summary.cell("pgd", linf).value <= 0.2 + 1e-6
    assert summary.cell("clean", linf).value is None  # not applicable, rendered "-"


def test_second_run_computes_nothing_and_gives_identical_tables(first_run):
    suite, root, outcome = first_run
    again = _run(suite, root / "store", root / "run2")
    assert {r.status for r in again.job_results.values()} == {"cached"}
    assert _values(again.results) == _values(outcome.results)


def test_report_re_renders_without_recomputing(first_run):
    _, root, outcome = first_run
    md = rbench("report", str(root / "run1"), "--format", "md")
    assert md.returncode == 0 and "| attack \\ model" in md.stdout
    csv_out = rbench("report", str(root / "run1"), "--format", "csv")
    lines = csv_out.stdout.splitlines()
    assert lines[0].startswith("table,row_axis,row") and len(lines) == 1 + sum(len(t.cells) for t in
                                                                                   outcome.results.tables)
    js = json.loads(rbench("report", str(root / "run1"), "-f", "json").stdout)
    assert {t["name"] for t in js["tables"]} == {"errors", "summary", "transfer"}
    bad = rbench("report", str(root / "run1"), "--format", "pdf")
    assert bad.returncode == 2 and "unknown reporter plugin 'pdf'" in bad.stderr
    missing = rbench("report", str(root / "nowhere"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_two_workers_compute_the_same_tables(first_run, tmp_path):
    suite, _, outcome = first_run
    out = rbench("run", str(suite), "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / "run"),
                 "--workers", "2", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    results = RunResults.read(tmp_path / "run")
    ours, theirs = _values(results), _values(outcome.results)
    assert ours.keys() == theirs.keys()
    # separate processes use another thread count: float reductions may differ, so allow a sample or two
    assert all(a is None and b is None or abs(a - b) <= 100 * 2 / 64 + 1e-9 for a, b in
               ((ours[k], theirs[k]) for k in ours))
    assert "22 done" in out.stdout
    # the live log (one line per finished job) goes to stderr, so that stdout is just the tables and the summary
    assert " done train " in out.stderr and " done " not in out.stdout.replace("22 done", "")
    assert "┃" in out.stdout and "┃" not in out.stderr


class _Broken(FixedBudgetAttack):
    name = "broken"
    norm = "linf"

    class Params(BaseModel):
        eps: float = 0.1

    def run(self, model, x, y, params, *, generator=None):
        raise RuntimeError("plugin bug")


class _Greedy(_Broken):
    name = "greedy"

    def run(self, model, x, y, params, *, generator=None):
        x_adv = (x + 2 * params.eps * torch.ones_like(x)).clamp(0, 1)
        return AttackOutput(x_adv, misclassified(model, x_adv, y))


class _Vandal(_Broken):
    """Zeroes the model's weights and claims success wherever the zeroed model errs (re-predicted with the same
    model object, its flags would pass)."""

    name = "vandal"

    def run(self, model, x, y, params, *, generator=None):
        for p in model.parameters():
            p.zero_()
        return AttackOutput(x.clone(), misclassified(model, x, y))


@pytest.fixture
def rogue_plugins():
    registry = get_registry()
    objects = (_Broken(), _Greedy(), _Vandal())
    for obj in objects:
        registry.plugins["attack"][obj.name] = PluginInfo("attack", obj.name, "0", "tests", "tests", obj)
    yield
    for obj in objects:
        registry.plugins["attack"].pop(obj.name)


def test_a_failing_job_fails_alone(first_run, rogue_plugins, tmp_path):
    suite, root, _ = first_run
    text = suite.read_text().replace('attacks = ["fgsm", "pgd", "noise"]',
                                     'attacks = ["fgsm", "bad", "greedy", "vandal"]')
    text += "".join(f'\n[attacks.{a}]\nplugin = "{p}"\n' for a, p in (("bad", "broken"), ("greedy", "greedy"),
                                                                        ("vandal", "vandal")))
    path = tmp_path / "bad.toml"
    path.write_text(text)
    outcome = _run(path, root / "store", tmp_path / "run")
    failed = {r.label: r.error for r in outcome.failed}
    assert set(failed) == {f"{kind} {on}" for attack in ("bad", "greedy", "vandal") for kind, on in (
        ("attack", f"{attack} on mlp"), ("attack", f"{attack} on cnn"), ("eval", f"mlp on {attack}@mlp"),
        ("eval", f"cnn on {attack}@cnn"))}
    assert "attack 'vandal' changed the model it attacks" in failed["attack vandal on cnn"]
    assert "RuntimeError: plugin bug" in failed["attack bad on mlp"] and "'broken'" in failed["attack bad on mlp"]
    assert "exceeds its declared linf budget 0.1" in failed["attack greedy on cnn"]
    assert "sample" in failed["attack greedy on cnn"]
    assert "needs attack bad on mlp, which failed" in failed["eval mlp on bad@mlp"]
    errors = next(t for t in outcome.results.tables if t.name == "errors")
    assert errors.cell("bad", "mlp").value is None and errors.cell("bad", "mlp").error
    assert errors.cell("fgsm(eps=0.1)", "mlp").value is not None  # the rest of the graph ran
    import csv

    with open(tmp_path / "run" / "tables.csv", newline="") as f:
        rows = {(r["table"], r["row"], r["column"]): r for r in csv.DictReader(f)}
    failed_row = rows[("errors", "bad", "mlp")]  # a failed cell is not a blank one: its error is there
    assert failed_row["value"] == "" and "RuntimeError: plugin bug" in failed_row["error"]
    assert rows[("errors", "fgsm(eps=0.1)", "mlp")]["error"] == ""


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(first_run, tmp_path):
    suite, _, outcome = first_run
    store = tmp_path / "store"
    proc = subprocess.Popen([RBENCH, "run", str(suite), "--store", str(store), "--run-dir", str(tmp_path / "r1"),
                             "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell's background jobs inherit SIGINT ignored; a user's terminal does not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(store.glob("objects/*/*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    stored_before = set(Store(store).keys())
    assert stored_before  # the first checkpoint was kept
    again = _run(suite, store, tmp_path / "r2")
    assert not again.failed
    assert {k for k, r in again.job_results.items() if r.status == "cached"} == stored_before
    assert _values(again.results) == _values(outcome.results)


def test_the_unit_is_not_repeated_when_the_title_gives_it():
    from rbench.report.reporters import title_unit
    from rbench.results import Cell, ResultTable

    table = ResultTable("t", "Errors by model", ["a"], ["b"], "rows", "columns", {"error": "%"}, {"error": ".1f"},
                        [Cell("a", "b", 1.0)], "", metric_of={"a|b": "error"})
    assert title_unit(table) == "%"
    table.title = "Errors (%) by model"
    assert title_unit(table) == ""


def test_every_title_says_how_many_samples_its_cells_rest_on(first_run, tmp_path):
    from rbench.report.reporters import full_title
    from rbench.results import Cell, ResultTable

    table = ResultTable("t", "Errors by model", ["a", "c"], ["b"], "rows", "columns", {"error": "%"},
                        {"error": ".1f"}, [Cell("a", "b", 1.0, n=1000), Cell("c", "b", 2.0, n=40)], "",
                        metric_of={"a|b": "error", "c|b": "error"})
    assert full_title(table) == "Errors by model (%; n = 40 to 1000 per cell)"
    table.cells[1] = Cell("c", "b", None, n=3, error="failed")  # a failed cell's n is not shown
    table.title = "Errors (%) by model"
    assert full_title(table) == "Errors (%) by model (n = 1000 per cell)"
    table.cells = [Cell("a", "b", 0.1)]  # no n (a binned statistic): nothing to add
    assert full_title(table) == "Errors (%) by model"
    run_dir = first_run[2].run_dir  # each reporter shows it, and the terminal's title is one unwrapped line
    n = {c.n for c in first_run[2].results.tables[0].cells}
    shown = f"n = {n.pop()} per cell" if len(n) == 1 else "n = "
    assert shown in (run_dir / "tables.md").read_text() and shown in (run_dir / "report.html").read_text()
    suite, root = first_run[0], first_run[1]
    out = rbench("run", str(suite), "--store", str(root / "store"), "--run-dir", str(tmp_path / "again"), "-q",
                 env={"COLUMNS": "40"})  # narrower than the title: rich's table title would wrap
    assert out.returncode == 0 and any(line.startswith(first_run[2].results.tables[0].title) and shown in line
                                       for line in out.stdout.splitlines()), out.stdout


class _Returns:
    """A metric plugin returning a fixed object, whatever the cell."""

    from rbench.dataset import NoParams as Params

    unit, fmt, label = "", ".3g", ""

    def __init__(self, name: str, value: object):
        self.name, self.value, self.label = name, value, name

    def references(self, params):
        return []

    def compute(self, cell, params):
        return self.value


RETURNS = {"r_array": np.array([1.0, 2.0]), "r_string": "12.5", "r_bool": True, "r_object": object(),
           "r_np": np.float32(0.5), "r_tensor": torch.tensor([0.25]), "r_int": np.int64(3),
           "r_interval": Estimate(50.0, 10, 60.0, 70.0, "t"),  # an interval that does not hold its value
           "r_wilson": Estimate(50.0, 10, 10.0, 90.0, "wilson"),  # a "rate" whose interval is not Wilson's
           "r_samples": Estimate(2.0, 3, 1.0, 3.0, "t", samples=np.array([1.0, 3.0])),  # n = 3, 2 kept
           "r_percent": 250.0}  # in % (the metric's unit): shown as "250.0" in a % table


def test_a_metric_value_that_is_not_a_number_is_that_cell_s_error_never_a_crash_or_a_parsed_string(first_run,
                                                                                                  tmp_path):
    suite, root, _ = first_run
    registry = get_registry()
    for name, value in RETURNS.items():
        metric = _Returns(name, value)
        metric.unit = "%" if name == "r_percent" else ""
        registry.plugins["metric"][name] = PluginInfo("metric", name, "0", "tests", "tests", metric)
    try:
        path = tmp_path / "values.toml"
        path.write_text(suite.read_text() + '\n[tables.values]\nevaluation = "wb"\nrows = "metric"\ncolumns = '
                        '"model"\nwhere = { attack = "pgd" }\nmetrics = [' + ", ".join(f'"{n}"' for n in RETURNS)
                        + "]\n")
        outcome = _run(path, root / "store", tmp_path / "run")
    finally:
        for name in RETURNS:
            registry.plugins["metric"].pop(name)
    assert outcome.failed_cells
    cells = {c.row: c for t in outcome.results.tables if t.name == "values" for c in t.cells if c.column == "mlp"}
    assert {row: cells[row].value for row in ("r_np", "r_tensor", "r_int")} == {"r_np": 0.5, "r_tensor": 0.25,
                                                                                  "r_int": 3.0}
    for row, kind in (("r_array", "ndarray"), ("r_string", "str"), ("r_bool", "bool"), ("r_object", "object")):
        assert cells[row].value is None, row
        assert cells[row].error.startswith(f"metric {row!r} returned {kind} "), cells[row].error
        assert cells[row].error.endswith("a metric returns a number, an rbench.Estimate or None")
    assert cells["r_string"].error.startswith("metric 'r_string' returned str '12.5': ")  # its repr, once
    assert cells["r_interval"].value is None and cells["r_interval"].error == \
        "metric 'r_interval' returned 50.0 with an interval [60.0, 70.0] that does not hold it"
    # what reading the run's results.json back would refuse is found here, in the cell, naming the metric
    assert cells["r_wilson"].value is None and "metric 'r_wilson' returned an estimate rbench cannot stand " \
        "behind: its interval [10.0, 90.0] is not the Wilson interval of 5 of 10" in cells["r_wilson"].error
    assert cells["r_samples"].value is None and cells["r_samples"].error.endswith("its n = 3 but it kept 2 samples")
    assert cells["r_percent"].value is None and cells["r_percent"].error == \
        "metric 'r_percent' returned 250: outside [0, 100], where a value in % lies"


def test_a_run_into_a_used_folder_leaves_only_its_own_files(first_run, tmp_path):
    """A second run into the same folder, drawing fewer figures, removes the first run's (report.html must not
    embed a figure of tables this run does not have); files rbench did not write stay."""
    import shutil

    suite, root, outcome = first_run
    folder = tmp_path / "run"
    shutil.copytree(outcome.run_dir, folder)
    figures = sorted(p.name for p in folder.glob("*.png"))
    assert figures and ".rbench-outputs.json" in {p.name for p in folder.iterdir()}
    (folder / "notes.txt").write_text("mine")
    out = rbench("run", str(suite), "--store", str(root / "store"), "--run-dir", str(folder), "-q",
                 "--only", "transfer")
    assert out.returncode == 0, out.stderr
    gone = [name for name in figures if "transfer" not in name]
    assert gone and {p.name for p in folder.glob("*.png")} == set(figures) - set(gone)
    assert (folder / "notes.txt").read_text() == "mine"
    html = (folder / "report.html").read_text()
    assert not any(name in html for name in gone)
    assert json.loads((folder / "results.json").read_text())["tables"][0]["name"] == "transfer"


def test_the_runner_checks_what_an_executor_reports(tiny_reference, tmp_path, monkeypatch):
    """An executor that returns no result for a job, or reports one done without storing its output, does not get
    a number into a table: a job with no result failed (said so), and a missing output makes its cells errors."""
    import shutil

    from rbench.executors import JobResult

    suite, store_dir, run_dir, _ = tiny_reference
    shutil.copytree(store_dir, tmp_path / "store")
    jobs = json.loads((run_dir / "results.json").read_text())["jobs"]
    silent, liar = (next(k for k, j in jobs.items() if j["label"] == label)
                    for label in ("eval mlp on clean mnist/test", "eval cnn on clean mnist/test"))
    store = Store(tmp_path / "store")
    for key in (silent, liar):
        for path in store.paths(key):
            path.unlink()

    class Careless:
        name = "careless"

        def run(self, plan, store, jobs, *, devices, workers, observer, job_timeout=None, params=None):
            return {job.key: JobResult(job.key, job.label, "done") for job in jobs if job.key != silent}

    monkeypatch.setitem(get_registry().plugins["executor"], "careless",
                        PluginInfo("executor", "careless", "0", "tests", "tests", Careless()))
    outcome = run_suite(suite, profile=None, store=Store(tmp_path / "store"), run_dir=tmp_path / "run",
                        device="cpu", workers=None, executor="careless", console=Console(quiet=True), quiet=True)
    assert outcome.job_results[silent].status == "failed"
    assert "executor 'careless' returned no result for this job" in outcome.job_results[silent].error
    cells = {c.split(":")[0]: c for c in outcome.failed_cells}  # the clean cells read both: errors, not numbers
    assert {"errors (clean, mlp)", "errors (clean, cnn)"} <= set(cells), outcome.failed_cells
    assert liar in cells["errors (clean, cnn)"]  # the output the executor said it made is named missing


def test_an_output_an_executor_stored_around_the_engine_is_checked_before_it_is_tabulated(tiny_reference, tmp_path,
                                                                                           monkeypatch):
    """An executor that writes its own outputs (not through rbench.execution.compute, whose gates it skips) still
    gets no unchecked number into a table: an adversarial set moved after it was made (checksum and key binding
    intact) fails its job, is quarantined, and the evaluations made from it are skipped."""
    import shutil

    from rbench.artifacts import AdvSet
    from rbench.executors import JobResult
    from rbench.jobs import run_job
    from rbench.model import no_progress

    suite, store_dir, run_dir, _ = tiny_reference
    shutil.copytree(store_dir, tmp_path / "store")
    jobs = json.loads((run_dir / "results.json").read_text())["jobs"]
    attack = next(k for k, j in jobs.items() if j["label"] == "attack pgd on mlp")
    readers = {k for k, j in jobs.items() if attack in j["deps"]}
    store = Store(tmp_path / "store")
    for key in (attack, *readers):
        for path in store.paths(key):
            path.unlink()

    class Rogue:
        name = "rogue"

        def run(self, plan, store, jobs, *, devices, workers, observer, job_timeout=None, params=None):
            for job in jobs:  # computed, but outside compute(); the attack's set then pushed past its budget
                run_job(job, store, "cpu", no_progress)
                if job.key == attack:
                    adv = store.load_advset(attack)
                    x_adv = np.clip(adv.x_adv + 0.5, 0, 1).astype(np.float32)
                    store.save_advset(attack, AdvSet(x_adv, adv.success, adv.labels, adv.targets, adv.indices,
                                                     adv.distortion, adv.extras, adv.meta))
            return {job.key: JobResult(job.key, job.label, "done") for job in jobs}

    monkeypatch.setitem(get_registry().plugins["executor"], "rogue",
                        PluginInfo("executor", "rogue", "0", "tests", "tests", Rogue()))
    outcome = run_suite(suite, profile=None, store=store, run_dir=tmp_path / "run", device="cpu", workers=None,
                        executor="rogue", console=Console(quiet=True), quiet=True)
    result = outcome.job_results[attack]
    assert result.status == "failed" and "not trusted, moved to" in result.error, result.error  # the gate's word
    assert result.error.endswith("its job failed") and "its l2 distortions are not those of its inputs" in result.error
    assert not store.has(attack) and readers
    assert all(outcome.job_results[k].status == "skipped" and "'attack pgd on mlp' failed its checks" in
               outcome.job_results[k].error for k in readers)
    assert any("pgd" in cell for cell in outcome.failed_cells), outcome.failed_cells
    untouched = [r for k, r in outcome.job_results.items() if k not in readers and k != attack]
    assert {r.status for r in untouched} == {"cached"}


def test_a_run_folder_holds_the_suite_it_ran_and_the_digests_of_its_files(tiny_reference, tmp_path):
    """``suite.resolved.toml`` (includes merged, profile applied, paths absolute) runs the same jobs again from the
    run folder alone; results.json records the SHA-256 of the files the suite was read from."""
    import hashlib
    import shutil

    suite, store_dir, run_dir, values = tiny_reference
    provenance = json.loads((run_dir / "results.json").read_text())["provenance"]
    assert provenance["files"] == {str(suite): hashlib.sha256(suite.read_bytes()).hexdigest()}
    assert {"scipy", "foolbox", "adversarial-robustness-toolbox"} <= set(provenance["packages"])
    shutil.copytree(store_dir, tmp_path / "store")
    copied = tmp_path / "elsewhere" / "suite.toml"  # the run folder's copy, moved away from the original
    copied.parent.mkdir()
    shutil.copy(run_dir / "suite.resolved.toml", copied)
    out = rbench("run", str(copied), "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / "again"), "-q")
    assert out.returncode == 0, out.stderr
    jobs = json.loads((tmp_path / "again" / "results.json").read_text())["jobs"]
    assert {j["status"] for j in jobs.values()} == {"cached"}  # the same keys
    assert set(jobs) == set(json.loads((run_dir / "results.json").read_text())["jobs"])
    again = rbench("run", str(copied), "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / "again"), "-q")
    assert again.returncode == 0 and (tmp_path / "again" / "suite.resolved.toml").is_file()  # kept by a rerun
    computed = [j["computed"] for j in jobs.values()]  # where each cached output was made, from its own record
    assert all("threads" in c["device"] and c["seconds"] >= 0 and c["rbench"] and c["created"] for c in computed)


def test_a_run_folder_removed_while_the_suite_runs_is_not_made_again_unguarded(tiny_reference, tmp_path,
                                                                              monkeypatch, capsys):
    """The signal audit deleted the run folder while jobs computed: the run made it again at the end, without the
    lock it holds (another run or report could write into it meanwhile), and said nothing."""
    import shutil

    from support import cli_in_process

    import rbench.runner

    suite, store, _, _ = tiny_reference
    folder = tmp_path / "run"
    real = rbench.runner.assemble

    def folder_removed_meanwhile(*args, **kwargs):
        shutil.rmtree(folder)
        return real(*args, **kwargs)

    monkeypatch.setattr(rbench.runner, "assemble", folder_removed_meanwhile)
    code, err = cli_in_process(capsys, "run", str(suite), "--store", str(shutil.copytree(store, tmp_path / "s")),
                               "--run-dir", str(folder), "-q", "--device", "cpu")
    assert code == 1 and err == (f"rbench: error: run folder {folder} was removed while the suite ran: nothing was "
                                 "written there; the results are stored: run the same command again to write them "
                                 "(nothing is recomputed)\n"), err
    assert not folder.exists()


def test_a_run_folder_removed_while_its_reports_are_written_fails_the_run_not_the_input(tiny_reference, tmp_path,
                                                                                       monkeypatch, capsys):
    """The run folder deleted while the reporters wrote: the next report's write made the folder again, without the
    run's lock, and the run ended well (exit 0); where a write failed instead, it ended with exit 2, the code of bad
    input. It is the folder gone, as above (exit 1)."""
    import shutil

    from support import cli_in_process

    import rbench.runner

    suite, store, _, _ = tiny_reference
    folder = tmp_path / "run"
    real = rbench.runner.write_text_report
    calls = []

    def folder_removed_after_the_first_report(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            shutil.rmtree(folder)
        return real(*args, **kwargs)

    monkeypatch.setattr(rbench.runner, "write_text_report", folder_removed_after_the_first_report)
    code, err = cli_in_process(capsys, "run", str(suite), "--store", str(shutil.copytree(store, tmp_path / "s")),
                               "--run-dir", str(folder), "-q", "--device", "cpu")
    assert len(calls) == 2 and code == 1, (code, err)
    assert err == (f"rbench: error: run folder {folder} was removed while the suite ran: nothing was written there; "
                   "the results are stored: run the same command again to write them (nothing is recomputed)\n"), err

    import rbench.report.html  # the review: removed while a figure reporter writes (its failure is only a note)

    monkeypatch.setattr(rbench.runner, "write_text_report", real)
    drawn = rbench.report.html.write_output

    def folder_removed_while_drawing(*args, **kwargs):
        shutil.rmtree(folder, ignore_errors=True)
        return drawn(*args, **kwargs)

    monkeypatch.setattr(rbench.report.html, "write_output", folder_removed_while_drawing)
    code, err = cli_in_process(capsys, "run", str(suite), "--store", str(tmp_path / "s"), "--run-dir", str(folder),
                               "-q", "--device", "cpu")
    assert code == 1 and "was removed while the suite ran" in err, (code, err)


def test_a_run_folder_removed_while_rbench_report_writes_is_one_line_and_exit_1(tiny_reference, tmp_path,
                                                                                monkeypatch, capsys):
    """The review: `rbench report RUN -f html` whose folder went meanwhile ended with an unwritable file's line and
    exit 2, the code of bad input; the run's case is exit 1."""
    import shutil

    from support import cli_in_process

    import rbench.report.html

    suite, store, _, _ = tiny_reference
    folder = tmp_path / "run"
    code, err = cli_in_process(capsys, "run", str(suite), "--store", str(shutil.copytree(store, tmp_path / "s")),
                               "--run-dir", str(folder), "-q", "--device", "cpu")
    assert code == 0, err
    drawn = rbench.report.html.write_output

    def folder_removed_while_drawing(*args, **kwargs):
        shutil.rmtree(folder)
        return drawn(*args, **kwargs)

    monkeypatch.setattr(rbench.report.html, "write_output", folder_removed_while_drawing)
    code, err = cli_in_process(capsys, "report", str(folder), "-f", "html")
    assert code == 1 and err == (f"rbench: error: run folder {folder} was removed while rbench report wrote into "
                                 "it: it was not made again\n"), (code, err)
    assert not folder.exists()
