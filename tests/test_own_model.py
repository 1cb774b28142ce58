"""Your own model: the checkpoint plugin, ``rbench eval`` and ``rbench.evaluate`` on a network trained here
without rbench -- parity with foolbox run directly, keys made of bytes (not paths), errors before any work."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from support import REPO, cli_in_process, rbench, run_values

SUITES = REPO / "suites"

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NETS = '''
import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 5)
        self.fc = nn.Linear(width * 12 * 12, 10)

    def forward(self, x):
        return self.fc(torch.relu(nn.functional.max_pool2d(self.conv(x), 2)).flatten(1))


class Wide(SmallCNN):
    def __init__(self):
        super().__init__(16)


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        raise RuntimeError("no GPU here")


class FiveLogits(SmallCNN):
    def forward(self, x):
        return super().forward(x)[:, :5]


class IntOut(SmallCNN):
    def forward(self, x):
        return super().forward(x).long()


class Softmaxed(SmallCNN):
    def forward(self, x):
        return super().forward(x).softmax(1)


class Noisy(SmallCNN):
    def forward(self, x):
        return super().forward(x + 0.3 * torch.randn_like(x))


class Scaled(SmallCNN):
    def forward(self, x):
        return 1000.0 * super().forward(x)


class NoiseBySpread(SmallCNN):  # no noise on a constant image: the up-front check saw none on its grey images
    def forward(self, x):
        return super().forward(x + x.std() * torch.randn_like(x))


class BatchStandardized(SmallCNN):  # each image's logits depend on the rest of its batch
    def forward(self, x):
        return super().forward((x - x.mean(0, keepdim=True)) / (x.std(0, keepdim=True) + 0.1))


class Squeezed(SmallCNN):  # a slice's last batch may hold one image
    def forward(self, x):
        return super().forward(x).squeeze()


class BatchCentred(SmallCNN):
    def forward(self, x):
        return super().forward(x - x.mean())


class Rounded(SmallCNN):
    def forward(self, x):
        return super().forward(torch.round(x))


class FiveForLargeBatches(SmallCNN):
    def forward(self, x):
        out = super().forward(x)
        return out if len(x) <= 8 else out[:, :5]  # passes the up-front check (batches of 3 and 1)
'''
N = 200
FGSM, PGD = "fgsm:eps=0.1", "pgd:eps=0.1,steps=20,random_start=false"


def _load_class(path: Path, name: str) -> type:
    name_ = f"user_nets_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name_, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name_] = module  # as an import would (torch.save pickles the class by its module's name)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _train(model: torch.nn.Module, seed: int, steps: int = 40) -> torch.nn.Module:
    """A few Adam steps on real MNIST, by hand (no rbench): the user's own training."""
    from rbench.data import load_split

    images, labels = load_split("mnist", "train")
    x = torch.tensor(images[:2000].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    y = torch.tensor(labels[:2000], dtype=torch.long)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for i in range(steps):
        batch = slice((i * 50) % 2000, (i * 50) % 2000 + 50)
        opt.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A user's folder: nets.py, the trained SmallCNN as w.safetensors and w.pt (a state_dict), whole.pt (the
    pickled module), and other.safetensors (other weights of the same network)."""
    root = tmp_path_factory.mktemp("user")
    (root / "nets.py").write_text(NETS)
    cls = _load_class(root / "nets.py", "SmallCNN")
    torch.manual_seed(0)
    model = _train(cls(), seed=0)
    save_file(model.state_dict(), str(root / "w.safetensors"))
    save_file({k: v.to(torch.int32) for k, v in model.state_dict().items()}, str(root / "int.safetensors"))
    torch.save(model.state_dict(), root / "w.pt")
    torch.save(model, root / "whole.pt")
    (root / "garbage.pt").write_text("not weights at all\n")
    (root / "empty.pt").write_bytes(b"")
    (root / "own_beside_helper.py").write_text("SCALE = 1.0\n")
    (root / "with_helper.py").write_text("from own_beside_helper import SCALE\n" + NETS)
    (root / "truncated.pt").write_bytes((root / "w.pt").read_bytes()[:-200])
    with warnings.catch_warnings():  # TorchScript is deprecated; users still have such files
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(root / "scripted.pt"))
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, root / "parallel.pt")  # DataParallel's
    torch.save({**model.state_dict(), "epoch": 3}, root / "epoch.pt")
    torch.manual_seed(1)
    save_file(_train(cls(), seed=1, steps=10).state_dict(), str(root / "other.safetensors"))
    return root, model


def _eval(root: Path, *args: str, run: str, store: Path, cwd: Path | None = None):
    return rbench("eval", "nets.py:SmallCNN", *args, "--store", str(store), "--run-dir", str(root / run), "-q",
                  "--device", "cpu", cwd=cwd or root)


def _statuses(run_dir: Path) -> dict[str, str]:
    jobs = json.loads((run_dir / "results.json").read_text())["jobs"]
    return {job["label"]: job["status"] for job in jobs.values()}


def _foolbox_accuracy(model: torch.nn.Module) -> dict[str, float]:
    """Robust accuracy (%) under FGSM and PGD computed by foolbox directly on the user's model."""
    import foolbox as fb

    from rbench.data import load_split, subset_indices

    images, labels = load_split("mnist", "test")
    idx = subset_indices(len(images), N, 0)  # the evaluation's images: a subset seeded by the suite's seed (0)
    x = torch.tensor(images[idx].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    y = torch.tensor(labels[idx], dtype=torch.long)
    fmodel = fb.PyTorchModel(model.eval(), bounds=(0, 1))
    out = {}
    for label, attack in (("fgsm", fb.attacks.LinfFastGradientAttack(random_start=False)),
                          ("pgd", fb.attacks.LinfPGD(steps=20, abs_stepsize=2.5 * 0.1 / 20, random_start=False))):
        _, advs, _ = attack(fmodel, x, y, epsilons=0.1)
        with torch.no_grad():
            out[label] = 100 * (model(advs).argmax(1) == y).float().mean().item()
    with torch.no_grad():
        out["clean"] = 100 * (model(x).argmax(1) == y).float().mean().item()
    return out


def test_eval_and_evaluate_match_foolbox_run_directly(user, tmp_path):
    root, model = user
    pytest.importorskip("foolbox")
    expected = _foolbox_accuracy(model)
    store = tmp_path / "store"
    out = _eval(root, "--weights", "w.safetensors", "--attack", FGSM, "--attack", PGD, "--n", str(N),
                run="st", store=store)
    assert out.returncode == 0 and "near chance" not in out.stderr, out.stderr
    values = run_values(root / "st")
    table = "robust_accuracy"
    got = {"clean": values[(table, "clean", "SmallCNN")],
           "fgsm": values[(table, "fgsm(eps=0.1)", "SmallCNN")],
           "pgd": values[(table, "pgd(eps=0.1, random_start=False, steps=20)", "SmallCNN")]}
    for key in expected:
        assert abs(got[key] - expected[key]) <= 0.5, (key, got, expected)
    assert expected["pgd"] < expected["clean"] - 5  # the attack did something: the comparison is not vacuous

    # the same weights as a .pt state_dict: the same numbers
    out = _eval(root, "--weights", "w.pt", "--attack", FGSM, "--attack", PGD, "--n", str(N), run="pt",
                store=store)
    assert out.returncode == 0, out.stderr
    assert run_values(root / "pt") == values

    # the Python API on the in-memory model: the same numbers again
    import rbench

    results = rbench.evaluate(model, attacks=[FGSM, PGD], n=N, store=tmp_path / "api-store", device="cpu")
    api = {(r["row"], r["column"]): r["value"] for r in results.records()}
    assert api == {(row, col): v for (_, row, col), v in values.items()}
    assert results.errors == []


def test_generated_suite_repeats_the_run_and_keys_are_bytes_not_paths(user, tmp_path):
    root, _ = user
    store = tmp_path / "store"
    args = ("--attack", FGSM, "--n", "100")
    assert _eval(root, "--weights", "w.safetensors", *args, run="a", store=store).returncode == 0
    first = run_values(root / "a")
    assert set(_statuses(root / "a").values()) == {"done"}
    assert "trainer" not in (root / "a" / "suite.toml").read_text()  # default trainer: none (evaluated as is)
    assert f"# Generated by: rbench eval nets.py:SmallCNN --weights w.safetensors --n 100 --attack {FGSM}\n" in (
        root / "a" / "suite.toml").read_text()  # the options that made it, --n and --attack too

    # rbench run RUN_DIR/suite.toml: the same run, everything read back
    out = rbench("run", str(root / "a" / "suite.toml"), "--store", str(store), "--run-dir", str(tmp_path / "again"),
                 "-q")
    assert out.returncode == 0, out.stderr
    assert run_values(tmp_path / "again") == first
    assert set(_statuses(tmp_path / "again").values()) == {"cached"}

    # the same bytes under another name, in another folder, evaluated from another working directory: nothing
    # is recomputed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(root / "w.safetensors", elsewhere / "renamed.safetensors")
    shutil.copy(root / "nets.py", elsewhere / "nets.py")
    out = _eval(elsewhere, "--weights", "renamed.safetensors", *args, run="b", store=store)
    assert out.returncode == 0, out.stderr
    assert set(_statuses(elsewhere / "b").values()) == {"cached"}
    assert run_values(elsewhere / "b") == first

    # other weights written over the same file: every job of the model is recomputed
    shutil.copy(root / "other.safetensors", elsewhere / "renamed.safetensors")
    out = _eval(elsewhere, "--weights", "renamed.safetensors", *args, run="c", store=store)
    assert out.returncode == 0, out.stderr
    assert set(_statuses(elsewhere / "c").values()) == {"done"}
    assert run_values(elsewhere / "c") != first

    # the class's source file changed (a comment): recomputed too
    (elsewhere / "nets.py").write_text(NETS + "\n# changed\n")
    out = _eval(elsewhere, "--weights", "renamed.safetensors", *args, run="d", store=store)
    assert set(_statuses(elsewhere / "d").values()) == {"done"}


@pytest.mark.parametrize(("args", "message"), [
    (["missing.py:SmallCNN", "--weights", "w.safetensors"], "module file"),
    (["nets.py:Nope", "--weights", "w.safetensors"], "no class 'Nope'"),
    (["no_such_package_xyz.mod:Net", "--weights", "w.safetensors"], "cannot be imported"),
    (["nets.py:Broken", "--weights", "w.safetensors"], "Broken(**kwargs) failed: RuntimeError: no GPU here"),
    (["nets.py:SmallCNN", "--weights", "absent.safetensors"], "weights file"),
    (["nets.py:Wide", "--weights", "w.safetensors"], "weights 'conv.weight' have shape (8, 1, 5, 5); the network's "
                                                     "is (16, 1, 5, 5)"),
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--kwargs", '{"width": 4}'], "'conv.weight'"),
    (["nets.py:FiveLogits", "--weights", "w.safetensors"], "not logits of shape (N, 10)"),
    (["nets.py:IntOut", "--weights", "w.safetensors"], "the network's output is int64, not floating-point logits"),
    (["nets.py:SmallCNN", "--weights", "int.safetensors"], "weights 'conv.weight' are int32; the network's are "
                                                           "float32"),
    (["nets.py:SmallCNN", "--weights", "whole.pt"], "needs full unpickling, which rbench refuses"),
    (["nets.py:SmallCNN", "--weights", "garbage.pt"], "is not a file torch.save wrote (neither a zip archive nor a "
                                                      "pickle)"),
    (["nets.py:SmallCNN", "--weights", "empty.pt"], "empty.pt is empty"),
    (["with_helper.py:SmallCNN", "--weights", "w.safetensors"], "No module named 'own_beside_helper' "
     "(own_beside_helper.py lies beside it: put "),
    (["nets.py:SmallCNN", "--weights", "truncated.pt"], "truncated.pt is a damaged or truncated zip archive"),
    (["nets.py:SmallCNN", "--weights", "scripted.pt"], "scripted.pt is a TorchScript archive (torch.jit.save)"),
    (["nets.py:SmallCNN", "--weights", "parallel.pt"], "the weights lack 'conv.weight', which the network has "
     "(strict = true); the file has 'module.conv.weight': its names carry the prefix 'module.'"),
    (["nets.py:SmallCNN", "--weights", "epoch.pt"], "its entry 'epoch' is a int"),
    (["nets.py:Softmaxed", "--weights", "w.safetensors"], "the network's outputs look like probabilities"),
    (["nets.py:Noisy", "--weights", "w.safetensors"], "the network's outputs differ between two passes on the "
                                                      "same inputs"),
    (["nets.py:NoiseBySpread", "--weights", "w.safetensors"], "the network's outputs differ between two passes"),
    (["nets.py:BatchStandardized", "--weights", "w.safetensors"], "the network's output on valid inputs is not "
     "finite (it gives logits for a batch of 3)"),  # alone: its batch's spread is nan
    (["nets.py:Squeezed", "--weights", "w.safetensors"], "the network's output on 1 inputs is shape (10,), not "
     "logits of shape (N, 10) = (1, 10) (it gives logits for a batch of 3)"),
    (["nets.py:BatchCentred", "--weights", "w.safetensors"], "the network's output for an image depends on the "
     "other images in its batch (its logits alone and in a batch of 3 differ by up to "),
    (["nets.py:SmallCNN", "--weights", "nets.py"], "expected .safetensors, .pt or .pth"),
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--kwargs", "[1]"], "--kwargs"),
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--kwargs", '{"width": null}'],
     "--kwargs.width: null has no TOML form"),  # was: a deleted temporary file named
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--kwargs", '{"width": 8, "width": 16}'],
     "--kwargs: 'width' is given twice"),  # JSON kept the last silently
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--attack", "pgd:eps=big"], "--attack 'pgd:eps=big': eps"),
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--attack", "fgsm"],
     "--attack 'fgsm': eps: Field required (give it as fgsm:eps=VALUE)"),
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--attack", "pgd:eps=0x10"],
     "eps: a Linf budget of 16 exceeds 1"),  # TOML reads 0x10 as 16: a Linf ball that holds every image
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--attack", "fgsm:eps=nan"],
     "--attack 'fgsm:eps=nan': eps: not a finite number"),
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--attack", "pgd:eps=0.1,step_size=1e-320"],
     "--attack 'pgd:eps=0.1,step_size=1e-320': step_size: not a 32-bit float's value"),
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--attack", "pgd:epss=0.1"],
     "--attack 'pgd:epss=0.1': unknown parameter 'epss' of attack 'pgd'; did you mean 'eps'?"),
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--dataset", "cifar"], "--dataset 'cifar'"),
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--mean", "0.1", "--std", "0.3,0.3"], "mean"),
    (["nets.py:SmallCNN", "--weights", "w.safetensors", "--mean", "0.1,0.2", "--std", "0.3,0.3"],
     "--mean/--std: 2 values each, but mnist images have 1 channel"),  # was: "the network fails on inputs"
])
def test_errors_are_one_line_before_any_work(user, tmp_path, args, message, capsys, monkeypatch):
    """In this process (the console script's own exit path is tested in test_cli.py): a fresh interpreter per
    case cost ~3 s of torch imports each."""
    root, _ = user
    run_dir = tmp_path / "run"
    monkeypatch.chdir(root)
    code, err = cli_in_process(capsys, "eval", *args, "--store", str(tmp_path / "store"), "--run-dir", str(run_dir))
    assert code == 2, err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not run_dir.exists() and not (tmp_path / "store" / "objects").exists()


