"""Pieces of the Uličný, Lundström & Byttner 2016 reproduction: the paper's LeNet params (input and output dropout,
Xavier init), the equal-distortion transform ``scale_to_distortion`` (exactly FGSM / clipped noise at a scaled
size, hitting a target distortion on real MNIST), staged adversarial training ``adversarial_stages`` (equations 1
and 3, the pool, robustness gained on real MNIST), the ``curves`` reporter, and the published Table 2."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from support import REPO

from rbench.artifacts import AdvSet, Predictions, distortions
from rbench.compare import load_published
from rbench.errors import RbenchError
from rbench.keys import content_key
from rbench.model import TrainData
from rbench.plugins import get_plugin
from rbench.plugins.trainers.adversarial_stages import AdversarialStagesParams, minibatches, two_stage_examples
from rbench.plugins.transforms.distortion import solve_alpha
from rbench.report.curves import Curves, curves
from rbench.results import Cell, ResultTable, RunResults
from rbench.store import Store

CPU = torch.device("cpu")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@cache
def _mnist(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from rbench.data import load_split

    images, labels = load_split("mnist", split)
    return torch.tensor(images[:n].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255, torch.tensor(labels[:n])


def _lenet(**params) -> torch.nn.Module:
    plugin = get_plugin("model", "lenet")
    return plugin.build(plugin.Params(**params))


def _small_lenet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return _lenet(channels=[8, 16], hidden=64, dropout=0, init="xavier")


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    """A snapshot as the engine hands it to a trainer: a copy, in eval mode, with frozen parameters."""
    snap = copy.deepcopy(model).eval()
    for p in snap.parameters():
        p.requires_grad_(False)
    return snap


def _stage(model, x, y, lineage, seed=1, **params) -> dict:
    trainer = get_plugin("trainer", "adversarial_stages")
    return trainer.train(model, TrainData(x, y), trainer.Params(**params),
                         generator=torch.Generator().manual_seed(seed), device=CPU, lineage=lineage)


def _accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


class _Committee(torch.nn.Module):
    """The mean softmax of its members, as log-probabilities (what the ``ensemble`` plugin averages)."""

    def __init__(self, members):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x):
        return torch.stack([m(x).softmax(1) for m in self.members]).mean(0).log()


def _fgsm(model, x, y, eps):
    fgsm = get_plugin("attack", "fgsm")
    return fgsm.run(model, x, y, fgsm.Params(eps=eps)).x_adv


@pytest.fixture(scope="module")
def base_model():
    """A small LeNet trained briefly on real MNIST (the chain's first snapshot), with its training data."""
    x, y = _mnist("train", 2000)
    model = _small_lenet()
    _stage(model, x, y, [], iterations=300, lr=0.05)
    return _frozen(model), x, y


# --- LeNet -------------------------------------------------------------------------------------------------------


def test_default_lenet_builds_exactly_as_before():
    """With the new params at their defaults, the network, its parameter names, its random draws and its params
    dump (so every job key of existing suites) are those of the plugin before they existed."""
    torch.manual_seed(0)
    net = _lenet()
    torch.manual_seed(0)  # the network as it was built before: modules in this order, torch's initialisation
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 20, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(20, 50, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(800, 500), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                              torch.nn.Linear(500, 10))
    state, expected = net.state_dict(), {f"net.{k}": v for k, v in ref.state_dict().items()}
    assert [(k, tuple(v.shape)) for k, v in state.items()] == [
        ("net.0.weight", (20, 1, 5, 5)), ("net.0.bias", (20,)), ("net.3.weight", (50, 20, 5, 5)),
        ("net.3.bias", (50,)), ("net.7.weight", (500, 800)), ("net.7.bias", (500,)), ("net.10.weight", (10, 500)),
        ("net.10.bias", (10,))]
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net.eval()(x)
        assert torch.equal(out, ref.eval()(x))
    # the value measured with the plugin as it was before these params (torch 2.13, seed 0)
    assert float(out[0, 0]) == pytest.approx(-0.026851829141378403, abs=1e-6)
    dump = get_plugin("model", "lenet").Params().model_dump(mode="json")
    assert dump == {"channels": [20, 50], "kernel_size": 5, "hidden": 500, "activation": "relu",
                    "dropout": [0.0, 0.0, 0.5], "weight_decay": 0.0, "input_shape": [1, 28, 28], "num_classes": 10}


def test_lenet_table1_dropout_places_and_xavier_init():
    net = _lenet(input_dropout=0.2, dropout=[0.2, 0.2, 0.5], logit_dropout=0.5, init="xavier")  # Table 1 "All"
    layers = list(net.net)
    assert isinstance(layers[0], torch.nn.Dropout) and isinstance(layers[-1], torch.nn.Dropout)
    assert [m.p for m in layers if isinstance(m, torch.nn.Dropout)] == [0.2, 0.2, 0.2, 0.5, 0.5]
    dump = get_plugin("model", "lenet").Params(input_dropout=0.2, init="xavier").model_dump(mode="json")
    assert dump["input_dropout"] == 0.2 and dump["init"] == "xavier" and "logit_dropout" not in dump
    for layer in net.weighted:  # Glorot & Bengio: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); zero biases
        fan_in, fan_out = layer.weight[0].numel(), layer.weight.shape[0] * layer.weight[0, 0].numel()
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
        assert float(layer.weight.detach().std()) == pytest.approx(bound / 3**0.5, rel=0.1)
    torch.manual_seed(3)
    a = _lenet(init="xavier").state_dict()
    torch.manual_seed(3)
    assert all(torch.equal(v, w) for v, w in zip(a.values(), _lenet(init="xavier").state_dict().values(),
                                                  strict=True))
    # output dropout: in training each logit is dropped or scaled by 1 / (1 - p); in eval nothing changes
    torch.manual_seed(0)
    out_only = _lenet(dropout=0, logit_dropout=0.5)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    clean = out_only.eval()(x)
    torch.manual_seed(1)
    noisy = out_only.train()(x)
    dropped = noisy == 0
    assert 0.3 < float(dropped.float().mean()) < 0.7
    assert torch.allclose(noisy[~dropped], 2 * clean[~dropped], atol=1e-6)
    for bad in ({"init": "he"}, {"input_dropout": 1.0}, {"logit_dropout": -0.1}):
        with pytest.raises(ValidationError):
            get_plugin("model", "lenet").Params(**bad)


# --- scale_to_distortion -------------------------------------------------------------------------------------------


def _set_mean_abs(x, x_adv) -> float:
    """The paper's eq. 2 as the engine stores it: per-sample mean_abs, averaged over the set."""
    return float(np.mean(distortions(x.numpy(), x_adv.numpy())["mean_abs"], dtype=np.float64))


@pytest.mark.parametrize("base", ["fgsm", "noise"])
def test_scale_to_distortion_hits_the_target_and_equals_the_scaled_attack(base_model, base):
    model, _, _ = base_model
    x, y = _mnist("test", 1000)
    scale = get_plugin("transform", "scale_to_distortion")
    noise = get_plugin("attack", "gaussian_noise")
    size0 = 0.02
    if base == "fgsm":
        x_base = _fgsm(model, x, y, size0)
    else:
        x_base = noise.run(model, x, y, noise.Params(sigma=size0), generator=torch.Generator().manual_seed(5)).x_adv
    for target in (0.05, 0.1, 0.2):
        out = scale.apply(x, x_base, scale.Params(mean_abs=target))
        assert out.dtype == torch.float32 and out.shape == x.shape and 0 <= out.min() and out.max() <= 1
        assert _set_mean_abs(x, out) == pytest.approx(target, rel=1e-3)
        alpha = solve_alpha(x, x_base, target)
        assert alpha > 1
        if base == "fgsm":  # the very set FGSM makes at eps = alpha * eps0 (the same gradient signs)
            direct = _fgsm(model, x, y, alpha * size0)
        else:  # clipped noise at sigma = alpha * sigma0 with the same draws
            direct = noise.run(model, x, y, noise.Params(sigma=alpha * size0),
                               generator=torch.Generator().manual_seed(5)).x_adv
        assert (out - direct).abs().max() <= 1e-6
    # the paper's pairing of noise levels: FGSM reaches dist 0.1 at an eps near 0.19 (half the pixels are 0)
    if base == "fgsm":
        assert 0.1 < solve_alpha(x, x_base, 0.1) * size0 < 0.3


def test_scale_to_distortion_refuses_what_it_cannot_do_exactly():
    x, _ = _mnist("test", 200)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    x_base = (x + 0.05 * z).clamp(0, 1)
    own = _set_mean_abs(x, x_base)
    scale = get_plugin("transform", "scale_to_distortion")
    with pytest.raises(ValueError, match=r"already above mean_abs = 0\.01.*scaling down is not exact") as below:
        scale.apply(x, x_base, scale.Params(mean_abs=0.01))
    with pytest.raises(ValueError, match=r"mean_abs = 0\.9 cannot be reached: clipping to \[0, 1\] saturates") as above:
        scale.apply(x, x_base, scale.Params(mean_abs=0.9))
    assert "\n" not in str(below.value) + str(above.value)
    with pytest.raises(ValueError, match="does not differ from its clean inputs"):
        scale.apply(x, x.clone(), scale.Params(mean_abs=0.1))
    # a target just below the base set's own distortion (within the 1e-3 tolerance) is alpha = 1: the set as it is
    assert torch.equal(scale.apply(x, x_base, scale.Params(mean_abs=own * (1 - 5e-4))), x_base)
    assert _set_mean_abs(x, scale.apply(x, x_base, scale.Params(mean_abs=own * 1.01))) == pytest.approx(own * 1.01,
                                                                                                        rel=1e-5)
    for bad in (0, -0.1, 1.0, float("nan")):
        with pytest.raises(ValidationError):
            scale.Params(mean_abs=bad)


# --- adversarial_stages ------------------------------------------------------------------------------------------


def test_two_stage_examples_follow_equations_1_and_3():
    torch.manual_seed(0)
    model = _frozen(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)))
    x, y = _mnist("train", 20)
    eps, c = 0.1, 0.5
    xr = x.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    x_r = (x + eps * g1.sign()).clamp(0, 1)  # eq. 1: the gradient sign image
    xr2 = x_r.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(F.cross_entropy(model(xr2), y, reduction="sum"), xr2)
    expected = (x_r + c * g2).clamp(0, 1)  # eq. 3
    got = two_stage_examples(model, x, y, eps, c)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(two_stage_examples(model, x, y, eps, c, batch_size=3), got, atol=1e-6)  # per sample
    assert torch.equal(two_stage_examples(model, x, y, eps, 0.0), x_r)  # c = 0: plain FGSM
    assert not torch.equal(got, x_r) and all(p.grad is None for p in model.parameters())


