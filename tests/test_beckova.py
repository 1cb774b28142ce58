"""The Bečková et al. 2020 parts: sigmoid temperature, per-epoch monitoring (probes), activation regimes,
input gradients, the pixel attack, class robustness, the worst case over stored attacks, and the new claim kinds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import plugin_dist, rbench, run_values
from torch import nn

from rbench.artifacts import Predictions
from rbench.compare import CellRef, Claim, check_one_claim
from rbench.metric import CellData, CellKeys
from rbench.plugins.attacks.gradients import margin_loss
from rbench.plugins.attacks.pixel import PixelAttack, PixelParams
from rbench.plugins.metrics.rates import ClassRobustness, ClassRobustnessParams
from rbench.plugins.metrics.worst_case import AttackRef, WorstCase, WorstCaseParams
from rbench.plugins.models.layers import TemperedSigmoid
from rbench.plugins.models.sigmoid_mlp import SigmoidMlp, SigmoidMlpParams
from rbench.plugins.probes.gradients import InputGradient, input_gradient_magnitude, pearson
from rbench.plugins.probes.regimes import ActivationRegimes, RegimesParams, regime_bounds
from rbench.results import Cell, ResultTable
from rbench.store import Store

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- regimes ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1 / 64, 1 / 8, 1.0, 4.0, 16.0])
def test_regime_bounds_follow_the_papers_definitions(temperature):
    r1, r2 = regime_bounds(temperature, 0.05, 0.0005)
    f = lambda n: 1 / (1 + math.exp(-n / temperature))  # noqa: E731
    slope = 1 / (4 * temperature)
    distance = lambda n: abs(0.5 + slope * n - f(n)) / math.hypot(slope, 1)  # noqa: E731
    derivative = lambda n: f(n) * (1 - f(n)) / temperature  # noqa: E731
    assert distance(r1) == pytest.approx(0.05, rel=1e-6)
    assert distance(r1 * 0.99) < 0.05 < distance(r1 * 1.01)
    assert derivative(r2) == pytest.approx(0.0005, rel=1e-6)
    assert derivative(r2 * 0.99) > 0.0005 > derivative(r2 * 1.01)
    assert 0 < r1 < r2  # the paper's thresholds keep the nonlinear part non-empty on its grid


class _Net(nn.Module):
    """A 'hidden layer' whose net values are the inputs themselves."""

    def __init__(self, temperature: float):
        super().__init__()
        self.act = TemperedSigmoid(temperature)

    def forward(self, x):
        return self.act(x.flatten(1))


def test_regimes_count_net_values_by_part():
    r1, r2 = regime_bounds(1.0, 0.05, 0.0005)
    values = torch.tensor([0.0, r1 * 0.5, -r1 * 0.9, (r1 + r2) / 2, -(r1 + r2) / 2, r2 * 1.5, -r2 * 3, 100.0])
    x = values.view(2, 1, 2, 2)
    out = ActivationRegimes().measure(_Net(1.0), x, torch.zeros(2, dtype=torch.long), RegimesParams(),
                                      generator=torch.Generator())
    assert out["linear"]["value"] == pytest.approx(100 * 3 / 8)
    assert out["nonlinear"]["value"] == pytest.approx(100 * 2 / 8)
    assert out["saturated"]["value"] == pytest.approx(100 * 3 / 8)
    assert (out["r1"], out["r2"]) == pytest.approx((r1, r2))
    # the samples (the independent draws) hold 3/4 and 0/4 linear values: the t interval of those two shares,
    # 37.5 +- 476, clipped to what a share can be
    assert out["linear"]["n"] == 2 and out["linear"]["interval"] == "t"
    assert (out["linear"]["low"], out["linear"]["high"]) == (0.0, 100.0)
    wide = ActivationRegimes().measure(_Net(1.0), values.repeat(10).view(20, 1, 2, 2),
                                       torch.zeros(20, dtype=torch.long), RegimesParams(), generator=torch.Generator())
    half = 2.093024 * np.std([75.0, 0.0] * 10, ddof=1) / np.sqrt(20)
    assert (wide["linear"]["low"], wide["linear"]["high"]) == pytest.approx((37.5 - half, 37.5 + half), rel=1e-6)


def test_regimes_need_a_sigmoid_layer():
    with pytest.raises(ValueError, match="no sigmoid layer"):
        ActivationRegimes().measure(nn.Flatten(), torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long),
                                    RegimesParams(), generator=torch.Generator())


# -- input gradients --------------------------------------------------------------------------------------
def test_input_gradient_vanishes_exactly_in_saturated_units_and_then_has_no_correlation():
    model = SigmoidMlp().build(SigmoidMlpParams(widths=[8], temperature=1 / 64))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)  # every net value is large and positive: every unit saturated in float32
    x = torch.rand(20, 1, 28, 28)
    y = torch.arange(20) % 10
    out = InputGradient().measure(model, x, y, None, generator=torch.Generator())
    assert out["zero_fraction"]["value"] == 100.0 and out["zero_fraction"]["interval"] == "wilson"
    assert out["zero_fraction"]["low"] == pytest.approx(100 * 20 / (20 + 1.959964**2), rel=1e-6)
    assert out["median"]["value"] == 0.0 and out["median"]["low"] == out["median"]["high"] == 0.0
    assert out["correlation"] is None and out["p_value"] is None


def test_input_gradient_correlates_negatively_with_confidence_on_a_trained_model():
    from support import small_mnist_model

    model, x, y = small_mnist_model([32], activation="sigmoid", epochs=3, lr=3e-3, n_test=300)
    out = InputGradient().measure(model, x, y, None, generator=torch.Generator())
    r = out["correlation"]
    assert r["value"] < -0.5 and out["p_value"] < 1e-6 and r["n"] == 300 and r["interval"] == "fisher-z"
    assert -1 < r["low"] < r["value"] < r["high"] < 0
    assert len(out["class_median"]) == len(out["class_correlation"]) == 10
    g = input_gradient_magnitude(model, x, y)[0]
    median = out["median"]
    assert median["value"] == pytest.approx(float(np.median(g))) and median["interval"] == "order statistics"
    # about 95% of the samples between the ends: the 8.7% and 91.3% order statistics of 300 (Binomial(300, 1/2))
    assert 0.4 < np.mean(g < median["low"]) < 0.45 and 0.4 < np.mean(g > median["high"]) < 0.45
    assert 0 < median["value"] and out["zero_fraction"]["value"] < 100


def test_per_class_measurements_keep_each_class_at_its_index_on_a_slice_that_lacks_one():
    """A monitored slice without class 3 (a small n): every per-class list still holds one entry per class of the
    model, None for class 3, so the observed metric's ``index = 4`` reads class 4 (it read class 5)."""
    from support import small_mnist_model

    from rbench.plugins.probes.robustness import CleanAccuracy, FgsmRobustness

    model, x, y = small_mnist_model([32], activation="sigmoid", epochs=1, lr=3e-3, n_test=300)
    keep = y != 3
    x, y = x[keep], y[keep]
    gen = torch.Generator()
    lists = {**CleanAccuracy().measure(model, x, y, None, generator=gen),
             **FgsmRobustness().measure(model, x, y, FgsmRobustness.Params(), generator=gen),
             **InputGradient().measure(model, x, y, None, generator=gen)}
    per_class = {k: v for k, v in lists.items() if k.startswith("class_")}
    assert set(per_class) == {"class_accuracy", "class_robustness@0.1", "class_median", "class_correlation",
                              "class_p_value"}
    for key, values in per_class.items():
        assert len(values) == 10 and values[3] is None, key
        assert all(v is not None for c, v in enumerate(values) if c != 3 and key != "class_p_value"), key
    predicted = model(x).argmax(1)
    four = (y == 4).numpy()
    assert per_class["class_accuracy"][4]["value"] == pytest.approx(100 * float((predicted == y).numpy()[four].mean()))
    assert per_class["class_accuracy"][4]["n"] == int(four.sum())