@pytest.mark.parametrize("cls, of", [("Scaled", "cross-entropy"), ("Rounded", "logits")])
def test_gradient_masking_fails_the_attacks_it_would_fool(user, tmp_path, cls, of):
    """The audit's two masked networks, the user's weights unchanged: logits scaled by 1000 (the softmax saturates,
    the cross-entropy's gradient underflows to 0) and a rounded input (no gradient anywhere) looked robust (PGD 0.3:
    84.5% and 93.0% where the plain network has 0%). Their gradient-attack cells now fail, naming gradient masking;
    the noise cells stand, and the scaled network's margin-loss PGD (default set) shows what it really is."""
    root, _ = user
    out = rbench("eval", f"nets.py:{cls}", "--weights", "w.safetensors", "--n", "64", "--store",
                 str(tmp_path / "store"), "--run-dir", str(tmp_path / "run"), "-q", "--device", "cpu", cwd=root)
    assert out.returncode == 1 and "gradient masking" in out.stdout, out.stderr  # 1: cells failed
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    cells = {c["row"]: c for c in results["tables"][0]["cells"]}
    for label in ("fgsm(eps=0.1)", "fgsm(eps=0.3)", "pgd(eps=0.1)", "pgd(eps=0.3)"):
        assert cells[label]["value"] is None and f"gradient masking in model 'checkpoint': the input gradient of " \
            f"its {of}" in cells[label]["error"], cells[label]
    assert cells["noise(eps=8.4)"]["value"] is not None and cells["clean"]["value"] > 50
    margin = cells["pgd_margin(eps=0.3)"]
    if cls == "Scaled":  # the margin is not saturated: the attack works, as on the unscaled network
        assert margin["value"] is not None and margin["value"] < cells["clean"]["value"] - 30, margin
    else:
        assert margin["value"] is None and "gradient masking" in margin["error"]


