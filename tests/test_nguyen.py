"""Nguyen et al. 2015: the generator-attack contract (inputs made from nothing for target classes), the MAP-Elites
and gradient-ascent generators, the fooling metrics and image grid, and suites/nguyen2015.toml.

Fast: tiny models trained on real MNIST subsets, a few generations. The quick profile end to end is marked
``full`` (it takes minutes on 2 cores)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from rich.console import Console
from support import REPO, SHARED_DATA, rbench, run_values

from rbench.attack import AttackOutput, GeneratorAttack
from rbench.errors import SuiteError
from rbench.gates import check_stored
from rbench.inputs import PluginContractError, load_model
from rbench.manager import PluginInfo, get_registry
from rbench.plan import build_plan, generated_targets
from rbench.plugins.attacks.evolution import polynomial_mutation, sbx
from rbench.plugins.attacks.gradient_ascent import GradientAscent, GradientAscentParams
from rbench.plugins.attacks.map_elites import Archive, MapElites, MapElitesParams
from rbench.runner import run_suite
from rbench.specs import Generation
from rbench.store import Store
from rbench.suite import load_suite

SUITE = """
[suite]
name = "tinyfool"
seed = 1

[datasets.mnist]
plugin = "mnist"

[models.mlp]
plugin = "mlp"
params = { widths = [16] }
dataset = "mnist"
n_train = 1000
trainer = { params = { epochs = 2, batch_size = 50, lr = 3e-3 } }

[models.twin]
plugin = "mlp"
params = { widths = [16] }
dataset = "mnist"
n_train = 1000
seed = 2
trainer = { params = { epochs = 2, batch_size = 50, lr = 3e-3 } }

[attacks.ea]
plugin = "map_elites"
params = { generations = 5, population = 20, pairs = 10 }

[attacks.ascent]
plugin = "gradient_ascent"
params = { steps = 5, step_size = 0.05 }

[evaluations.fool]
dataset = "mnist"
n = 50
per_class = 2
batch_size = 15
sources = ["mlp"]
targets = ["mlp", "twin"]
attacks = ["ea", "ascent"]

[evaluations.ref]
dataset = "mnist"
split = "train"
n = 500
sources = ["mlp"]

[tables.best]
evaluation = "fool"
figure = "images"
rows = [{ label = "ea", model = "mlp", attack = "ea" }, { label = "ascent", model = "mlp", attack = "ascent" },
        { label = "test", model = "mlp", attack = "clean" }]
columns = [
  { label = "max", metric = { plugin = "fooling_confidence", params = { reduce = "max" }, label = "max" } },
  { label = "c3", metric = { plugin = "fooling_confidence", params = { cls = 3, reduce = "max" }, label = "c3" } },
  { label = "gen 5", metric = { plugin = "fooling_confidence", params = { generation = 5 }, label = "gen 5" } },
  { label = "gen 6", metric = { plugin = "fooling_confidence", params = { generation = 6 }, label = "gen 6" } },
  { label = "reached", metric = { plugin = "fooled_fraction", params = { threshold = 0.3 }, label = "reached" } },
  {label = "per", metric = {plugin = "fooled_fraction", params = { threshold = 0.3, per = "class" }, label = "per" } },
  { label = "first", metric = { plugin = "fooling_generations", params = { threshold = 0.01 }, label = "first" } },
  { label = "nn", metric = { plugin = "nearest_distance", params = { reference = "ref" }, label = "nn" } },
  { label = "error", metric = "error" },
  { label = "success", metric = "success_rate" },
  { label = "distortion", metric = "distortion" },
]

[tables.transfer]
evaluation = "fool"
rows = "source"
columns = "target"
where = { attack = "ea" }
metric = { plugin = "fooled_fraction", params = { threshold = 0.3 } }
"""


def _run(path: Path, store: Path, run_dir: Path, profile: str | None = None):
    return run_suite(path, profile=profile, store=Store(store), run_dir=run_dir, device="cpu", workers=None,
                     executor="local", console=Console(quiet=True), quiet=True)


@pytest.fixture(scope="module")
def fooled(tmp_path_factory):
    """The tiny fooling suite run once on a cold store (one inline worker)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RBENCH_DATA", str(SHARED_DATA))
    root = tmp_path_factory.mktemp("fool")
    suite = root / "fool.toml"
    suite.write_text(SUITE)
    outcome = _run(suite, root / "store", root / "run")
    assert not outcome.failed, [(r.label, r.error) for r in outcome.failed]
    yield suite, root, outcome
    mp.undo()