def test_correlation_is_undefined_for_constant_inputs():
    assert pearson(np.ones(5), np.arange(5.0)) == (None, None)
    r, p = pearson(np.arange(5.0), -np.arange(5.0))
    assert r == pytest.approx(-1.0) and p < 1e-3


# -- pixel attack -----------------------------------------------------------------------------------------
def test_pixel_attack_changes_at_most_n_pixels_to_zero_or_one_and_grows_with_n():
    from support import small_mnist_model

    model, x, y = small_mnist_model([32], epochs=1, n_test=200)
    results = {}
    for n in (1, 3):
        out = PixelAttack().run(model, x, y, PixelParams(pixels=n))
        changed = (out.x_adv != x).flatten(1)
        assert int(changed.sum(1).max()) <= n
        assert set(out.x_adv.flatten(1)[changed].unique().tolist()) <= {0.0, 1.0}
        used = out.extras["pixels"]  # the pixels changed: a top pixel set to the value it had does not count
        assert int(used.max()) <= n and torch.equal(used, changed.sum(1))
        success = out.success_on(model, y)
        assert out.success is None and bool(success[used > 0].all())  # every changed image fools the model
        results[n] = success
    assert bool((results[1] <= results[3]).all())  # up to 3 pixels finds every 1-pixel success
    assert results[3].sum() > results[1].sum()