def test_logits_of_the_wrong_width_fail_the_eval_job(user, tmp_path):
    """The check before any work runs on two inputs: a network that returns 5 of 10 columns for larger batches
    had its clean accuracy stored and tabulated ("5.0 ±18.6"). The eval job checks every batch's logits."""
    root, _ = user
    out = rbench("eval", "nets.py:FiveForLargeBatches", "--weights", "w.safetensors", "--n", "64", "--attack",
                 "gaussian_noise:eps=1.0,norm=l2", "--store", str(tmp_path / "store"), "--run-dir",
                 str(tmp_path / "run"), "-q", "--device", "cpu", cwd=root)
    assert out.returncode == 1, out.stderr
    cells = {c["row"]: c for c in json.loads((tmp_path / "run" / "results.json").read_text())["tables"][0]["cells"]}
    assert cells["clean"]["value"] is None
    assert "is no classifier of this dataset: its output on 64 inputs is shape (64, 5), not logits of shape " \
        "(N, 10)" in cells["clean"]["error"], cells["clean"]


def test_near_chance_means_fewer_than_twice_chance_or_a_quarter_of_the_way_to_100():
    from rbench.own_model import TABLE, near_chance
    from rbench.results import Cell, ResultTable

    def results(value: float):
        table = ResultTable(TABLE, "T", ["clean"], ["m"], "attack", "model", {}, {}, [Cell("clean", "m", value)])
        return type("Results", (), {"tables": [table]})()

    assert near_chance(results(19.0), "m", 10) and not near_chance(results(21.0), "m", 10)
    assert near_chance(results(60.0), "m", 2) and not near_chance(results(70.0), "m", 2)  # not all under 100%