def test_minibatches_cover_the_pool_once_per_pass():
    batches = minibatches(10, 4, torch.Generator().manual_seed(0))
    first = torch.cat([next(batches) for _ in range(5)])  # 20 draws: two full passes over the 10 indices
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:].tolist()) == list(range(10))
    assert all(len(next(batches)) == 4 for _ in range(5))
    assert len(next(minibatches(3, 64, torch.Generator()))) == 3


def test_stage_pool_stats_and_determinism(base_model):
    snapshot, x, y = base_model
    x, y = x[:200], y[:200]
    second = _frozen(_small_lenet(1))
    runs = []
    for _ in range(2):
        model = copy.deepcopy(second).train()
        for p in model.parameters():
            p.requires_grad_(True)
        runs.append((model, _stage(model, x, y, [snapshot, second], iterations=3, batch_size=16)))
    (a, stats), (b, _) = runs
    assert stats["pool_size"] == 3 * len(x) and stats["lineage"] == 2 and stats["steps"] == 3
    assert len(stats["adv_pool_accuracy_per_snapshot"]) == 2 and 0 <= stats["adv_pool_accuracy"] <= 1
    assert np.isfinite(stats["final_loss"]) and json.dumps(stats)
    assert all(torch.equal(v, w) for v, w in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    alone = _stage(copy.deepcopy(second).train().requires_grad_(True), x, y, [], iterations=1)
    assert alone["pool_size"] == len(x) and alone["adv_pool_accuracy"] is None


def test_one_stage_makes_the_model_robust_to_the_base_models_fgsm(base_model):
    """One stage on the base model's two-stage examples raises the accuracy on FGSM examples crafted on the base
    model (the paper: "models trained on adversarial examples show good performance when classifying adversarial
    examples of another model") far above the base model's and above a stage of plain training of the same
    length (empty lineage), while keeping most of the clean accuracy; and the committee of the two snapshots (mean
    softmax) resists FGSM on itself far better than the base model alone. (Measured: transfer 83% against 26% and
    29%; clean 88%, the base model's 95%; FGSM on the committee 75%, on a committee of the base model and the
    plain stage 20%, on the base model alone 26%. The stage's own FGSM accuracy does not rise after
    one stage: the paper's single adversarially trained model is weak too, 44.5% error at dist = 0.1, and its
    committee is what resists.)"""
    base, x, y = base_model
    xt, yt = _mnist("test", 500)
    eps = 0.25
    stages = {}
    for name, lineage in (("adversarial", [base]), ("control", [])):
        model = copy.deepcopy(base).train().requires_grad_(True)
        stats = _stage(model, x, y, lineage, iterations=200, lr=0.05, eps=eps)
        stages[name] = (model.eval(), stats)
    transfer_x = _fgsm(base, xt, yt, eps)
    acc = {name: {"clean": _accuracy(m, xt, yt), "transfer": _accuracy(m, transfer_x, yt),
                  "own": _accuracy(m, _fgsm(m, xt, yt, eps), yt)} for name, (m, _) in stages.items()}
    acc["base"] = {"clean": _accuracy(base, xt, yt), "transfer": _accuracy(base, transfer_x, yt)}
    adv, control, before = acc["adversarial"], acc["control"], acc["base"]
    assert stages["adversarial"][1]["pool_size"] == 2 * len(x)
    assert stages["adversarial"][1]["adv_pool_accuracy"] > 0.8, stages["adversarial"][1]
    assert adv["clean"] > 0.8, acc
    assert adv["transfer"] > before["transfer"] + 0.4 and adv["transfer"] > control["transfer"] + 0.3, acc
    committees = {name: _Committee([base, stages[name][0]]) for name in stages}  # adversarial / standard
    acc["committee"] = {name: _accuracy(c, _fgsm(c, xt, yt, eps), yt) for name, c in committees.items()}
    acc["committee"]["base alone"] = _accuracy(base, transfer_x, yt)
    assert acc["committee"]["adversarial"] > acc["committee"]["base alone"] + 0.3, acc
    assert acc["committee"]["adversarial"] > acc["committee"]["control"] + 0.2, acc


def test_adversarial_stages_params_and_registration():
    p = AdversarialStagesParams()
    assert (p.iterations, p.batch_size, p.optimizer, p.lr, p.momentum, p.weight_decay) == (
        5000, 64, "sgd", 0.01, 0.9, 5e-4)
    assert (p.eps, p.c) == (0.25, 0.25)
    trainer = get_plugin("trainer", "adversarial_stages")
    assert trainer.uses_lineage and trainer.Params is AdversarialStagesParams
    for bad in ({"iterations": 0}, {"eps": 0}, {"eps": 1.5}, {"c": -1}, {"epochs": 2}, {"bogus": 1}):
        with pytest.raises(ValidationError):
            AdversarialStagesParams(**bad)


# --- curves reporter ---------------------------------------------------------------------------------------------


def _bound(spec: dict) -> tuple[str, dict]:
    key = content_key(spec)
    return key, {"key": key, "spec": spec, "label": spec.get("label", "")}


def _fabricated_run(tmp_path, figure="curves"):
    """A store with two small adversarial sets and the predictions of two models on them and on the clean
    inputs, and a results table whose cells name those predictions (as the error metric's cells do)."""
    store = Store(tmp_path / "store")
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 4, 4), dtype=np.float32)
    labels, indices = np.arange(6) % 3, np.arange(6)
    sets = {}
    for name, sigma in (("weak", 0.05), ("strong", 0.2)):
        x_adv = np.clip(x + rng.normal(0, sigma, x.shape).astype(np.float32), 0, 1)
        key, meta = _bound({"kind": "attack", "attack": name})
        store.save_advset(key, AdvSet(x_adv, np.ones(6, bool), labels, np.full(6, -1), indices,
                                      distortions(x, x_adv), {}, meta))
        sets[name] = (key, float(np.abs(x_adv.astype(np.float64) - x).mean()))
    cells, values = [], {"m1": [1.0, 40.0, 80.0], "m2": [2.0, 10.0, 30.0]}
    for model, ys in values.items():
        for column, source, value in zip(["clean", "weak", "strong"], [None, "weak", "strong"], ys, strict=True):
            spec = {"kind": "eval", "model": model,
                    "input": {"clean": {"n": 6}} if source is None else {"advset": sets[source][0]}}
            key, meta = _bound(spec)
            store.save_predictions(key, Predictions(rng.random((6, 3), dtype=np.float32), labels, indices, meta))
            cells.append(Cell(model, column, value, [key]))
    cells.append(Cell("m2", "direct", 20.0, [sets["strong"][0]]))  # a cell naming the set itself
    table = ResultTable("dist", "Error against distortion", ["m1", "m2"], ["clean", "weak", "strong", "direct"],
                        "model", "attack", {"error": "%"}, {"error": ".1f"}, cells, figure=figure)
    plain = ResultTable("plain", "No figure", ["m1"], ["clean"], "model", "attack", {"error": "%"},
                        {"error": ".1f"}, [cells[0]])
    return store, RunResults("s", "", None, [], {}, [table, plain]), sets


