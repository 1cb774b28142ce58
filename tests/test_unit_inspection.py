"""Szegedy et al.'s unit inspection: phi(x) of an MLP's hidden layers, the label purity of the top-k images along
single units and random directions (the ``unit_purity`` metric), the image grids (the ``unit_grids`` reporter),
and the table in a quick run of a tiny suite."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console
from support import rbench

from rbench.plugins.metrics.unit_inspection import (
    directions,
    hidden_activations,
    inspect_units,
    label_purity,
)
from rbench.plugins.models.mlp import MlpNet, MlpParams
from rbench.plugins.reporters.unit_grids import UnitGrids
from rbench.results import RunResults
from rbench.runner import run_suite
from rbench.store import Store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PER_CLASS = 20


def class_detector() -> tuple[MlpNet, torch.Tensor, torch.Tensor]:
    """(model, x, y): hidden unit i of a one-hidden-layer ReLU MLP responds to the band of image rows 2i, 2i+1 and
    to nothing else; a class-c image lights that band only, at one of PER_CLASS intensities. So unit i is
    active on class-i images alone."""
    model = MlpNet(MlpParams(widths=[10], activation="relu")).eval().requires_grad_(False)
    bands = torch.zeros(10, 1, 28, 28)
    for c in range(10):
        bands[c, 0, 2 * c:2 * c + 2] = 1.0
    with torch.no_grad():
        model.linears[0].weight.copy_(bands.flatten(1) / 56)
        model.linears[0].bias.zero_()
    levels = torch.linspace(0.1, 1.0, PER_CLASS)
    x = torch.cat([bands[c:c + 1] * levels.view(-1, 1, 1, 1) for c in range(10)])
    y = torch.arange(10).repeat_interleave(PER_CLASS)
    return model, x, y


def test_label_purity_is_the_share_of_the_most_common_label():
    purity = label_purity(torch.tensor([[3, 3, 3, 3], [1, 1, 2, 7], [0, 5, 6, 9]]))
    assert purity.tolist() == [1.0, 0.5, 0.25]


def test_hidden_activations_are_each_layer_after_its_nonlinearity():
    torch.manual_seed(0)
    model = MlpNet(MlpParams(widths=[8, 6], activation="sigmoid", dropout=0.5)).eval()
    x = torch.rand(5, 1, 28, 28)
    w1, w2 = model.linears[0], model.linears[1]
    phi1 = torch.sigmoid(w1(x.flatten(1)))
    phi2 = torch.sigmoid(w2(phi1))
    assert torch.allclose(hidden_activations(model, x, 1).float(), phi1, atol=1e-6)
    assert torch.allclose(hidden_activations(model, x, 2).float(), phi2, atol=1e-6)
    assert hidden_activations(model, x, 2).dtype == torch.float64
    with pytest.raises(ValueError, match="has 2 hidden layers"):
        hidden_activations(model, x, 3)
    with pytest.raises(TypeError, match="'mlp' model"):
        hidden_activations(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), x, 1)


def test_directions_are_seeded_units_or_unit_length_gaussians():
    v, names = directions(12, "natural", 5, seed=1)
    units = [int(n.split()[1]) for n in names]
    assert len(set(units)) == 5 and torch.equal(v, torch.eye(12, dtype=torch.float64)[:, units])
    assert directions(12, "natural", None, seed=1)[0].shape == (12, 12)
    r, _ = directions(12, "random", 30, seed=1)
    assert r.shape == (12, 30) and torch.allclose(r.norm(dim=0), torch.ones(30, dtype=torch.float64))
    assert torch.equal(r, directions(12, "random", 30, seed=1)[0])
    assert not torch.equal(r, directions(12, "random", 30, seed=2)[0])


def test_single_units_of_class_detectors_are_pure_and_random_directions_are_not():
    model, x, y = class_detector()
    natural = inspect_units(model, x, y, layer=1, basis="natural", k=10, count=None, seed=0)
    assert natural.purity.tolist() == [1.0] * 10
    for name, top in zip(natural.names, natural.top, strict=True):  # unit i's top images are class i's brightest
        unit = int(name.split()[1])
        assert set(top.tolist()) == set(range(unit * PER_CLASS + PER_CLASS - 10, (unit + 1) * PER_CLASS))
    random = inspect_units(model, x, y, layer=1, basis="random", k=10, count=200, seed=0)
    assert random.purity.mean() < 0.95 and random.purity.min() < 1.0
    with pytest.raises(ValueError, match="exceeds"):
        inspect_units(model, x, y, layer=1, basis="natural", k=len(x) + 1, count=None, seed=0)


def test_the_ranking_is_computed_once_per_model_and_inputs_object(monkeypatch):
    """A second cell of the same model and inputs (the spread beside the mean, the other basis) reuses phi and the
    ranking; other inputs, or the same values in another tensor, are ranked afresh, and give the same answer."""
    import rbench.plugins.metrics.unit_inspection as units

    model, x, y = class_detector()
    calls = []
    real = units.hidden_activations
    monkeypatch.setattr(units, "hidden_activations", lambda *a: calls.append(1) or real(*a))
    first = inspect_units(model, x, y, layer=1, basis="natural", k=10, count=None, seed=0)
    again = inspect_units(model, x, y, layer=1, basis="natural", k=5, count=None, seed=0)
    assert len(calls) == 1 and torch.equal(again.top, first.top[:, :5])
    inspect_units(model, x, y, layer=1, basis="random", k=10, count=20, seed=0)
    assert len(calls) == 1  # the other basis: the same phi
    copy = x.clone()
    other = inspect_units(model, copy, y, layer=1, basis="natural", k=10, count=None, seed=0)
    assert len(calls) == 2 and torch.equal(other.top, first.top)
    shuffled = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    moved = inspect_units(model, x[shuffled], y[shuffled], layer=1, basis="natural", k=10, count=None, seed=0)
    assert len(calls) == 3 and torch.equal(shuffled[moved.top].sort(1).values, first.top.sort(1).values)
    again.top.fill_(0)  # the caller's own tensor: the kept ranking is not changed through it
    assert torch.equal(inspect_units(model, x, y, layer=1, basis="natural", k=10, count=None, seed=0).top, first.top)
    del copy, other
    part = x[:50]
    inspect_units(model, part, y[:50], layer=1, basis="natural", k=3, count=None, seed=0)
    kept = units._MEMO[model].values()
    assert {id(ref()) for ref, _ in kept} == {id(x), id(part)}  # the entries of freed inputs are dropped
    big = torch.rand(1500, *x.shape[1:])
    inspect_units(model, big, torch.zeros(1500, dtype=torch.long), layer=1, basis="natural", k=5, count=None, seed=0)
    rankings = [value for key, (_, value) in units._MEMO[model].items() if len(key) > 2]
    assert rankings and max(len(r) for r in rankings) == units.KEPT  # the top 1000 of 1500 kept, not all


SUITE_TEMPLATE = """
[suite]
name = "units"
seed = 2
[datasets.mnist]
plugin = "mnist"
[models.mlp]
plugin = "mlp"
params = { widths = [24, 16], activation = "sigmoid" }
dataset = "mnist"
n_train = 3000
trainer = { params = { epochs = 2, batch_size = 64, lr = 3e-3 } }
[evaluations.test]
dataset = "mnist"
split = "test"
n = 2000
sources = ["mlp"]
[tables.unit_inspection]
title = "Label purity (%) of the top-5 test images per direction"
evaluation = "test"
rows = [{ label = "MLP", model = "mlp" }]
{columns}[profiles.quick.evaluations.test]
n = 400
"""


def _column(label: str, params: str) -> str:
    metric = f'{{ plugin = "unit_purity", params = {{ {params} }}, label = "{label}" }}'
    return f'[[tables.unit_inspection.columns]]\nlabel = "{label}"\nattack = "clean"\nmetric = {metric}\n'


SUITE = SUITE_TEMPLATE.replace("{columns}", "".join([
    _column("L1 natural", 'layer = 1, basis = "natural", k = 5'),
    _column("L1 natural sd", 'layer = 1, basis = "natural", k = 5, statistic = "std"'),
    _column("L2 random", 'layer = 2, basis = "random", k = 5, directions = 40'),
    _column("L3 random", 'layer = 3, basis = "random", k = 5'),
]))


@pytest.fixture(scope="module")
def units_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("units")
    suite = root / "units.toml"
    suite.write_text(SUITE)
    store = Store(root / "store")
    outcome = run_suite(suite, profile="quick", store=store, run_dir=root / "run", device="cpu", workers=None,
                        executor="local", console=Console(quiet=True), quiet=True)
    assert not outcome.failed, outcome.failed
    return root, store, RunResults.read(root / "run")


def test_the_table_appears_in_a_quick_run(units_run):
    _, _, results = units_run
    assert results.profile == "quick"
    table = next(t for t in results.tables if t.name == "unit_inspection")
    cells = {c.column: c for c in table.cells}
    for column in ("L1 natural", "L2 random"):
        assert 100 / 5 <= cells[column].value <= 100 and len(cells[column].jobs) == 2  # model, clean predictions
    assert 0 < cells["L1 natural sd"].value < 50
    assert cells["L3 random"].value is None and "has 2 hidden layers" in cells["L3 random"].error


def test_the_reporter_draws_one_grid_per_basis(units_run, tmp_path):
    root, store, results = units_run
    written = UnitGrids().write(results, tmp_path, store)
    names = sorted(p.name for p in written)
    assert names == ["units_unit_inspection_natural.png", "units_unit_inspection_random.png"]
    assert sorted(p.name for p in (root / "run").glob("units_*.png")) == names  # the run drew them too
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 5000


def test_bad_unit_purity_params_are_one_line_and_exit_2(tmp_path):
    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE.replace('basis = "random", k = 5, directions = 40', 'basis = "diagonal", k = 5'))
    out = rbench("run", str(suite), "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / "run"))
    assert out.returncode == 2 and "basis" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "store" / "objects").exists()