def test_a_model_near_chance_is_warned_about(user, tmp_path):
    """Untrained weights (or a model fed inputs in another range than it expects) read as "not robust" under
    every attack: a clean accuracy below twice chance is a warning naming the likely causes."""
    root, _ = user
    cls = _load_class(root / "nets.py", "SmallCNN")
    torch.manual_seed(5)
    save_file(cls().state_dict(), str(tmp_path / "untrained.safetensors"))
    out = rbench("eval", "nets.py:SmallCNN", "--weights", str(tmp_path / "untrained.safetensors"), "--n", "64",
                 "--attack", FGSM, "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / "run"), "-q",
                 "--device", "cpu", cwd=root)
    assert out.returncode == 0, out.stderr
    assert "warning: SmallCNN's clean accuracy is" in out.stderr and "near chance (10%)" in out.stderr, out.stderr


def _suite_of(root: Path, weights: Path, trainer: str = "") -> str:
    """A suite evaluating the user's SmallCNN with ``weights`` (and ``trainer``, a TOML line, if given)."""
    return f"""
        [suite]
        name = "mine"
        [datasets.mnist]
        plugin = "mnist"
        [models.mine]
        plugin = "checkpoint"
        params = {{ module = "{root / 'nets.py'}:SmallCNN", weights = "{weights}" }}
        dataset = "mnist"
        {trainer}
        [evaluations.e]
        dataset = "mnist"
        n = 10
        sources = ["mine"]
        """