def test_curves_plot_each_row_against_the_stored_sets_distortion(tmp_path):
    store, results, sets = _fabricated_run(tmp_path)
    weak, strong = sets["weak"][1], sets["strong"][1]
    lines = curves(results.tables[0], store)
    assert [c.label for c in lines] == ["m1", "m2"]
    assert lines[0].x == pytest.approx([0.0, weak, strong], rel=1e-6) and lines[0].y == [1.0, 40.0, 80.0]
    assert lines[1].x == pytest.approx([0.0, weak, strong, strong], rel=1e-6)
    assert lines[1].y == [2.0, 10.0, 30.0, 20.0] and lines[1].columns == ["clean", "weak", "strong", "direct"]
    (tmp_path / "run").mkdir()  # a reporter writes into the run folder the run (or report) made
    written = Curves().write(results, tmp_path / "run", store)
    assert [p.name for p in written] == ["curves_dist.png"]  # the table without figure = "curves" gets none
    assert (tmp_path / "run" / "curves_dist.png").read_bytes()[:8] == PNG_SIGNATURE
    assert get_plugin("reporter", "curves").name == "curves"


def test_curves_field_round_trips_and_old_results_load(tmp_path):
    store, results, _ = _fabricated_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(asdict(results)))
    back = RunResults.read(tmp_path / "results.json")
    assert [t.figure for t in back.tables] == ["curves", None]
    raw = json.loads((tmp_path / "results.json").read_text())
    for t in raw["tables"]:  # results.json written before the field existed
        del t["figure"]
    (tmp_path / "results.json").write_text(json.dumps(raw))
    old = RunResults.read(tmp_path / "results.json")
    assert [t.figure for t in old.tables] == [None, None]
    assert Curves().write(old, tmp_path / "old", store) == []  # nothing to draw
    with pytest.raises(RbenchError, match=r"cell \(m1, clean\) is not in the store"):
        Curves().write(results, tmp_path / "run", Store(tmp_path / "empty"))


