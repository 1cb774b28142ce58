"""Reliability diagrams: the shared binning against a hand computation, the PNG a run writes for its
calibration tables (and its numbers against calibration_error's), none for a suite without, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console
from support import rbench
from typer.testing import CliRunner

from rbench.cli import app
from rbench.plugins.metrics.calibration import calibration_errors, reliability_bins
from rbench.plugins.reporters.reliability import panels
from rbench.results import RunResults
from rbench.runner import run_suite, write_run_dir
from rbench.store import Store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

SUITE = """
[suite]
name = "reliab"
seed = 1
[datasets.mnist]
plugin = "mnist"
[models.net]
plugin = "mlp"
params = { widths = [16] }
dataset = "mnist"
parts = [1000, 500]
part = 0
trainer = { params = { epochs = 1, lr = 3e-3 } }
[models.net_T]
plugin = "temperature_scaled"
members = ["net"]
dataset = "mnist"
parts = [1000, 500]
part = 1
trainer = { plugin = "temperature" }
[evaluations.test]
dataset = "mnist"
n = 300
sources = ["net", "net_T"]
[tables.accuracy]
evaluation = "test"
rows = "model"
columns = "metric"
metrics = ["accuracy"]
where = { attack = "clean" }
"""

CALIBRATION_TABLE = """
[tables.calib]
title = "Calibration before and after temperature scaling"
evaluation = "test"
rows = "model"
columns = [
  { label = "ECE", attack = "clean", metric = { plugin = "calibration_error", params = { kind = "ece" } } },
  { label = "MCE", attack = "clean", metric = { plugin = "calibration_error", params = { kind = "mce", bins = 10 } } },
  { label = "accuracy", attack = "clean", metric = "accuracy" },
]
"""


def _run(suite, store, run_dir):
    return run_suite(suite, profile=None, store=store, run_dir=run_dir, device="cpu", workers=None,
                     executor="local", console=Console(quiet=True), quiet=True)


@pytest.fixture(scope="module")
def calib_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    suite = root / "calib.toml"
    suite.write_text(SUITE + CALIBRATION_TABLE)
    store = Store(root / "store")
    outcome = _run(suite, store, root / "run")
    assert not outcome.failed and not outcome.notes, (outcome.failed, outcome.notes)
    return root, store, outcome


def test_reliability_bins_by_hand():
    # 3 bins [0, 1/3), [1/3, 2/3), [2/3, 1]; confidences 0.9 (right), 0.7 (wrong), 0.8 (right), 0.5 (right)
    logits = np.log(np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.5, 0.5]]))
    labels = np.array([0, 1, 1, 0])
    count, accuracy, confidence = reliability_bins(logits, labels, bins=3)
    assert count.tolist() == [0, 1, 3]
    assert np.isnan(accuracy[0]) and np.isnan(confidence[0])  # an empty bin has no accuracy
    assert accuracy[1:] == pytest.approx([1.0, 2 / 3]) and confidence[1:] == pytest.approx([0.5, 0.8])
    errs = calibration_errors(logits, labels, bins=3)
    assert errs["ece"] == pytest.approx(1 / 4 * 0.5 + 3 / 4 * (0.8 - 2 / 3))
    assert errs["mce"] == pytest.approx(0.5)
    assert errs["rms"] == pytest.approx(np.sqrt(1 / 4 * 0.25 + 3 / 4 * (0.8 - 2 / 3) ** 2))
    # a confidence of exactly 1 falls in the last bin
    assert reliability_bins(np.array([[0.0, -1e6]]), np.array([0]), bins=4).count.tolist() == [0, 0, 0, 1]


def test_run_writes_a_png_for_its_calibration_table(calib_run):
    from matplotlib.image import imread

    root, _, outcome = calib_run
    pngs = sorted(p.name for p in (root / "run").glob("*.png"))
    assert pngs == ["reliability_calib.png"]  # the accuracy-only table gets none
    path = root / "run" / "reliability_calib.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert 300 <= image.shape[0] <= 2000 and 600 <= image.shape[1] <= 3000  # two or three panels side by side
    assert "[reliability_calib.png](reliability_calib.png)" in (root / "run" / "tables.md").read_text()
    calib = next(t for t in RunResults.read(root / "run").tables if t.name == "calib")
    ece = {"plugin": "calibration_error", "params": {"kind": "ece", "bins": 15}}
    assert calib.metric_call(calib.cell("net", "ECE")) == calib.metric_calls["calibration error (kind=ece)"] == ece
    assert calib.metric_call(calib.cell("net_T", "accuracy"))["plugin"] == "accuracy"


def test_plotted_bins_agree_with_calibration_error(calib_run):
    _, store, outcome = calib_run
    calib = next(t for t in outcome.results.tables if t.name == "calib")
    figure = panels(calib, store)
    # per model: the 15-bin ECE column and the 10-bin MCE column are two binnings of one set of predictions
    assert [(p.label, p.bins.count.size) for p in figure] == [
        ("net / ECE", 15), ("net / MCE", 10), ("net_T / ECE", 15), ("net_T / MCE", 10)]
    for p in figure:
        row = p.label.split(" / ")[0]
        count, accuracy, confidence = p.bins
        assert count.sum() == 300
        full = count > 0
        ece = float((count[full] / count.sum() * np.abs(accuracy[full] - confidence[full])).sum())
        mce = float(np.abs(accuracy[full] - confidence[full]).max())
        assert ece == pytest.approx(p.ece, abs=1e-12)
        if count.size == 15:
            assert 100 * ece == pytest.approx(calib.cell(row, "ECE").value, abs=1e-9)
            assert [p.key] == calib.cell(row, "ECE").jobs
        else:
            assert 100 * mce == pytest.approx(calib.cell(row, "MCE").value, abs=1e-9)


def test_no_png_for_a_suite_without_calibration_tables(calib_run):
    root, store, _ = calib_run
    suite = root / "plain.toml"
    suite.write_text(SUITE)
    outcome = _run(suite, store, root / "plain")  # everything is stored already
    assert not outcome.failed and not outcome.notes
    assert not list((root / "plain").glob("*.png"))
    assert "Reliability" not in (root / "plain" / "tables.md").read_text()


def test_a_figure_that_cannot_be_drawn_does_not_fail_the_run(calib_run, tmp_path):
    _, _, outcome = calib_run
    notes = write_run_dir(outcome.results, tmp_path / "run", Store(tmp_path / "empty"))
    assert len(notes) == 1 and "reliability" in notes[0] and "not in the store" in notes[0]
    assert not list((tmp_path / "run").glob("reliability*"))  # the other reporters wrote their files
    assert {"results.json", "tables.md", "tables.csv", "cells.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}


def test_report_redraws_the_figure_and_old_results_still_render(calib_run, tmp_path):
    root, _, _ = calib_run
    run = tmp_path / "run"
    run.mkdir()
    raw = json.loads((root / "run" / "results.json").read_text())
    (run / "results.json").write_text(json.dumps(raw))
    drawn = rbench("report", str(run), "-f", "reliability")  # the run's store, from its provenance
    assert drawn.returncode == 0, drawn.stderr
    assert "reliability_calib.png" in drawn.stdout and (run / "reliability_calib.png").read_bytes()[:8] == PNG_SIGNATURE
    for t in raw["tables"]:  # results.json written before metric calls were recorded (by table, then by cell)
        del t["metric_calls"]
        for cell in t["cells"]:
            del cell["call"]
    (run / "results.json").write_text(json.dumps(raw))
    old = CliRunner().invoke(app, ["report", str(run), "-f", "reliability"])
    assert old.exit_code == 0 and "nothing to draw" in old.stdout
    md = CliRunner().invoke(app, ["report", str(run)])
    assert md.exit_code == 0 and "| model \\ columns" in md.stdout and "reliability_" not in md.stdout


def test_report_draws_only_from_the_entries_the_run_read(calib_run, tmp_path):
    """A figure redrawn by ``rbench report`` from a store whose predictions are no longer those the run's cells
    were computed from (recomputed since, or another store's under the same key) was drawn from them silently;
    results.json records each entry's checksum, and the store refuses other contents in one line."""
    import shutil

    root, store, outcome = calib_run
    copy = tmp_path / "store"
    shutil.copytree(store.root, copy)
    raw = json.loads((root / "run" / "results.json").read_text())
    assert all(job["sha256"] == Store(copy).checksum(key) for key, job in raw["jobs"].items())
    raw["provenance"]["store"] = str(copy)
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(raw))
    key = next(c.jobs[0] for t in outcome.results.tables for c in t.cells if c.column == "ECE")
    pred = Store(copy).load_predictions(key)
    pred.logits = pred.logits[:, ::-1].copy()  # other predictions under the same key, with a valid checksum
    Store(copy).save_predictions(key, pred)
    drawn = rbench("report", str(run), "-f", "reliability")
    assert drawn.returncode == 2 and f"store entry {key} holds other contents than the run read" in drawn.stderr
    errors = [line for line in drawn.stderr.splitlines() if line.startswith("rbench: error:")]
    assert len(errors) == 1 and not (run / "reliability_calib.png").exists()
