"""ODIN (input perturbation + temperature) and the ood_auroc metric across evaluations: the attack's contract, its
effect on the predicted class, and the MLSS report's OOD table (MSP, max logit, cross entropy, ODIN; with and
without outlier exposure) end to end on real MNIST vs Fashion-MNIST."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from rbench.contract import check_attack_output
from rbench.plan import build_plan
from rbench.plugins import get_plugin
from rbench.plugins.attacks.odin import odin_perturb
from rbench.runner import run_suite
from rbench.store import Store
from rbench.suite import load_suite
from rbench.testing import check_attack, reference_data, reference_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fashion(n: int) -> torch.Tensor:
    x, _ = get_plugin("dataset", "fashion-mnist").load("test", get_plugin("dataset", "fashion-mnist").Params())
    return torch.from_numpy(x[:n])


def test_odin_raises_the_predicted_class_softmax():
    model, (x, _) = reference_model(), reference_data()
    for inputs in (x, _fashion(128)):  # in- and out-of-distribution alike; labels play no part
        for temperature in (0.33, 1000.0):
            x_adv = odin_perturb(model, inputs, 0.01, temperature)
            pred = model(inputs).argmax(1, keepdim=True)
            before = F.softmax(model(inputs) / temperature, 1).gather(1, pred)
            after = F.softmax(model(x_adv) / temperature, 1).gather(1, pred)
            assert (after >= before - 1e-6).float().mean() > 0.95  # a small step up the gradient
            assert after.mean() > before.mean()
            assert (x_adv - inputs).abs().max() <= 0.01 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_odin_follows_the_attack_contract():
    attack = get_plugin("attack", "odin")
    p = attack.Params()
    assert (p.eps, p.temperature) == (0.1, 0.33)
    model, (x, y) = reference_model(), reference_data()
    labels = torch.randint(0, 10, y.shape, generator=torch.Generator().manual_seed(0))  # any labels: ignored
    a, b = attack.run(model, x, y, p), attack.run(model, x, labels, p)
    assert torch.equal(a.x_adv, b.x_adv)
    check_attack_output("odin", b, x, attack.budget(p), model, labels, 0)  # success = re-prediction vs labels
    report = check_attack("odin", {"eps": 0.1, "temperature": 0.33})  # determinism, batch sizes, no weight grads
    assert report.success_rate < 0.2  # it raises confidence in the prediction: rarely flips a correct one
    with pytest.raises(ValueError):
        attack.Params(temperature=0)


SUITE = """
[suite]
name = "odin"
seed = 1
[datasets.mnist]
plugin = "mnist"
[datasets.fashion]
plugin = "fashion-mnist"
[models.net]
plugin = "mlp"
params = { widths = [64] }
dataset = "mnist"
n_train = 2000
trainer = { params = { epochs = 2, lr = 3e-3, batch_size = 64 } }
[models.net_oe]
plugin = "mlp"
params = { widths = [64] }
dataset = "mnist"
n_train = 2000
trainer = { plugin = "outlier_exposure", params = { epochs = 2, lr = 3e-3, batch_size = 64, n_outliers = 2000 } }
[attacks.odin]
plugin = "odin"
params = { eps = 0.1, temperature = 0.33 }
[evaluations.test]
dataset = "mnist"
n = 200
sources = ["net", "net_oe"]
attacks = ["odin"]
[evaluations.ood]
dataset = "fashion"
n = 200
sources = ["net", "net_oe"]
attacks = ["odin"]
[evaluations.ood_clean]
dataset = "fashion"
n = 200
sources = ["net"]
[tables.auroc]
evaluation = "test"
columns = "model"
[[tables.auroc.rows]]
label = "max logit"
attack = "clean"
metric = { plugin = "ood_auroc", params = { ood = "ood", score = "max_logit" } }
[[tables.auroc.rows]]
label = "softmax max"
attack = "clean"
metric = { plugin = "ood_auroc", params = { ood = "ood", score = "msp" } }
[[tables.auroc.rows]]
label = "cross entropy"
attack = "clean"
metric = { plugin = "ood_auroc", params = { ood = "ood", score = "cross_entropy" } }
[[tables.auroc.rows]]
label = "ODIN"
attack = "odin"
metric = { plugin = "ood_auroc", params = { ood = "ood", score = "msp", temperature = 0.33 } }
"""
#: rows whose cells ood_clean cannot serve (it evaluates only net, and no odin sets): refused before any work
CLEAN_ROW = """[[tables.auroc.rows]]
label = "clean vs ood_clean"
attack = "clean"
metric = { plugin = "ood_auroc", params = { ood = "ood_clean" } }
"""
ODIN_ROW = """[[tables.auroc.rows]]
label = "ODIN vs ood_clean"
attack = "odin"
metric = { plugin = "ood_auroc", params = { ood = "ood_clean", temperature = 0.33 } }
"""


@pytest.mark.slow
def test_ood_table_with_odin_and_outlier_exposure(write_suite, tmp_path):
    outcome = run_suite(write_suite(SUITE), profile=None, store=Store(tmp_path / "s"), run_dir=tmp_path / "r",
                        device="cpu", workers=None, executor="local", console=Console(quiet=True), quiet=True)
    assert not outcome.failed, outcome.failed
    cells = {(c.row, c.column): c for c in outcome.results.tables[0].cells}
    v = {k: c.value for k, c in cells.items()}
    for model in ("net", "net_oe"):
        for score in ("max logit", "softmax max", "cross entropy", "ODIN"):
            assert 0.0 <= v[(score, model)] <= 1.0, (score, model, v[(score, model)])
    assert v[("softmax max", "net")] > 0.5  # MNIST vs Fashion-MNIST is separable by confidence
    # OE on Fashion-MNIST train: better on Fashion-MNIST test, with every score
    for score in ("max logit", "softmax max", "cross entropy", "ODIN"):
        assert v[(score, "net_oe")] > v[(score, "net")] + 0.1, score
    # the ODIN cell reads the odin sets' outputs of the same (source, attack, target) in both evaluations
    plan = build_plan(load_suite(tmp_path / "suite.toml"))
    odin = cells[("ODIN", "net")]
    assert odin.error is None and v[("ODIN", "net")] != v[("softmax max", "net")]
    assert set(odin.jobs) == {plan.evaluated[(ev, "net", "odin", "net")] for ev in ("test", "ood")}


def test_an_ood_evaluation_that_lacks_a_cells_inputs_is_refused_before_any_work(write_suite):
    """A cell whose ``ood`` evaluation lacks its (source, attack, target) is one line from the suite's check, not
    an error cell after the run (Metric.references)."""
    from rbench.errors import SuiteError

    with pytest.raises(SuiteError, match=r"tables\.auroc\.rows\[4\]\.metric\.params\.ood: evaluation 'ood_clean' "
                       r"does not evaluate 'net_oe' on its clean inputs, as cell \(clean vs ood_clean, net_oe\)"):
        load_suite(write_suite(SUITE + CLEAN_ROW))
    with pytest.raises(SuiteError, match=r"rows\[4\]\.metric\.params\.ood: .*'ood_clean'.*'odin'"):
        load_suite(write_suite(SUITE + ODIN_ROW))