def _job(suite: Path, label: str):
    plan = build_plan(load_suite(suite))
    return next(j for j in plan.jobs.values() if j.label == label)


def _softmax(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.tensor(x)), dim=1).numpy()


# -- the engine: generator jobs, stored sets, gates -----------------------------------------------------------
def test_generated_set_is_stored_with_targets_and_no_clean_input(fooled):
    suite, root, _ = fooled
    store = Store(root / "store")
    job = _job(suite, "generate ea on mlp")
    assert job.spec.data is None and job.record["generate"] == {"classes": 10, "per_class": 2, "shape": [1, 28, 28]}
    adv = store.load_advset(job.key)
    assert adv.x_adv.dtype == np.float32 and adv.x_adv.shape == (20, 1, 28, 28)
    assert 0 <= adv.x_adv.min() and adv.x_adv.max() <= 1
    assert np.array_equal(adv.targets, np.tile(np.arange(10), 2))
    assert (adv.labels == -1).all() and (adv.indices == -1).all() and adv.distortion == {} and adv.generated
    assert adv.extras["trace"].shape == (20, 6)
    model = load_model(store, job.spec.source, "cpu")
    probs = _softmax(model, adv.x_adv)
    assert np.array_equal(adv.success, probs.argmax(1) == adv.targets)
    # the trace ends at the stored image's confidence and never falls (an elitist archive)
    assert np.allclose(adv.extras["trace"][:, -1], probs[np.arange(20), adv.targets], atol=1e-5)
    assert (np.diff(adv.extras["trace"], axis=1) >= 0).all()


def test_generated_set_round_trips_through_verification_and_the_gate(fooled, tmp_path):
    suite, root, _ = fooled
    shutil.copytree(root / "store", tmp_path / "store")
    store = Store(tmp_path / "store")
    job = _job(suite, "generate ascent on mlp")
    assert store.verify(job.key) == "ok"
    (tmp_path / "store" / "gates" / f"{job.key}.json").unlink()  # no memo: the gate re-predicts
    check_stored(store, job)
    assert store.gate_stamp(job.key) is not None


@pytest.mark.parametrize("tamper", ["flags", "targets", "labels", "distortions", "out_of_box", "rows"])
def test_a_tampered_generated_set_is_not_trusted(fooled, tmp_path, tamper):
    suite, root, _ = fooled
    shutil.copytree(root / "store", tmp_path / "store")
    store = Store(tmp_path / "store")
    job = _job(suite, "generate ea on mlp")
    adv = store.load_advset(job.key)
    if tamper == "flags":
        adv.success = ~adv.success
    elif tamper == "targets":
        adv.targets = np.roll(adv.targets, 1)
    elif tamper == "labels":
        adv.labels = adv.targets.copy()
    elif tamper == "distortions":
        adv.distortion = {k: np.zeros(len(adv.x_adv), np.float32) for k in ("l2", "linf", "rms", "mean_abs")}
    elif tamper == "out_of_box":
        adv.x_adv = adv.x_adv + 0.5
    else:
        adv.x_adv, adv.success, adv.labels, adv.targets, adv.indices = (
            a[:10] for a in (adv.x_adv, adv.success, adv.labels, adv.targets, adv.indices))
        adv.extras = {k: v[:10] for k, v in adv.extras.items()}
    store.save_advset(job.key, adv)  # a valid checksum: only the gate can tell
    with pytest.raises(PluginContractError, match=job.key):
        check_stored(store, job)