def test_margin_loss_is_positive_exactly_when_misclassified():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 0])
    assert margin_loss(logits, y).tolist() == [-2.0, 2.0]


# -- class robustness and the worst case ------------------------------------------------------------------
def _predictions(correct: list[bool], labels: list[int], indices: list[int]) -> Predictions:
    labels_a = np.array(labels)
    logits = np.zeros((len(labels), 3), dtype=np.float32)
    for i, (ok, label) in enumerate(zip(correct, labels, strict=True)):
        logits[i, label if ok else (label + 1) % 3] = 1.0
    return Predictions(logits, labels_a, np.array(indices), {})


class _Outputs:
    """The predictions of one evaluation per attack: the part of rbench.CellOutputs these metrics read."""

    def __init__(self, by_attack: dict[tuple[str, str], Predictions]):
        self.by_attack = by_attack

    def predictions(self, key):
        return self.by_attack[tuple(key.split("/"))]

    def locate_predictions(self, evaluation, source, attack, target):
        if (evaluation, attack) not in self.by_attack:
            raise KeyError(f"no {attack} in {evaluation}")
        return f"{evaluation}/{attack}"

    def locate_clean(self, evaluation, model):
        return self.locate_predictions(evaluation, model, "clean", model)


def _cell(by_attack: dict[tuple[str, str], Predictions], own: tuple[str, str]) -> CellData:
    return CellData("m", own[1], "m", CellKeys("/".join(own)), _Outputs(by_attack), own[0])


def test_class_robustness_weighs_every_class_the_same():
    pred = _predictions([True] * 8 + [False, False], [0] * 8 + [1, 1], list(range(10)))
    cell = _cell({("ev", "fgsm"): pred}, ("ev", "fgsm"))
    assert float(ClassRobustness().compute(cell, ClassRobustnessParams())) == pytest.approx(50.0)  # (100 + 0) / 2
    assert float(ClassRobustness().compute(cell, ClassRobustnessParams(of_class=1, kind="error"))) == 100.0