# --- published Table 2 -------------------------------------------------------------------------------------------


def test_published_table2_loads_with_the_papers_labels():
    pub = load_published(REPO / "results" / "published" / "ulicny2016.toml")
    table = pub.tables["table2"]
    assert list(table.values) == [
        "No method", "Dropout", "Low-pass filter", "DAE", "Low-pass filter + dropout", "DAE + dropout",
        "Standard committee", "Adversarial training after 5 stages", "Committee of models trained on adv. examples"]
    assert all(list(row) == ["dist=0", "dist=0.1", "dist=0.2"] for row in table.values.values())
    assert table.values["No method"] == {"dist=0": 0.83, "dist=0.1": 73.6, "dist=0.2": 96.1}
    assert table.values["Committee of models trained on adv. examples"]["dist=0.2"] == 36.5
    assert table.column_tolerance["dist=0"].allows(1.1, 0.83) and not table.column_tolerance["dist=0"].allows(1.5, 0.83)
    assert table.tolerance.allows(83.0, 73.6) and not table.tolerance.allows(84.0, 73.6)


@pytest.mark.parametrize("profile", [None, "quick"])
def test_ulicny_suite_matches_its_published_table_and_claims(profile):
    from rbench.compare import load_published
    from rbench.suite import load_suite

    repo = Path(__file__).resolve().parents[1]
    suite = load_suite(repo / "suites" / "ulicny2016.toml", profile)
    published = load_published(repo / "results" / "published" / "ulicny2016.toml")
    for name, table in published.tables.items():
        for row, columns in table.values.items():
            for column in columns:
                assert (row, column) in suite.tables[name].cells, (name, row, column)
    for claim in published.claims:
        cells = suite.tables[claim.table].cells
        assert (claim.a.row, claim.a.column) in cells and (claim.b is None or (claim.b.row, claim.b.column) in cells)
    assert suite.evaluations["gsn_transfer"].threat_model == "transfer"
    assert "EOT over" in suite.tables["table2"].title and "transferred" in suite.tables["table2"].title
    assert not suite.warnings
