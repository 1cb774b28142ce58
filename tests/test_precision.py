"""``precision`` (``[suite] precision``, ``rbench run --precision``): bf16/fp16 autocast for attack, transform and
eval jobs. fp32 keys are the keys jobs always had; a bf16 plan shares its trained models with the fp32 one; a bf16
run completes, is read back whole by the next run (the validity gate re-predicts bf16 sets in bf16), and its
robust accuracy stays close to fp32's (the real measurement is the quickstart's, in README.md)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from support import TINY_SUITE

from rbench import gates
from rbench.errors import RbenchError
from rbench.plan import Job, build_plan
from rbench.precision import autocast, check_precision
from rbench.runner import run_suite
from rbench.specs import AttackSpec, Call, DataSlice, EvalSpec, TransformSpec
from rbench.store import Store
from rbench.suite import load_suite

# the tiny suite's two models, one attack of each path (FGSM, PGD, a transform of PGD's sets), one evaluation
SUITE = TINY_SUITE[:TINY_SUITE.index("[attacks.fgsm]")] + """
[attacks.fgsm]
plugin = "fgsm"
params = { eps = 0.1 }

[attacks.pgd]
plugin = "pgd"
params = { eps = 0.2, steps = 3 }

[attacks.pgd_clipped]
transform = "clip"
input = "pgd"
params = { norm = "linf", eps = 0.1 }

[evaluations.wb]
dataset = "mnist"
n = 64
batch_size = 25
sources = ["mlp", "cnn"]
attacks = ["fgsm", "pgd", "pgd_clipped"]