def test_worst_case_takes_each_sample_at_its_worst_on_the_samples_all_attacks_share():
    labels = [0, 1, 0, 1, 0, 1]
    clean = _predictions([True] * 6, labels, [0, 1, 2, 3, 4, 5])
    a = _predictions([False, True, True, True, True, True], labels, [0, 1, 2, 3, 4, 5])
    b = _predictions([True, True, False, True, True, True], labels, [0, 1, 2, 3, 4, 5])
    # a third attack run over fewer samples, listed in another order
    c = _predictions([True, False, True], [labels[3], labels[1], labels[0]], [3, 1, 0])
    cell = _cell({("ev", "clean"): clean, ("ev", "a"): a, ("ev", "b"): b, ("small", "c"): c}, ("ev", "clean"))
    two = WorstCaseParams(attacks=[AttackRef(attack="a"), AttackRef(attack="b")], statistic="accuracy")
    assert float(WorstCase().compute(cell, two)) == pytest.approx(100 * 4 / 6)
    three = WorstCaseParams(attacks=[AttackRef(attack="a"), AttackRef(attack="b"),
                                     AttackRef(attack="c", evaluation="small")], statistic="accuracy")
    assert float(WorstCase().compute(cell, three)) == pytest.approx(100 * 1 / 3)  # samples 0, 1, 3: only 3 survives
    gap = three.model_copy(update={"gap_to": 1})  # b alone: all three shared samples survive
    overestimate = WorstCase().compute(cell, gap)
    assert overestimate.value == pytest.approx(100 - 100 / 3)
    assert overestimate.n == 3 and overestimate.low < overestimate.value < overestimate.high  # with its interval
    balanced = WorstCase().compute(cell, gap.model_copy(update={"statistic": "class_robustness"}))
    # samples 0 (class 0), 1 and 3 (class 1): b alone keeps all (100 per class), all three keep 3 only (0 and 50)
    assert balanced.value == pytest.approx(100 - (0 + 50) / 2) and balanced.method == "normal"
    with pytest.raises(ValueError, match="gap_to"):
        WorstCaseParams(attacks=[AttackRef(attack="a")], gap_to=1)
    assert WorstCaseParams(attacks=[AttackRef(attack="a")]).statistic == "accuracy"  # AutoAttack's, by default
    # each attack's contribution: a breaks sample 0, b sample 2 (of the six all of a, b and the clean set share)
    for index, broken in ((0, 1), (1, 1)):
        alone = two.model_copy(update={"broken_by": index})
        assert float(WorstCase().compute(cell, alone)) == pytest.approx(100 * broken / 6)
    a_plus = _predictions([False, True, False, True, True, True], labels, [0, 1, 2, 3, 4, 5])  # breaks 0 and 2
    cell = _cell({("ev", "clean"): clean, ("ev", "a"): a_plus, ("ev", "b"): b}, ("ev", "clean"))
    only = [float(WorstCase().compute(cell, two.model_copy(update={"only_by": i}))) for i in (0, 1)]
    assert only == pytest.approx([100 / 6, 0.0])  # b breaks nothing that a does not
    worst = WorstCase().compute(cell, two)
    assert worst.n == 6 and worst.method == "wilson" and worst.low < worst.value < worst.high
    with pytest.raises(ValueError, match="at most one"):
        WorstCaseParams(attacks=[AttackRef(attack="a"), AttackRef(attack="b")], gap_to=0, only_by=1)


# -- claims -----------------------------------------------------------------------------------------------
def _table(values: dict[tuple[str, str], float | None]) -> ResultTable:
    rows = list(dict.fromkeys(r for r, _ in values))
    columns = list(dict.fromkeys(c for _, c in values))
    return ResultTable("t", "t", rows, columns, "rows", "columns", {}, {},
                       [Cell(r, c, v) for (r, c), v in values.items()], "")


def _claim(**kw) -> Claim:
    return Claim.model_validate({"text": "x", "table": "t", **kw})


def test_trend_claims_use_the_rank_correlation():
    table = _table({("r", "a"): 5.0, ("r", "b"): 4.0, ("r", "c"): 4.5, ("r", "d"): 1.0, ("r", "e"): 0.0})
    cells = [{"row": "r", "column": c} for c in "abcde"]
    down = check_one_claim(_claim(kind="decreasing", cells=cells), table)
    assert down.held is True and "rho = -0.90" in down.detail
    assert check_one_claim(_claim(kind="increasing", cells=cells), table).held is False
    assert check_one_claim(_claim(kind="decreasing", cells=cells, min_rho=0.95), table).held is False
    missing = _table({("r", "a"): 5.0, ("r", "b"): None, ("r", "c"): 1.0})
    assert check_one_claim(_claim(kind="decreasing", cells=cells[:3]), missing).held is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 3), st.floats(-1e6, 1e6, allow_nan=False)), min_size=2, max_size=30),
       st.booleans())
