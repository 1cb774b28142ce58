"""Calibration and OOD metrics (pure functions checked against hand-computed values), and temperature scaling
and OOD AUROC end to end on real MNIST vs Fashion-MNIST."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from rbench.plugins.metrics.calibration import anomaly_scores, auroc, calibration_errors
from rbench.runner import run_suite
from rbench.store import Store


def test_calibration_errors_by_hand():
    # two bins of 0.5 width; bin [0.5, 1): confidences 0.9 (right) and 0.7 (wrong): acc 0.5, conf 0.8, gap 0.3
    logits = np.log(np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]]))
    labels = np.array([0, 1, 1])
    errs = calibration_errors(logits, labels, bins=2)
    # all three are in the upper bin: acc 2/3, conf (0.9 + 0.7 + 0.8) / 3 = 0.8, gap 0.1333
    assert errs["ece"] == pytest.approx(0.8 - 2 / 3) and errs["mce"] == pytest.approx(0.8 - 2 / 3)
    assert errs["rms"] == pytest.approx(0.8 - 2 / 3)
    perfect = np.log(np.array([[1.0 - 1e-12, 1e-12]] * 4))
    assert calibration_errors(perfect, np.zeros(4, int))["ece"] == pytest.approx(0, abs=1e-9)


def test_calibration_of_no_sample_is_none_not_perfect():
    from types import SimpleNamespace

    from rbench.plugins.metrics.calibration import CalibrationError, CalibrationParams

    empty = SimpleNamespace(predictions=SimpleNamespace(logits=np.zeros((0, 10), np.float32),
                                                        labels=np.zeros(0, np.int64)))
    for kind in ("ece", "mce", "rms"):
        assert CalibrationError().compute(empty, CalibrationParams(kind=kind)) is None  # was 0.0: "perfect"


def test_auroc_and_scores():
    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert auroc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 500), rng.normal(0, 1, 500)
    brute = np.mean([(x > z) + 0.5 * (x == z) for x in a[:100] for z in b[:100]])
    assert auroc(a[:100], b[:100]) == pytest.approx(brute)
    peaked, flat = np.array([[10.0, 0, 0]]), np.array([[1.0, 1.0, 1.0]])
    for score in ("msp", "max_logit", "cross_entropy"):
        assert anomaly_scores(peaked, score)[0] > anomaly_scores(flat, score)[0]


SUITE = """
[suite]
name = "calib"
[datasets.mnist]
plugin = "mnist"
[datasets.fashion]
plugin = "fashion-mnist"
[models.net]
plugin = "mlp"
params = { widths = [64] }
dataset = "mnist"
parts = [4000, 1000]
part = 0
trainer = { params = { epochs = 3, lr = 3e-3 } }
[models.net_T]
plugin = "temperature_scaled"
members = ["net"]
dataset = "mnist"
parts = [4000, 1000]
part = 1
trainer = { plugin = "temperature" }
[evaluations.test]
dataset = "mnist"
n = 500
sources = ["net", "net_T"]
[evaluations.ood]
dataset = "fashion"
n = 500
sources = ["net", "net_T"]
[tables.t]
evaluation = "test"
rows = "model"
columns = [
  { label = "ECE", attack = "clean", metric = { plugin = "calibration_error", params = { kind = "ece" } } },
  { label = "accuracy", attack = "clean", metric = "accuracy" },
  { label = "AUROC msp", attack = "clean", metric = { plugin = "ood_auroc", params = { ood = "ood" } } },
]
"""


@pytest.mark.slow
def test_temperature_scaling_and_ood_end_to_end(write_suite, tmp_path):
    outcome = run_suite(write_suite(SUITE), profile=None, store=Store(tmp_path / "s"), run_dir=tmp_path / "r",
                        device="cpu", workers=None, executor="local", console=Console(quiet=True), quiet=True)
    assert not outcome.failed, outcome.failed
    t = outcome.results.tables[0]
    v = {(c.row, c.column): c.value for c in t.cells}
    assert v[("net", "accuracy")] == v[("net_T", "accuracy")]  # a temperature does not change the argmax
    assert v[("net_T", "ECE")] <= v[("net", "ECE")] + 0.5  # fitted on held-out data: not worse (up to noise)
    assert 0.5 < v[("net", "AUROC msp")] <= 1.0  # MNIST vs Fashion-MNIST is separable by confidence