[tables.errors]
evaluation = "wb"
rows = "attack"
columns = "model"
metric = "error"
"""

DATA = DataSlice(Call("mnist", "1", {}), "test", 64, 3)


def test_an_fp32_spec_is_keyed_as_one_without_the_field():
    attack = Call("pgd", "1", {"eps": 0.1})
    specs = [AttackSpec(attack, "src", 3, data=DATA), TransformSpec(attack, "in", "src", DATA, 3),
             EvalSpec("model", clean=DATA), EvalSpec("model", advset="adv")]
    for spec in specs:
        assert replace(spec, precision="fp32").to_dict() == spec.to_dict()
        assert "precision" not in spec.to_dict()
        assert replace(spec, precision="bf16").to_dict() == {**spec.to_dict(), "precision": "bf16"}


def test_bf16_keys_attacks_and_evals_anew_but_shares_the_trained_models(write_suite):
    suite = load_suite(write_suite(SUITE))
    fp32 = build_plan(suite)
    assert set(build_plan(replace(suite, precision="fp32")).jobs) == set(fp32.jobs)
    bf16 = build_plan(replace(suite, precision="bf16"))
    trained = {k for k, j in fp32.jobs.items() if j.kind == "train"}
    assert trained == {k for k, j in bf16.jobs.items() if j.kind == "train"}  # the store trains once
    others = set(bf16.jobs) - trained
    assert others and not others & set(fp32.jobs) and len(bf16.jobs) == len(fp32.jobs)
    assert all(bf16.jobs[k].record["precision"] == "bf16" for k in others)
    assert all("precision" not in j.record for j in fp32.jobs.values())
    # every bf16 job draws the random numbers of its fp32 twin (an eval of a bf16 set, a transform of one too: a
    # randomized defense's noise), so the two differ by the arithmetic alone
    seeds = {j.label: j.seed for j in fp32.jobs.values()}
    assert seeds == {j.label: j.seed for j in bf16.jobs.values()}
    assert {type(j.spec).__name__ for j in others_jobs(bf16, others)} == {"AttackSpec", "TransformSpec", "EvalSpec"}
    fp16 = build_plan(replace(suite, precision="fp16"))
    assert not (set(fp16.jobs) - trained) & others


def others_jobs(plan, keys):
    return [plan.jobs[k] for k in keys]


def test_the_suite_sets_the_precision(write_suite):
    path = write_suite(SUITE.replace('seed = 3\n', 'seed = 3\nprecision = "bf16"\n'))
    suite = load_suite(path)
    assert suite.precision == "bf16"
    plain = load_suite(write_suite(SUITE, "plain.toml"))
    assert set(build_plan(suite).jobs) == set(build_plan(replace(plain, precision="bf16")).jobs)


def test_autocast_and_check_precision():
    layer = torch.nn.Linear(4, 3)
    x = torch.rand(2, 4)
    with autocast("fp32", "cpu"):
        assert layer(x).dtype == torch.float32
    with autocast("bf16", torch.device("cpu")):
        assert layer(x).dtype == torch.bfloat16
    with autocast("fp16", "cpu"):
        assert layer(x).dtype == torch.float16
    assert check_precision("bf16") == "bf16"
    with pytest.raises(RbenchError, match="--precision 'fp64': not a precision"):
        check_precision("fp64")


def test_the_gate_re_predicts_a_reduced_precision_set_in_the_jobs_batches():
    spec = AttackSpec(Call("pgd", "1", {"eps": 0.1}), "src", 3, data=DATA)
    model = torch.nn.Linear(2, 2)
    for precision, batch in (("fp32", 1000), ("bf16", 25), ("fp16", 25)):
        job = Job("k", "attack", replace(spec, precision=precision), ("src",), "attack", {"batch_size": 25})
        assert gates._flag_batch(job, model, precision) == batch
    transform = Job("t", "transform", TransformSpec(spec.attack, "in", "src", DATA, 3, "bf16"), (), "t")
    assert gates._flag_batch(transform, model, "bf16") == 1000  # run_transform re-predicts in one call


def test_a_bad_precision_is_one_line_and_exit_2(tiny_suite, write_suite, tmp_path, monkeypatch, capsys):
    from rbench.cli import main  # the console script's entry point, in this process

    store = str(tmp_path / "store")
    bad_suite = write_suite(SUITE.replace('seed = 3\n', 'seed = 3\nprecision = "fp64"\n'), "bad.toml")
    monkeypatch.chdir(tmp_path)
    for args, fragment in ((["run", str(tiny_suite), "--store", store, "--precision", "half"],
                            "--precision 'half': not a precision (one of fp32, bf16, fp16)"),
                           (["run", str(bad_suite), "--store", store], "suite.precision"),
                           (["eval", "nets.py:Net", "--weights", "w.pt", "--store", store, "--precision", "bf32"],
                            "--precision 'bf32'")):
        monkeypatch.setattr("sys.argv", ["rbench", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        out = capsys.readouterr()
        assert exit_.value.code == 2, (out.out, out.err)
        assert out.err.startswith("rbench: error: ") and out.err.count("\n") == 1, out.err
        assert fragment in out.err, out.err
    assert not Path(store).exists() and not (tmp_path / "runs").exists()  # nothing was done


def _run(path: Path, store: Path, run_dir: Path, precision: str | None):
    return run_suite(path, profile=None, store=Store(store), run_dir=run_dir, device="cpu", workers=1,
                     executor="local", console=Console(quiet=True), quiet=True, precision=precision)


def _cells(outcome) -> dict:
    return {(c.row, c.column): c.value for t in outcome.results.tables for c in t.cells}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_torch_thread):
    """The suite run in fp32, then in bf16, on one store."""
    root = tmp_path_factory.mktemp("precision")
    suite = root / "suite.toml"
    suite.write_text(SUITE)
    fp32 = _run(suite, root / "store", root / "run32", None)
    bf16 = _run(suite, root / "store", root / "run16", "bf16")
    return suite, root, fp32, bf16


@pytest.mark.slow
def test_a_bf16_run_completes_and_is_read_back_whole(runs):
    suite, root, fp32, bf16 = runs
    assert {r.status for r in fp32.job_results.values()} == {"done"}, fp32.failed
    statuses = {r.label: r.status for r in bf16.job_results.values()}
    assert {s for label, s in statuses.items() if label.startswith("train")} == {"cached"}
    assert {s for label, s in statuses.items() if not label.startswith("train")} == {"done"}, bf16.failed
    again = _run(suite, root / "store", root / "run16b", "bf16")
    assert {r.status for r in again.job_results.values()} == {"cached"}
    # with the gate's memos gone, the gate re-predicts every set's flags (in bf16, on the CPU) and accepts them
    shutil.rmtree(root / "store" / "gates")
    regated = _run(suite, root / "store", root / "run16c", "bf16")
    assert {r.status for r in regated.job_results.values()} == {"cached"}
    assert _cells(regated) == _cells(bf16)
    regated_jobs = [r for r in regated.job_results.values() if not r.label.startswith("train")]
    assert len(list((root / "store" / "gates").glob("*.json"))) == len(regated_jobs)


@pytest.mark.slow
def test_the_precision_is_recorded_and_the_contract_holds(runs):
    suite, root, fp32, bf16 = runs
    store = Store(root / "store")
    plan = build_plan(replace(load_suite(suite), precision="bf16"))
    for job in plan.jobs.values():
        meta = store.recorded_meta(job.key)
        assert meta["provenance"]["precision"] == ("fp32" if job.kind == "train" else "bf16"), job.label
        assert meta["spec"].get("precision") == (None if job.kind == "train" else "bf16")
        if job.kind in ("attack", "transform"):
            adv = store.load_advset(job.key)
            assert adv.x_adv.dtype == np.float32 and 0 <= adv.x_adv.min() and adv.x_adv.max() <= 1
        elif job.kind == "eval":
            assert store.load_predictions(job.key).logits.dtype == np.float32
    for run_dir, precision in (("run32", "fp32"), ("run16", "bf16")):
        assert json.loads((root / run_dir / "results.json").read_text())["provenance"]["precision"] == precision


@pytest.mark.slow
def test_bf16_robust_accuracy_is_close_to_fp32(runs):
    _, _, fp32, bf16 = runs
    a, b = _cells(fp32), _cells(bf16)
    assert a.keys() == b.keys() and len(a) == 8
    # errors in % on 64 images (one image: 1.6 pp); the quickstart's measured difference is in README.md
    assert max(abs(a[k] - b[k]) for k in a) <= 6.25, (a, b)