def test_spearman_rho_is_scipys_bit_for_bit_without_scipy_stats(values, against_values):
    """The trend claims' rho (rbench.compare.spearman_rho, written out: importing scipy.stats costs 0.5 s of a warm
    run) is scipy.stats.spearmanr's statistic to the bit, ties included, and so are the ranks."""
    from scipy.stats import rankdata, spearmanr

    from rbench.compare import average_ranks, spearman_rho

    x = values[::-1] if against_values else range(len(values))
    assert np.array_equal(average_ranks(values), rankdata(values))
    if len(set(values)) > 1 and len(set(x)) > 1:
        expected = float(spearmanr(x, values).statistic)
        assert spearman_rho(x, values) == expected or (np.isnan(expected) and np.isnan(spearman_rho(x, values)))


def test_threshold_and_within_claims():
    table = _table({("r", "a"): 97.5, ("r", "b"): 96.0, ("r", "c"): 90.0})
    cells = [{"row": "r", "column": c} for c in "abc"]
    assert check_one_claim(_claim(kind="at_least", value=97.0, cells=cells), table).held is True
    assert check_one_claim(_claim(kind="at_least", value=98.0, cells=cells), table).held is False
    assert check_one_claim(_claim(kind="at_most", value=90.0, a={"row": "r", "column": "c"}), table).held is True
    assert check_one_claim(_claim(kind="at_most", value=89.9, a={"row": "r", "column": "c"}), table).held is False
    within = _claim(kind="within", margin=2.0, a={"row": "r", "column": "a"}, b={"row": "r", "column": "b"})
    assert check_one_claim(within, table).held is True
    assert check_one_claim(within.model_copy(update={"margin": 1.0}), table).held is False


@pytest.mark.parametrize("kw, problem", [
    ({"kind": "decreasing"}, "needs 'cells'"),
    ({"kind": "decreasing", "cells": [{"row": "r", "column": "a"}] * 2}, "at least 3 cells"),
    ({"kind": "at_least", "a": {"row": "r", "column": "a"}}, "needs 'value'"),
    ({"kind": "within", "a": {"row": "r", "column": "a"}}, "needs 'b'"),
    ({"kind": "less", "a": {"row": "r", "column": "a"}, "b": {"row": "r", "column": "a"}, "value": 1.0},
     "takes no 'value'"),
])
def test_claims_name_what_their_kind_needs(kw, problem):
    with pytest.raises(ValueError, match=problem):
        _claim(**kw)


assert CellRef  # the type claims are made of