def test_a_set_made_from_data_without_distortions_is_not_trusted(tmp_path):
    from support import TINY_SUITE

    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE.replace('attacks = ["fgsm", "pgd", "noise"]', 'attacks = ["noise"]'))
    outcome = _run(suite, tmp_path / "store", tmp_path / "run")
    key = next(k for k, r in outcome.job_results.items() if r.label == "attack noise on mlp")
    store = Store(tmp_path / "store")
    adv = store.load_advset(key)
    adv.distortion = {}
    store.save_advset(key, adv)
    job = build_plan(load_suite(suite)).jobs[key]
    with pytest.raises(PluginContractError, match="no distortions"):
        check_stored(store, job)


def test_a_second_run_trusts_every_stored_output(fooled, tmp_path):
    suite, root, outcome = fooled
    again = _run(suite, root / "store", tmp_path / "run")
    assert {r.status for r in again.job_results.values()} == {"cached"}
    assert run_values(tmp_path / "run") == run_values(root / "run")


class _Rogue(GeneratorAttack):
    class Params(BaseModel):
        pass

    def __init__(self, name: str, how: str):
        self.name, self.how = name, how

    def run(self, model, targets, params, *, shape, generator=None):  # type: ignore[override]
        x = torch.rand(len(targets), *shape, generator=generator)
        success = model(x).argmax(1) == targets
        if self.how == "box":
            x = x * 1.5
            success = model(x).argmax(1) == targets
        elif self.how == "nan":
            x[1, 0, 3, 3] = float("nan")
        elif self.how == "flags":
            success = torch.ones_like(success)
            success[0] = model(x[:1]).argmax(1)[0] == targets[0]
            success[1:] = ~(model(x[1:]).argmax(1) == targets[1:])
        elif self.how == "targets":
            return AttackOutput(x, success, {"targets": targets.flip(0)})
        return AttackOutput(x, success)


@pytest.mark.parametrize("how, reason", [("box", "leaves the [0, 1] box"), ("nan", "non-finite x_adv"),
                                         ("flags", "success flags disagree with the model's prediction"),
                                         ("targets", "other than the targets it was given")])
def test_a_rogue_generator_fails_with_one_line_naming_it(fooled, tmp_path, how, reason):
    suite, root, _ = fooled
    registry = get_registry()
    name = f"rogue_{how}"
    registry.plugins["attack"][name] = PluginInfo("attack", name, "0", "tests", "tests", _Rogue(name, how))
    try:
        text = SUITE.replace('attacks = ["ea", "ascent"]', 'attacks = ["ea", "ascent", "rogue"]')
        text += f'\n[attacks.rogue]\nplugin = "{name}"\n'
        path = tmp_path / "rogue.toml"
        path.write_text(text)
        outcome = _run(path, root / "store", tmp_path / "run")
    finally:
        registry.plugins["attack"].pop(name)
    failed = {r.label: r.error for r in outcome.failed}
    error = failed["generate rogue on mlp"]
    assert f"attack '{name}'" in error and reason in error and "\n" not in error


def test_a_transform_of_a_generated_set_is_refused_before_work(tmp_path):
    text = SUITE + '\n[attacks.clipped]\ntransform = "clip"\ninput = "ea"\nparams = { norm = "linf", eps = 0.1 }\n'
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SuiteError, match="attacks.clipped.input: attack 'ea' generates inputs from nothing"):
        load_suite(path)


def test_the_conformance_kit_refuses_a_generator_with_a_clear_message():
    from rbench.testing import check_attack

    with pytest.raises(TypeError, match="'map_elites' is a generator"):
        check_attack("map_elites", {"generations": 1})