def test_pickle_bearing_state_dict_is_refused_in_a_suite(user, write_suite):
    """A .pt that holds a pickled object beside its tensors (here the script's argparse namespace) is refused."""
    from rbench.errors import SuiteError
    from rbench.suite import load_suite

    root, model = user

    import argparse

    path = root / "payload.pt"
    torch.save({**model.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)  # as training scripts often do
    suite = write_suite(_suite_of(root, path))
    with pytest.raises(SuiteError, match="models.mine.params.*full unpickling"):
        load_suite(suite)


def test_a_problem_in_a_models_params_is_said_without_the_table_cut_short(user, write_suite):
    """A missing weights file ended "(got {'module': '...', 'weights': ..." cut at 80 characters: the table's own
    validator names the problem, so the table is not repeated."""
    from rbench.errors import SuiteError
    from rbench.suite import load_suite

    root, _ = user
    suite = write_suite(_suite_of(root, root / "absent.safetensors"))
    with pytest.raises(SuiteError) as info:
        load_suite(suite)
    assert str(info.value).endswith(f"models.mine.params: weights file {root / 'absent.safetensors'}: file not found")


def _clean_predictions(store: Path, jobs: dict) -> torch.Tensor:
    from rbench.store import Store

    [key] = [k for k, j in jobs.items() if j["label"].startswith("eval ")]
    return torch.tensor(Store(store).load_predictions(key).logits)  # a copy: stored arrays are read-only


def test_naming_a_trainer_fine_tunes_on_purpose(user, write_suite, tmp_path):
    """The default trainer of a checkpoint is none (its train job only stores the weights); a named trainer
    fine-tunes the loaded weights (the lineage starts from the user's file: another key)."""
    from rbench.plan import build_plan
    from rbench.suite import load_suite

    root, _ = user
    weights = root / "w.safetensors"
    as_is = build_plan(load_suite(write_suite(_suite_of(root, weights), "a.toml")))
    tuned = build_plan(load_suite(write_suite(_suite_of(
        root, weights, 'trainer = { plugin = "standard", params = { epochs = 1 } }'), "b.toml")))
    [job_a] = [j for j in as_is.jobs.values() if j.kind == "train"]
    [job_b] = [j for j in tuned.jobs.values() if j.kind == "train"]
    assert job_a.spec.trainer.plugin == "none" and job_b.spec.trainer.plugin == "standard"
    assert job_a.key != job_b.key
    assert "module" not in job_a.spec.model["params"]  # the key sees bytes, not paths
    assert job_a.spec.model["params"]["weights_sha256"]

    # fine-tuning starts from the user's weights: with a vanishing learning rate, the same predictions
    frozen = write_suite(_suite_of(root, weights, 'n_train = 500\ntrainer = { plugin = "standard", params = { '
                                                  'epochs = 1, lr = 1e-12 } }'), "c.toml")
    runs = {}
    for name, suite in (("as_is", write_suite(_suite_of(root, weights), "a.toml")), ("frozen", frozen)):
        out = rbench("run", str(suite), "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / name), "-q")
        assert out.returncode == 0, out.stderr
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())["jobs"]
    assert {j["status"] for j in runs["frozen"].values()} == {"done"}  # its own jobs, computed
    predictions = {name: _clean_predictions(tmp_path / "store", jobs) for name, jobs in runs.items()}
    assert torch.allclose(predictions["as_is"], predictions["frozen"], atol=1e-5)


def test_evaluate_warns_about_a_model_near_chance(tmp_path):
    """As ``rbench eval`` does: an untrained network reads as "not robust" at every attack, which says nothing."""
    import rbench

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with pytest.warns(UserWarning, match=r"^Sequential's clean accuracy is \d+\.\d%, near chance \(10%\): .*"
                                         r"a normalization belongs in the model"):
        rbench.evaluate(model, attacks=[FGSM], n=50, store=tmp_path / "store", device="cpu")


def test_evaluate_caches_in_memory_models_by_their_bytes(user, tmp_path):
    import rbench

    _, model = user
    store = tmp_path / "store"
    first = rbench.evaluate(model, attacks=[FGSM], n=100, store=store, device="cpu")
    assert {j["status"] for j in first.run.jobs.values()} == {"done"}
    again = rbench.evaluate(model, attacks=[FGSM], n=100, store=store, device="cpu")
    assert {j["status"] for j in again.run.jobs.values()} == {"cached"}
    assert [r["value"] for r in again.records()] == [r["value"] for r in first.records()]
    record = next(r for r in first.records() if r["column"] == "fgsm(eps=0.1)" or r["row"] == "fgsm(eps=0.1)")
    assert {j["label"].split()[0] for j in record["provenance"]["jobs"]} >= {"attack", "eval", "load"}
    assert record["n"] == 100 and record["ci_low"] <= record["value"] <= record["ci_high"]
    assert record["interval"] == "wilson" and record["provenance"]["precision"] == "fp32"
    assert Path(record["provenance"]["store"]).resolve() == store.resolve()
    assert "SmallCNN" in str(first) and "| fgsm(eps=0.1)" in first.to_markdown()

    changed = _train(type(model)(), seed=3, steps=5)  # other weights: recomputed
    again = rbench.evaluate(changed, attacks=[FGSM], n=100, store=store, device="cpu")
    assert {j["status"] for j in again.run.jobs.values()} == {"done"}


def _added_to_suite(root: Path, suite: Path, profile: tuple[str, ...], store: Path, run_dir: Path,
                    transfer: tuple[str, ...], models: list[str]) -> dict:
    """``rbench eval --suite``: the model is a row and a column of each ``transfer`` matrix and a column where
    the suite's models are columns; returns the run's cell values."""
    out = rbench("eval", "nets.py:SmallCNN", "--weights", "w.safetensors", "--suite", str(suite), *profile,
                 "--store", str(store), "--run-dir", str(run_dir), "-q", cwd=root)
    assert out.returncode == 0, out.stderr
    tables = {t["name"]: t for t in json.loads((run_dir / "results.json").read_text())["tables"]}
    for name in transfer:
        assert tables[name]["rows"] == tables[name]["columns"] == [*models, "SmallCNN"]
    assert any(t["columns"] == [*models, "SmallCNN"] and t["row_axis"] == "attack" for t in tables.values())
    return run_values(run_dir)


def test_eval_adds_the_model_to_a_suite(user, tiny_reference, tmp_path):
    """--suite: the model joins every evaluation, beside the suite's own models, whose jobs are the suite's own
    (read back from the store: the cells are those of the suite run alone)."""
    root, _ = user
    suite, reference_store, _, alone = tiny_reference
    store = tmp_path / "store"
    shutil.copytree(reference_store, store)
    run_dir = tmp_path / "with"
    with_model = _added_to_suite(root, suite, (), store, run_dir, ("transfer",), ["mlp", "cnn"])
    own = {label: status for label, status in _statuses(run_dir).items() if "SmallCNN" not in label}
    assert own and set(own.values()) == {"cached"}
    for cell, value in alone.items():
        assert with_model[cell] == value


@pytest.mark.full
def test_eval_adds_the_model_to_the_quickstart(user, tmp_path):
    """The issue's own check: --suite suites/quickstart.toml (quick profile) adds a row and a column to both
    transfer matrices; the suite run alone afterwards computes nothing new and gives the same cells."""
    root, _ = user
    store = tmp_path / "store"
    with_model = _added_to_suite(root, SUITES / "quickstart.toml", ("--profile", "quick"), store,
                                 tmp_path / "with", ("transfer_pgd", "transfer_fgsm"), ["mlp", "lenet"])
    alone = rbench("run", str(SUITES / "quickstart.toml"), "--profile", "quick", "--store", str(store), "--run-dir",
                   str(tmp_path / "alone"), "-q")
    assert alone.returncode == 0, alone.stderr
    assert set(_statuses(tmp_path / "alone").values()) == {"cached"}
    for cell, value in run_values(tmp_path / "alone").items():
        assert with_model[cell] == value


def test_flattened_suite_plans_the_same_jobs(tmp_path):
    """A suite flattened into one file (includes merged, profile applied, paths absolute) plans exactly the jobs
    of the original: the same keys, so eval --suite reuses every stored result."""
    from rbench.flatten import flatten_suite, write_suite
    from rbench.plan import build_plan
    from rbench.suite import load_suite

    for suite, profile in ((SUITES / "mnist_full.toml", None), (SUITES / "mnist_full.toml", "quick")):
        path = tmp_path / f"flat-{profile}.toml"
        write_suite(flatten_suite(suite, profile), path)
        original, flat = build_plan(load_suite(suite, profile)), build_plan(load_suite(path))
        assert set(flat.jobs) == set(original.jobs)
        assert flat.suite.published == original.suite.published


def test_attack_strings_are_parsed_as_toml_values():
    from rbench.own_model import parse_attack

    assert parse_attack("pgd:eps=0.3,steps=100,norm=l2,random_start=false") == (
        "pgd", {"eps": 0.3, "steps": 100, "norm": "l2", "random_start": False})
    assert parse_attack("fgsm") == ("fgsm", {})
    # lists and inline tables hold commas: they were cut there ("'1]' is not key=value"), so foolbox's kwargs
    # could not be given on the command line at all
    assert parse_attack('foolbox:attack=L2DeepFoolAttack,kwargs={steps=50, overshoot=0.02},tag="a,b",b=[0, 1]') == (
        "foolbox", {"attack": "L2DeepFoolAttack", "kwargs": {"steps": 50, "overshoot": 0.02}, "tag": "a,b",
                    "b": [0, 1]})
    from rbench.errors import RbenchError

    # an apostrophe in a bare word is a letter, and a basic string's escaped quote does not end it (both swallowed
    # the following items into the value, silently)
    assert parse_attack("x:tag=O'Brien,steps=50") == ("x", {"tag": "O'Brien", "steps": 50})
    assert parse_attack('x:tag="a\\"b",steps=50') == ("x", {"tag": 'a"b', "steps": 50})
    for text, problem in [("x:b=[0, 1,steps=50", "a bracket left open"), ("x:b=[0,1]],steps=50", "a ']' closes "
                          "nothing"), ("x:t='abc,s=1", "a quote left open"), ('x:a="""x"y,z""",c=1', "a: not a TOML "
                          "value (Unterminated string)"), ("x:a=[1,,2]", "a: not a TOML value (Invalid value)"),
                          ("x:a=", "a: no value after '='")]:  # each was read as a string, or cut silently
        with pytest.raises(RbenchError, match=rf"^--attack {re.escape(repr(text))}: {re.escape(problem)}$"):
            parse_attack(text)
    for text in ("pgd:eps=0.3,,steps=100", "pgd:eps=0.3,"):  # a value left out was skipped silently
        with pytest.raises(RbenchError, match=r"an empty item between commas"):
            parse_attack(text)
    for text in ("pgd:eps=0.1\nsteps=3", "pgd:eps=0.1 # steps=3"):  # TOML read one value, the rest was dropped
        with pytest.raises(RbenchError, match=r"eps: one value per key \(no line break or '#'\)"):
            parse_attack(text)


def test_checkpoint_normalization_happens_inside_the_model(user, tmp_path):
    """mean/std: the network sees normalized inputs while attacks work in [0, 1] pixels."""
    from rbench.plugins import get_plugin

    root, _ = user
    plugin = get_plugin("model", "checkpoint")
    params = plugin.Params.model_validate({"module": f"{root / 'nets.py'}:SmallCNN", "weights": "w.safetensors",
                                           "mean": [0.1307], "std": [0.3081]}, context={"base": root})
    net = plugin.build(params)
    plugin.load_weights(net, params, params.weights)
    plain = plugin.build(plugin.Params.model_validate({"module": f"{root / 'nets.py'}:SmallCNN",
                                                       "weights": "w.safetensors"}, context={"base": root}))
    plugin.load_weights(plain, params, params.weights)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(net(x), plain((x - 0.1307) / 0.3081), atol=1e-5)


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's ten-line example (the Python API) runs as written, on a tiny n."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("```python\n# rbench.evaluate") + len("```python\n")
    code = readme[start:readme.index("```", start)]
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    code = code.replace("n=1000", "n=50")
    namespace: dict = {}
    exec(compile(textwrap.dedent(code), "README.md", "exec"), namespace)
    assert namespace["results"].errors == []


def test_a_suite_cannot_forge_the_resolved_fields(user, write_suite):
    """The digests and source come from the files, never from the suite: a suite giving them (no weights file:
    a network that would be evaluated with random weights under a made-up key) is refused."""
    from rbench.errors import SuiteError
    from rbench.suite import load_suite

    root, _ = user
    text = _suite_of(root, root / "w.safetensors").replace(
        f'params = {{ module = "{root / "nets.py"}:SmallCNN", weights = "{root / "w.safetensors"}" }}',
        'params = { class_name = "SmallCNN", source = "x", source_sha256 = "ab", weights_sha256 = "cd" }')
    assert "class_name" in text
    with pytest.raises(SuiteError, match="models.mine.params: 'class_name' is filled in by rbench"):
        load_suite(write_suite(text))


def test_in_memory_models_differ_by_their_layers_not_only_their_weights():
    """Two nn.Sequential with the same weights but different parameter-free layers get different keys."""
    from rbench.plugins import get_plugin

    torch.manual_seed(0)
    relu = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    sigmoid = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.Sigmoid(),
                                  torch.nn.Linear(16, 10))
    sigmoid.load_state_dict(relu.state_dict())
    checkpoint = get_plugin("model", "checkpoint")
    assert checkpoint.register_live(relu) != checkpoint.register_live(sigmoid)
    assert checkpoint.register_live(relu) == checkpoint.register_live(relu)  # the same model: the same key