# -- monitoring, end to end -------------------------------------------------------------------------------
SUITE = """
[suite]
name = "temperature"
seed = 0
published = ["claims.toml"]

[datasets.mnist]
plugin = "mnist"

[models.steep]
plugin = "sigmoid_mlp"
params = { widths = [32], temperature = 0.015625 }
dataset = "mnist"
n_train = 1000
trainer = { plugin = "standard", params = { epochs = 2, batch_size = 64 } }
monitor = { dataset = "mnist", n = 200, probes = [
  { plugin = "accuracy" }, { plugin = "fgsm_robustness", params = { eps = [0.1, 0.2] } },
  { plugin = "activation_regimes" }, { plugin = "input_gradient" } ] }

[models.plain]
plugin = "sigmoid_mlp"
params = { widths = [32], temperature = 1.0 }
dataset = "mnist"
n_train = 1000
trainer = { plugin = "standard", params = { epochs = 2, batch_size = 64 } }

[models.watched]
plugin = "sigmoid_mlp"
params = { widths = [32], temperature = 1.0 }
dataset = "mnist"
n_train = 1000
trainer = { plugin = "standard", params = { epochs = 2, batch_size = 64 } }
monitor = { dataset = "mnist", n = 200, every = 2, probes = [
  { plugin = "accuracy" }, { plugin = "accuracy", label = "again" }] }

[attacks.fgsm]
plugin = "fgsm"
params = { eps = 0.1 }

[attacks.pixel]
plugin = "pixel"
params = { pixels = 2 }

[attacks.pgd_margin]
plugin = "pgd"
params = { eps = 0.1, steps = 5, loss = "margin" }

[evaluations.test]
dataset = "mnist"
n = 200
sources = ["steep", "plain", "watched"]
attacks = ["fgsm", "pixel", "pgd_margin"]

[evaluations.fewer]
dataset = "mnist"
n = 50
sources = ["steep", "plain"]
attacks = ["pgd_margin"]

[tables.robustness]
evaluation = "test"
columns = [{ label = "steep", model = "steep" }, { label = "plain", model = "plain" }]
rows = [
  { label = "FGSM", attack = "fgsm", metric = "class_robustness" },
  { label = "pixel", attack = "pixel", metric = { plugin = "class_robustness", params = { kind = "error" } } },
  { label = "worst", attack = "clean", metric = { plugin = "worst_case", params = { attacks = [
    { attack = "fgsm" }, { attack = "pgd_margin", evaluation = "fewer" }], statistic = "class_robustness" } } },
]
figure = "lines"

[tables.training]
evaluation = "test"
rows = [{ label = "steep", model = "steep" }]
columns = [
  { label = "accuracy", attack = "clean", metric = "observed_accuracy" },
  { label = "saturated", attack = "clean", metric = "observed_saturated" },
  { label = "FGSM 0.2", attack = "clean", metric = "observed_fgsm" },
  { label = "G class 3", attack = "clean", metric = "observed_g3" },
]
figure = "training"

[tables.unmonitored]
evaluation = "test"
rows = [{ label = "plain", model = "plain" }]
columns = [{ label = "accuracy", attack = "clean", metric = "observed_accuracy" }]
"""

OBSERVED = {
    "observed_accuracy": ("accuracy", "accuracy", ""),
    "observed_saturated": ("activation_regimes", "saturated", ", epoch = 1"),
    "observed_fgsm": ("fgsm_robustness", "robustness@0.2", ""),
    "observed_g3": ("input_gradient", "class_median", ", index = 3"),
}
for _name, (_probe, _value, _more) in OBSERVED.items():  # inline TOML tables cannot wrap: spelled out here
    SUITE = SUITE.replace(f'"{_name}"', f'{{ plugin = "observed", params = {{ probe = "{_probe}", value = '
                                         f'"{_value}"{_more} }}, label = "{_name}" }}')

CLAIMS = """
[source]
citation = "test"
transcribed_from = "test"
[tables]
[[claims]]
text = "the steep model is at least 10% robust"
table = "robustness"
kind = "at_least"
value = 10.0
a = { row = "FGSM", column = "steep" }
"""


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("temperature")
    (folder / "suite.toml").write_text(SUITE)
    (folder / "claims.toml").write_text(CLAIMS)
    store = folder / "store"
    proc = rbench("run", str(folder / "suite.toml"), "--store", str(store), "--run-dir", str(folder / "run"))
    # exit 1: the "unmonitored" table's cell fails (its target was not monitored), every job succeeds
    assert proc.returncode == 1, proc.stderr
    assert "1 cell failed: unmonitored (" in " ".join(proc.stdout.split()) and "failed:" not in proc.stderr
    return folder, store, json.loads((folder / "run" / "results.json").read_text())


def _checkpoint(store: Path, results: dict, label: str) -> tuple[dict, dict]:
    key = next(k for k, j in results["jobs"].items() if j["label"] == label)
    return Store(store).load_checkpoint(key)


