"""A miniature Szegedy-style reproduction run end to end: disjoint training parts, L-BFGS minimal adversarials,
amplification, layer bounds, and the comparison with a published file, in `rbench run` and `rbench compare`."""

from __future__ import annotations

import json

import pytest
from support import rbench

pytestmark = pytest.mark.slow

SUITE = """
[suite]
name = "mini_szegedy"
seed = 1
published = ["published.toml"]

[datasets.mnist]
plugin = "mnist"

[models.A]
plugin = "mlp"
params = { widths = [32], activation = "sigmoid" }
dataset = "mnist"
parts = [1000, 1000]
part = 0
trainer = { params = { epochs = 3, lr = 3e-3 } }

[models.B]
plugin = "mlp"
params = { widths = [32], activation = "sigmoid" }
dataset = "mnist"
parts = [1000, 1000]
part = 1
trainer = { params = { epochs = 3, lr = 3e-3 } }

[attacks.lbfgs]
plugin = "lbfgs"
params = { bisection_steps = 3, max_iter = 15 }

[attacks.amp]
transform = "amplify"
input = "lbfgs"
params = { size = 0.1 }

[evaluations.p1]
dataset = "mnist"
split = "train"
parts = [1000, 1000]
part = 0
sources = ["A", "B"]
targets = ["A", "B"]

[evaluations.test_adv]
dataset = "mnist"
n = 24
sources = ["A", "B"]
targets = ["A", "B"]
attacks = ["lbfgs", "amp"]

[tables.cross]
evaluation = "test_adv"
columns = "target"
metric = "error"
rows = [{ label = "for A", source = "A", attack = "lbfgs" }, { label = "A amplified", source = "A", attack = "amp" },
        { label = "for B", source = "B", attack = "lbfgs" }]

[tables.models]
evaluation = "test_adv"
rows = "model"
columns = [{ label = "error on P1", evaluation = "p1", attack = "clean", metric = "error" },
           { label = "distortion", attack = "lbfgs", metric = { plugin = "distortion", label = "distortion" } },
           { label = "bound", attack = "clean", metric = { plugin = "operator_norm", label = "bound" } },
           { label = "amplified", attack = "amp", metric = { plugin = "distortion", params = { over = "all" } } }]
"""

PUBLISHED = """
[source]
citation = "a test"
[tables.cross]
figure = "Table X"
tolerance = { abs = 0.5 }
why = "the diagonal is 100% by construction"
values = { "for A" = { A = 100.0 }, "for B" = { B = 100.0 } }
[tables.models]
figure = "Table Y"
tolerance = { abs = 0.0 }
why = "a cell that cannot match"
values = { A = { "error on P1" = 100.0 } }
"""


def test_mini_reproduction(tmp_path):
    (tmp_path / "suite.toml").write_text(SUITE)
    (tmp_path / "published.toml").write_text(PUBLISHED)
    out = rbench("run", str(tmp_path / "suite.toml"), "--store", str(tmp_path / "store"), "--run-dir",
                 str(tmp_path / "run"), "-q")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "compare cross (Table X): 2/2 cells within tolerance" in out.stdout
    assert "compare models (Table Y): 0/1 cells within tolerance" in out.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    tables = {t["name"]: {(c["row"], c["column"]): c["value"] for c in t["cells"]} for t in results["tables"]}
    cross, models = tables["cross"], tables["models"]
    assert cross[("for A", "A")] == 100.0 and cross[("for B", "B")] == 100.0  # minimal adversarials all succeed
    assert 0.08 < models[("A", "amplified")] <= 0.1 + 1e-6  # RMS 0.1, less where clipping to [0, 1] bites
    assert 0 < models[("A", "distortion")] < 0.3 and models[("B", "bound")] > 1
    assert models[("A", "error on P1")] < models[("B", "error on P1")]  # A was trained on P1, B was not
    cmp = json.loads(rbench("compare", str(tmp_path / "run"), "--format", "json").stdout)["cells"]
    assert {(r["table"], r["row"], r["column"], r["within_tolerance"]) for r in cmp} == {
        ("cross", "for A", "A", True), ("cross", "for B", "B", True), ("models", "A", "error on P1", False)}
    md = (tmp_path / "run" / "tables.md").read_text()
    assert "## Comparison with the published tables" in md and "0/1 cells within tolerance" in md