def test_an_untrusted_suite_runs_none_of_its_model_code(user, write_suite, tmp_path, monkeypatch):
    """``RBENCH_PLUGINS=""`` is the way to run a suite one does not trust: a model module the suite names is not
    executed (here one that writes a file when imported), the suite is refused naming the setting."""
    from rbench.errors import SuiteError
    from rbench.suite import load_suite

    root, _ = user
    marker = tmp_path / "ran"
    code = tmp_path / "sidefx.py"
    code.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n" + NETS)
    suite = write_suite(_suite_of(root, root / "w.safetensors").replace(str(root / "nets.py"), str(code)))
    monkeypatch.setenv("RBENCH_PLUGINS", "")
    with pytest.raises(SuiteError, match="models.mine.params: module .*RBENCH_PLUGINS is empty"):
        load_suite(suite)
    assert not marker.exists()
    monkeypatch.delenv("RBENCH_PLUGINS")
    load_suite(suite)  # trusted: the code runs
    assert marker.exists()


def test_a_fifo_or_folder_named_as_module_or_weights_is_refused_not_read(user, tmp_path, capsys, monkeypatch):
    """A FIFO as the module file would block the reader forever, a device fill memory: neither is opened."""
    root, _ = user
    os.mkfifo(tmp_path / "fifo.py")
    (tmp_path / "folder.safetensors").mkdir()
    monkeypatch.chdir(root)
    for args, message in (([f"{tmp_path / 'fifo.py'}:Net", "--weights", "w.safetensors"], "is a FIFO, not a regular"),
                          (["/dev/zero:Net", "--weights", "w.safetensors"], "is a character device, not a regular"),
                          (["nets.py:SmallCNN", "--weights", str(tmp_path / "folder.safetensors")],
                           "is a directory, not a regular file")):
        code, err = cli_in_process(capsys, "eval", *args, "--store", str(tmp_path / "store"), "--run-dir",
                                   str(tmp_path / "run"))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_attack_labels_show_what_differs_from_the_defaults_and_repeats_are_named_by_them():
    """('pgd', {eps, steps=40, norm, random_start}) hit the key of 'pgd:eps=0.1' but was labelled with every
    param; a second --attack pgd:... was labelled 'pgd-2(...)'."""
    from rbench.errors import RbenchError
    from rbench.own_model import attack_entries

    entries = attack_entries(["pgd:eps=0.1", "pgd:eps=0.3,steps=100", "fgsm:eps=0.1",
                              ("pgd", {"eps": 0.2, "steps": 40, "norm": "linf", "random_start": True})])
    assert entries == {"pgd": {"plugin": "pgd", "grid": {"eps": [0.1]}},
                       "pgd(eps=0.3, steps=100)": {"plugin": "pgd", "params": {"eps": 0.3, "steps": 100}},
                       "fgsm": {"plugin": "fgsm", "grid": {"eps": [0.1]}},
                       "pgd(eps=0.2)": {"plugin": "pgd", "params": {"eps": 0.2}}}
    with pytest.raises(RbenchError, match=r"given twice \(as pgd\(eps=0.1\)\)"):
        attack_entries(["pgd:eps=0.1", ("pgd", {"eps": 0.1, "steps": 40})])
    with pytest.raises(RbenchError, match=r"given twice \(as pgd\(eps=0.3, steps=10\)\)"):
        attack_entries(["pgd:eps=0.3,steps=10", "pgd:steps=10,eps=0.3"])