def test_monitored_training_stores_every_epochs_measurements(monitored_run):
    folder, store, results = monitored_run
    _, meta = _checkpoint(store, results, "train steep")
    observed = meta["stats"]["observed"]
    assert [e["epoch"] for e in observed] == [1, 2]
    first = observed[0]
    assert set(first) == {"epoch", "accuracy", "fgsm_robustness", "activation_regimes", "input_gradient"}
    assert set(first["fgsm_robustness"]) == {"robustness@0.1", "class_robustness@0.1", "robustness@0.2",
                                              "class_robustness@0.2"}
    regimes = first["activation_regimes"]
    assert sum(regimes[k]["value"] for k in ("linear", "nonlinear", "saturated")) == pytest.approx(100.0)
    _, watched = _checkpoint(store, results, "train watched")
    assert [e["epoch"] for e in watched["stats"]["observed"]] == [2]  # every = 2
    assert set(watched["stats"]["observed"][0]) == {"epoch", "accuracy", "again"}


def test_monitoring_leaves_the_trained_weights_as_they_are(monitored_run):
    _, store, results = monitored_run
    plain, _ = _checkpoint(store, results, "train plain")
    watched, _ = _checkpoint(store, results, "train watched")
    assert plain.keys() == watched.keys()
    assert all(torch.equal(plain[k], watched[k]) for k in plain)


def test_observed_cells_read_the_training_job(monitored_run):
    folder, store, results = monitored_run
    values = run_values(folder / "run")
    _, meta = _checkpoint(store, results, "train steep")
    last, first = meta["stats"]["observed"][-1], meta["stats"]["observed"][0]
    assert values[("training", "steep", "accuracy")] == pytest.approx(last["accuracy"]["accuracy"]["value"])
    saturated = first["activation_regimes"]["saturated"]
    assert values[("training", "steep", "saturated")] == pytest.approx(saturated["value"])
    g3 = last["input_gradient"]["class_median"][3]
    assert values[("training", "steep", "G class 3")] == pytest.approx(g3["value"])
    cells = {(t["name"], c["row"], c["column"]): c for t in results["tables"] for c in t["cells"]}
    cell = cells[("training", "steep", "saturated")]  # each with the interval the probe measured
    assert (cell["n"], cell["low"], cell["high"], cell["interval"]) == (saturated["n"], saturated["low"],
                                                                         saturated["high"], "t")
    assert cells[("training", "steep", "G class 3")]["interval"] == g3["interval"] == "order statistics"
    table = next(t for t in results["tables"] if t["name"] == "unmonitored")
    assert "was not monitored" in table["cells"][0]["error"]


def test_the_worst_case_is_at_most_each_attack_and_figures_are_drawn(monitored_run):
    folder, _, _ = monitored_run
    values = run_values(folder / "run")
    for model in ("steep", "plain"):
        assert values[("robustness", "worst", model)] <= values[("robustness", "FGSM", model)] + 1e-9
    for name in ("lines_robustness.png", "training_training.png"):
        assert (folder / "run" / name).stat().st_size > 5000
    assert not (folder / "run" / "training_robustness.png").exists()  # only where the suite asks
    md = (folder / "run" / "tables.md").read_text()
    assert "[training_training.png](training_training.png)" in md
    proc = rbench("compare", str(folder / "run"))
    assert proc.returncode == 0 and "the steep model is at least 10% robust" in proc.stdout


def _bad(tmp_path, old: str, new: str) -> str:
    (tmp_path / "claims.toml").write_text(CLAIMS)
    suite = tmp_path / "suite.toml"
    assert old in SUITE
    suite.write_text(SUITE.replace(old, new, 1))
    proc = rbench("validate", str(suite))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("old, new, problem", [
    ('{ plugin = "standard", params = { epochs = 2, batch_size = 64 } }\nmonitor',
     '{ plugin = "autoencoder_pretrain" }\nmonitor', "monitor: trainer 'autoencoder_pretrain' does not observe"),
    ('{ plugin = "accuracy" }, { plugin = "fgsm', '{ plugin = "acuracy" }, { plugin = "fgsm',
     "monitor.probes[0].plugin"),
    ('{ plugin = "accuracy", label = "again" }', '{ plugin = "accuracy" }', "monitor.probes[1].label"),
    ('monitor = { dataset = "mnist", n = 200, probes', 'monitor = { dataset = "mnist", n = 20000, probes',
     "monitor.n: 20000 exceeds"),
    ('eps = [0.1, 0.2]', 'eps = [0.1, 2.0]', "monitor.probes[1].params"),
])
def test_bad_monitors_are_one_line_errors(tmp_path, old, new, problem):
    assert problem in _bad(tmp_path, old, new)