def test_per_class_must_be_positive(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(SUITE.replace("per_class = 2", "per_class = 0"))
    out = rbench("validate", str(path))
    assert out.returncode == 2 and "evaluations.fool.per_class" in out.stderr and len(out.stderr.splitlines()) == 1


def test_per_class_enters_no_key_of_an_attack_on_data(tmp_path):
    from support import TINY_SUITE

    plain, more = tmp_path / "a.toml", tmp_path / "b.toml"
    plain.write_text(TINY_SUITE)
    more.write_text(TINY_SUITE.replace("batch_size = 25\n", "batch_size = 25\nper_class = 7\n"))
    assert sorted(build_plan(load_suite(plain)).jobs) == sorted(build_plan(load_suite(more)).jobs)


# -- metrics and the image grid -------------------------------------------------------------------------------
def test_fooling_metrics_are_computed_from_the_stored_outputs(fooled):
    suite, root, outcome = fooled
    store = Store(root / "store")
    values = run_values(root / "run")
    job = _job(suite, "generate ea on mlp")
    adv = store.load_advset(job.key)
    probs = _softmax(load_model(store, job.spec.source, "cpu"), adv.x_adv)[np.arange(20), adv.targets]
    assert values[("best", "ea", "max")] == pytest.approx(100 * probs.max(), abs=1e-4)
    assert values[("best", "ea", "c3")] == pytest.approx(100 * probs[adv.targets == 3].max(), abs=1e-4)
    assert values[("best", "ea", "gen 5")] == pytest.approx(100 * np.median(probs), abs=1e-3)
    assert values[("best", "ea", "gen 6")] is None  # the run had 5 generations
    assert values[("best", "ea", "reached")] == pytest.approx(100 * (probs >= 0.3).mean())
    per_class = [(probs[adv.targets == c] >= 0.3).any() for c in range(10)]
    assert values[("best", "ea", "per")] == pytest.approx(100 * np.mean(per_class))
    first = (adv.extras["trace"] >= 0.01).argmax(axis=1)
    assert values[("best", "ea", "first")] == first.max()
    assert values[("best", "ea", "error")] == 100.0  # a generated input has no true class: every answer is wrong
    assert values[("best", "ea", "success")] == pytest.approx(100 * adv.success.mean())
    assert values[("best", "ea", "distortion")] is None and values[("best", "test", "max")] is None
    # noise-born images lie far from every training image; test digits lie close to some
    assert values[("best", "test", "nn")] < 8 < values[("best", "ea", "nn")]
    assert ("transfer", "mlp", "twin") in values


def test_a_trace_that_disagrees_with_the_model_is_an_error_cell(fooled, tmp_path):
    suite, root, _ = fooled
    shutil.copytree(root / "store", tmp_path / "store")
    store = Store(tmp_path / "store")
    job = _job(suite, "generate ea on mlp")
    adv = store.load_advset(job.key)
    adv.extras["trace"] = adv.extras["trace"] * 0.5  # claims lower confidences than the model gives
    store.save_advset(job.key, adv)
    outcome = _run(suite, tmp_path / "store", tmp_path / "run")
    best = next(t for t in outcome.results.tables if t.name == "best")
    assert best.cell("ea", "gen 5").value is None and "trace ends" in best.cell("ea", "gen 5").error
    assert best.cell("ea", "max").value is not None  # the images themselves are re-predicted, not read from it


def test_the_image_grid_is_drawn_into_the_run_folder(fooled):
    _, root, _ = fooled
    png = root / "run" / "images_best.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "images_best.png" in (root / "run" / "tables.md").read_text()


def test_a_run_with_generated_sets_compares_with_itself(fooled):
    """Generated images have no dataset index (all -1): their rate cells keep no outcomes to pair on, so
    `rbench compare --run` of such a run works (it refused the whole comparison when they were written)."""
    _, root, _ = fooled
    run = root / "run"
    proc = rbench("compare", str(run), "--run", str(run), "-f", "json")
    assert proc.returncode == 0, proc.stderr
    cells = json.loads(proc.stdout)["cells"]
    assert cells and all(c["verdict"] == "equal" for c in cells)


# -- the generators and their operators ------------------------------------------------------------------------
def test_sbx_keeps_bounds_and_the_pair_mean_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    p1, p2 = 0.4 + 0.2 * torch.rand(50, 100, generator=g), 0.4 + 0.2 * torch.rand(50, 100, generator=g)
    c1, c2 = sbx(p1, p2, eta=10, rate=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(c1 + c2, p1 + p2, atol=1e-6)  # SBX spreads the pair around its mean
    assert (c1 != p1).float().mean() > 0.3 and (c1 == p1).float().mean() > 0.2  # half the genes, half swapped
    again = sbx(p1, p2, eta=10, rate=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again[0], c1) and torch.equal(again[1], c2)
    e1, e2 = sbx(torch.zeros(20, 30), torch.ones(20, 30), eta=0.5, rate=1.0, generator=g)
    assert e1.min() >= 0 and e1.max() <= 1 and e2.min() >= 0 and e2.max() <= 1
    n1, n2 = sbx(p1, p2, eta=10, rate=0.0, generator=g)
    assert torch.equal(n1, p1) and torch.equal(n2, p2)


def test_polynomial_mutation_rate_bounds_and_seed():
    x = torch.rand(200, 784, generator=torch.Generator().manual_seed(0))
    out = polynomial_mutation(x, eta=15, rate=0.1, generator=torch.Generator().manual_seed(1))
    changed = (out != x).float().mean()
    assert 0.09 < changed < 0.11 and out.min() >= 0 and out.max() <= 1
    assert (out - x).abs().max() < 1 and (out - x).abs()[out != x].mean() < 0.2  # eta 15: small steps
    assert torch.equal(out, polynomial_mutation(x, eta=15, rate=0.1, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(polynomial_mutation(x, eta=15, rate=0.0), x)


def test_a_child_replaces_the_elite_of_every_class_where_it_is_better():
    archive = Archive(torch.tensor([0, 1, 2]), torch.zeros(3, 4), torch.tensor([0.5, 0.5, 0.5]))
    images = torch.arange(8.0).view(2, 4)
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]])  # child 0 wins class 0, child 1 class 1; none class 2
    archive.offer(images, probs)
    assert torch.equal(archive.elites, torch.stack([images[0], images[1], torch.zeros(4)]))
    assert torch.allclose(archive.confidence, torch.tensor([0.9, 0.7, 0.5]))


class _Counting(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.batches = inner, []

    def forward(self, x):
        self.batches.append(len(x))
        return self.inner(x)


@pytest.fixture(scope="module")
def small_model():
    from support import small_mnist_model

    return small_mnist_model([32], n_train=2000)[0]


def test_map_elites_classifies_each_population_in_one_forward_pass(small_model):
    model = _Counting(small_model)
    params = MapElitesParams(generations=4, population=30, pairs=12)
    out = MapElites().run(model, torch.arange(10), params, shape=(1, 28, 28), generator=torch.Generator())
    assert model.batches == [30] + [24] * 4 + [10]  # initial population, each generation's children, the result
    assert out.x_adv.shape == (10, 1, 28, 28) and out.extras["trace"].shape == (10, 5)


def test_map_elites_runs_do_not_depend_on_batching_and_improve(small_model):
    params = MapElitesParams(generations=15, population=40, pairs=20)
    targets = torch.tensor(generated_targets(Generation(10, 2, (1, 28, 28))))
    whole = MapElites().run(small_model, targets, params, shape=(1, 28, 28), generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    halves = [MapElites().run(small_model, targets[i:i + 10], params, shape=(1, 28, 28), generator=g)
              for i in (0, 10)]
    assert torch.equal(whole.x_adv, torch.cat([h.x_adv for h in halves]))
    trace = whole.extras["trace"]
    assert (trace.diff(dim=1) >= 0).all() and (trace[:, -1] > trace[:, 0]).all()
    assert not torch.equal(whole.x_adv[:10], whole.x_adv[10:])  # two independent runs
    assert torch.equal(whole.success, small_model(whole.x_adv).argmax(1) == targets)


def test_gradient_ascent_climbs_the_target_probability(small_model):
    targets = torch.arange(10)
    out = GradientAscent().run(small_model, targets, GradientAscentParams(steps=20, step_size=0.05),
                               shape=(1, 28, 28), generator=torch.Generator().manual_seed(0))
    trace = out.extras["trace"]
    final = torch.softmax(small_model(out.x_adv), dim=1)[torch.arange(10), targets]
    assert torch.allclose(trace[:, -1], final, atol=1e-5) and (trace.diff(dim=1) >= 0).all()
    assert (trace[:, -1] > 0.5).all() and trace[:, -1].mean() > 0.8 and (trace[:, 0] < 0.5).all()
    assert out.success.all()
    assert out.x_adv.min() >= 0 and out.x_adv.max() <= 1


# -- the suite ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", [None, "quick"])
def test_shared_models_have_the_same_keys_as_in_szegedy_and_the_quickstart(profile):
    ours = build_plan(load_suite(REPO / "suites" / "nguyen2015.toml", profile)).trained
    szegedy = build_plan(load_suite(REPO / "suites" / "szegedy2013.toml", profile)).trained
    quickstart = build_plan(load_suite(REPO / "suites" / "quickstart.toml", profile)).trained
    for name in ("softmax1", "N100-100-10", "N200-200-10", "lenet"):
        assert ours[name] == szegedy[name], name
    assert ours["lenet"] == quickstart["lenet"]


@pytest.mark.parametrize("profile", [None, "quick"])
def test_the_suite_merges_with_mnist_full(tmp_path, profile):
    path = tmp_path / "both.toml"
    path.write_text(f'[suite]\nname = "both"\ninclude = ["{REPO}/suites/mnist_full.toml", '
                    f'"{REPO}/suites/nguyen2015.toml"]\n')
    both = build_plan(load_suite(path, profile))
    alone = build_plan(load_suite(REPO / "suites" / "nguyen2015.toml", profile))
    assert set(alone.jobs) <= set(both.jobs)
    generators = [j for j in alone.jobs.values() if j.kind == "attack"]
    generations = 200 if profile else 1000
    assert len(generators) == 8 and all(j.spec.generate is not None for j in generators)
    assert {j.spec.attack.params.get("generations") for j in generators} == {generations, None}


@pytest.mark.full
def test_the_quick_profile_runs_end_to_end_and_compares(tmp_path):
    run_dir = tmp_path / "run"
    out = rbench("run", str(REPO / "suites" / "nguyen2015.toml"), "--profile", "quick", "--store",
                 str(tmp_path / "store"), "--run-dir", str(run_dir), "-q", timeout=3600)
    assert out.returncode in (0, 1) and (run_dir / "images_fooling_best.png").exists(), out.stderr
    compared = rbench("compare", str(run_dir))
    assert compared.returncode == 0 and "claim (fooling_summary)" in compared.stdout


def test_the_operators_draw_the_documented_stream_and_change_only_the_genes_it_chooses():
    """The random stream the stored fooling images depend on (a change to it needs a new map_elites version): SBX
    draws one number per pair, one per gene, then two per crossed gene; mutation one per gene, then one per mutated
    gene. Replayed here from a second generator; transposed (non-contiguous) parents work too."""
    g = torch.Generator().manual_seed(0)
    p1, p2 = torch.rand(40, 30, generator=g).t(), torch.rand(40, 30, generator=g).t()  # (30, 40), not contiguous
    p2[:, :5] = p1[:, :5]  # equal genes are never crossed
    after = torch.Generator().manual_seed(1)
    c1, c2 = sbx(p1, p2, eta=10, rate=0.5, generator=after)
    replay = torch.Generator().manual_seed(1)
    crossed = torch.rand(30, generator=replay) < 0.5
    genes = torch.rand(30 * 40, generator=replay).view(30, 40) < 0.5
    active = genes & crossed[:, None] & (p1 != p2)
    torch.rand(2 * int(active.sum()), generator=replay)
    assert torch.equal(after.get_state(), replay.get_state())
    assert not ((c1 != p1) & ~active).any() and not ((c2 != p2) & ~active).any()
    assert ((c1 != p1) & active).float().sum() > 0.8 * active.sum()
    x = torch.rand(784, 200, generator=g).t()
    after = torch.Generator().manual_seed(2)
    out = polynomial_mutation(x, eta=15, rate=0.1, generator=after)
    replay = torch.Generator().manual_seed(2)
    chosen = torch.rand(x.numel(), generator=replay).view(200, 784) < 0.1
    torch.rand(int(chosen.sum()), generator=replay)
    assert torch.equal(after.get_state(), replay.get_state()) and not ((out != x) & ~chosen).any()
    assert ((out != x) & chosen).float().sum() > 0.9 * chosen.sum()