def test_evaluate_takes_one_attack_as_a_string_and_names_its_own_argument(tmp_path):
    """``attacks="fgsm:eps=0.1"`` was read character by character ("--attack 'f': unknown attack plugin"); the
    API's errors name ``attacks``, not the CLI's --attack."""
    import rbench
    from rbench.errors import RbenchError

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with pytest.raises(RbenchError, match=r"^attacks 'fgsm:epss=0\.1': unknown parameter 'epss' of attack 'fgsm'"):
        rbench.evaluate(model, attacks="fgsm:epss=0.1", n=10, store=tmp_path / "store", device="cpu")
    with pytest.raises(RbenchError, match=r"^attacks 'pgd': eps: Field required \(give it as pgd:eps=VALUE\)$"):
        rbench.evaluate(model, attacks=["pgd"], n=10, store=tmp_path / "store", device="cpu")
    assert not (tmp_path / "store").exists()  # refused before any work


def test_helper_modules_a_model_file_imports_are_keyed_by_their_bytes(tmp_path, monkeypatch):
    """A model file importing a helper on PYTHONPATH served its old results after the helper changed (the key held
    the file's text only): the helper's bytes enter the key, and a job planned before the change refuses to run.
    A self-contained file keeps the key it had (no digest)."""
    from rbench.plugins import get_plugin
    from rbench.plugins.models.checkpoint import find_class

    plugin = get_plugin("model", "checkpoint")
    (tmp_path / "own_helpers_k.py").write_text("from torch import nn\n\nclass Lin(nn.Linear):\n    pass\n")
    (tmp_path / "netsk.py").write_text("from torch import nn\nfrom own_helpers_k import Lin\n\n"
                                       "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                                       "        self.fc = Lin(784, 10)\n\n    def forward(self, x):\n"
                                       "        return self.fc(x.flatten(1))\n")
    (tmp_path / "alone.py").write_text("from torch import nn\n\nclass M(nn.Module):\n    def __init__(self):\n"
                                       "        super().__init__()\n        self.fc = nn.Linear(784, 10)\n\n"
                                       "    def forward(self, x):\n        return self.fc(x.flatten(1))\n")
    weights = {f"fc.{k}": v for k, v in torch.nn.Linear(784, 10).state_dict().items()}
    save_file(weights, str(tmp_path / "w.safetensors"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "own_helpers_k", raising=False)

    def resolve(module: str):
        return plugin.Params.model_validate({"module": module, "weights": "w.safetensors"}, strict=True,
                                            context={"base": tmp_path})

    alone = resolve("alone.py:M")
    assert alone.imports_sha256 == "" and "imports_sha256" not in alone.model_dump(mode="json")  # its old key
    before = resolve("netsk.py:M")
    assert before.imports_sha256 and "imports_sha256" in before.model_dump(mode="json")
    (tmp_path / "own_helpers_k.py").write_text("from torch import nn\n\nclass Lin(nn.Linear):\n"
                                               "    def forward(self, x):\n        return -super().forward(x)\n")
    assert resolve("netsk.py:M").imports_sha256 != before.imports_sha256  # other keys: nothing stale served
    planned = plugin.Params.model_validate(before.model_dump(mode="json"), strict=True)  # as a job reads its spec
    with pytest.raises(ValueError, match=r"^the local modules the model file imports \(own_helpers_k\) changed since"):
        find_class(planned)

    # what the files import, not what the process happens to have imported: a package's other submodule, imported
    # by another model of the suite after this one was planned, changes nothing (it failed every run)
    (tmp_path / "own_pkg_k").mkdir()
    for name in ("__init__", "a", "b"):
        (tmp_path / "own_pkg_k" / f"{name}.py").write_text("from torch import nn\n\nclass Lin(nn.Linear):\n    pass\n")
    (tmp_path / "netsa.py").write_text((tmp_path / "netsk.py").read_text().replace("own_helpers_k", "own_pkg_k.a"))
    for name in ("own_pkg_k", "own_pkg_k.a", "own_pkg_k.b"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    planned = plugin.Params.model_validate(resolve("netsa.py:M").model_dump(mode="json"), strict=True)
    __import__("own_pkg_k.b")
    find_class(planned)
    from rbench.plugins.models.code_keys import local_modules
    assert sorted(local_modules((tmp_path / "netsa.py").read_text(), None)) == ["own_pkg_k", "own_pkg_k.a"]


class _Counting(torch.nn.Module):
    """Counts its calls in a buffer (saved with it): it changes itself with every batch, as a BatchNorm left in
    training mode does, though its outputs do not show it."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return self.body(x)


def test_a_model_that_changes_itself_fails_its_jobs_naming_it_not_the_attack(tmp_path):
    """Its clean cell was served as if the model were one function, and its attack jobs blamed the attack."""
    import rbench

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # untrained: near chance
        result = rbench.evaluate(_Counting(), attacks=[FGSM], n=20, store=tmp_path / "store", device="cpu")
    assert all(r["value"] is None for r in result.records())
    evals = [e for e in result.errors if e.startswith("eval")]
    said = "model 'checkpoint' changed itself while it was evaluated ('calls' and 0 more tensors): rbench evaluates " \
        "a model that stays as it is"
    assert evals and all(said in e for e in evals), result.errors
    attack = next(e for e in result.errors if e.startswith("attack"))
    assert "attack 'fgsm' changed the model it attacks ('calls' and 0 more tensors): a plugin must leave the model " \
           "as it got it (or, where the plugin writes nothing to it, model 'checkpoint' changes itself when" in attack