BAD_PROBE = '''
from rbench import hookimpl
from rbench.probe import Probe


class Broken(Probe):
    name = "broken"

    def measure(self, model, x, y, params, *, generator):
        return {"value": float("nan")}


@hookimpl
def rbench_probes():
    return [Broken()]
'''


def test_a_probe_returning_nan_fails_the_training_job_naming_it(tmp_path):
    env = plugin_dist(tmp_path / "plugins", "rbench_test_broken_probe", BAD_PROBE)
    (tmp_path / "claims.toml").write_text(CLAIMS)
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.replace('{ plugin = "accuracy", label = "again" }', '{ plugin = "broken" }'))
    proc = rbench("run", str(suite), "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / "run"),
                  env=env)
    assert proc.returncode == 1
    assert "probe 'broken'" in proc.stdout + proc.stderr and "finite" in proc.stdout + proc.stderr
    values = run_values(tmp_path / "run")
    assert values[("robustness", "FGSM", "steep")] is not None  # the other models are unaffected


def test_measurements_with_an_interval_are_checked_like_numbers():
    from rbench.contract import check_measurements
    from rbench.estimate import rate
    from rbench.inputs import PluginContractError
    from rbench.probe import measured, read_measurement

    good = measured(rate(np.array([True, False, True])))
    check_measurements("p", "label", {"a": good, "b": [good, None, 1.5], "c": measured(None)})
    back = read_measurement(good)
    assert (back.value, back.n, back.low, back.high, back.method) == (good["value"], 3, good["low"], good["high"],
                                                                      "wilson")
    bad = [{**good, "low": good["value"] + 1}, {**good, "high": float("nan")}, {**good, "n": 0},
           {**good, "n": True}, {k: v for k, v in good.items() if k != "interval"}, {**good, "extra": 1},
           {**good, "low": None}, {**good, "low": None, "high": None}, {**good, "interval": ""},
           {**good, "value": float("inf")}, {**good, "value": 150.0, "low": 140.0, "high": 160.0}]  # a rate > 100%
    for value in bad:
        with pytest.raises(PluginContractError, match="probe 'p' \\(label\\) returned 'a'"):
            check_measurements("p", "label", {"a": [good, value]})


def test_a_monitored_model_from_a_monitored_init_is_seeded_as_its_unmonitored_twin(write_suite):
    """Monitoring never changes the trained weights, also down an init chain: the child of a monitored parent is
    seeded the same with or without its own monitor (the precision twins' input substitution had moved it)."""
    from rbench.plan import build_plan
    from rbench.suite import load_suite

    monitor = 'monitor = { dataset = "mnist", split = "test", n = 100, probes = [ { plugin = "accuracy" } ] }\n'
    text = ('[suite]\nname = "initmon"\n[datasets.mnist]\nplugin = "mnist"\n'
            '[models.parent]\nplugin = "mlp"\nparams = { widths = [32] }\ndataset = "mnist"\n' + monitor +
            '[models.child]\nplugin = "mlp"\nparams = { widths = [32] }\ndataset = "mnist"\ninit = "parent"\n'
            'CHILD_MONITOR'
            '[evaluations.e]\ndataset = "mnist"\nn = 100\nsources = ["child"]\n'
            '[tables.t]\nevaluation = "e"\nrows = "attack"\ncolumns = "model"\nmetric = "error"\n')
    seeds = []
    for child in (monitor, ""):
        plan = build_plan(load_suite(write_suite(text.replace("CHILD_MONITOR", child))))
        seeds.append(plan.jobs[plan.trained["child"]].seed)
    assert seeds[0] == seeds[1]
