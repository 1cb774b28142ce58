"""The foolbox adapter plugin: the attack contract and conformance kit, parity with the native attacks,
budgets, seeding, frozen weights, provenance and parameter validation (in Python and in a suite)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

pytest.importorskip("foolbox")

from support import rbench_imports  # noqa: E402

from rbench.attack import Budget  # noqa: E402
from rbench.contract import check_attack_output  # noqa: E402
from rbench.errors import SuiteError  # noqa: E402
from rbench.plugins import get_plugin  # noqa: E402
from rbench.plugins.attacks.foolbox_adapter import (  # noqa: E402
    ALLOWED_KWARGS,
    allowed_kwargs,
    attack_names,
    foolbox_attack,
)
from rbench.suite import load_suite  # noqa: E402
from rbench.testing import check_attack, reference_data, reference_model  # noqa: E402

PGD = {"attack": "LinfPGD", "epsilon": 0.1, "kwargs": {"steps": 20, "abs_stepsize": 0.01, "random_start": False}}

# (params, declared budget, batch sizes for the conformance kit: fewer for the slow ones)
CASES = [
    (PGD, Budget("linf", 0.1), (128, 32, 7)),
    ({"attack": "LinfPGD", "epsilon": 0.1, "kwargs": {"steps": 10}}, Budget("linf", 0.1), (128, 32)),  # random start
    ({"attack": "FGSM", "epsilon": 0.1}, Budget("linf", 0.1), (128, 32, 7)),
    # DeepFool with a budget: 1.5 min on 2 cores, make check-full; the minimal variant below stays in make test
    pytest.param({"attack": "L2DeepFoolAttack", "epsilon": 1.5, "kwargs": {"steps": 50}}, Budget("l2", 1.5), (128, 32),
                 marks=pytest.mark.full),
    ({"attack": "L2DeepFoolAttack"}, None, (128, 32)),  # minimal adversarials, no budget
    ({"attack": "L2AdditiveGaussianNoiseAttack", "epsilon": 2.0}, Budget("l2", 2.0), (128, 32, 7)),
    ({"attack": "SaltAndPepperNoiseAttack", "epsilon": 5.0, "kwargs": {"steps": 10}}, Budget("l2", 5.0), (128, 32)),
    ({"attack": "L2BasicIterativeAttack", "epsilon": 1.5, "kwargs": {"steps": 10}}, Budget("l2", 1.5), (128, 32, 7)),
    ({"attack": "L2FastGradientAttack", "epsilon": 1.5}, Budget("l2", 1.5), (128, 32, 7)),
]


def _plugin_params(params):
    plugin = get_plugin("attack", "foolbox")
    return plugin, plugin.Params.model_validate(params, strict=True)


@pytest.fixture(scope="module")
def ref():
    x, y = reference_data()
    return reference_model(), x, y


def _values(case):
    """A case's (params, budget, batch sizes), whether it is a plain tuple or a pytest.param."""
    return getattr(case, "values", case)


@pytest.mark.parametrize(("params", "budget", "batch_sizes"), CASES, ids=[str(_values(c)[0]) for c in CASES])
def test_contract_and_conformance(ref, params, budget, batch_sizes):
    model, x, y = ref
    attack, p = _plugin_params(params)
    assert attack.budget(p) == budget
    out = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(3))
    check_attack_output("foolbox", out, x, budget, model, y, 0)  # raises on any violation
    report = check_attack("foolbox", params, batch_sizes=batch_sizes)  # determinism, batch sizes, no weight grads
    assert 0 < report.success_rate <= 1


def test_parity_with_native_pgd_and_fgsm():
    model = reference_model()
    x, y = reference_data(500)

    def robust_accuracy(name, params):
        attack, p = _plugin_params(params) if name == "foolbox" else (
            get_plugin("attack", name), get_plugin("attack", name).Params.model_validate(params, strict=True))
        x_adv = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(0)).x_adv
        with torch.no_grad():
            return 100 * float((model(x_adv).argmax(1) == y).float().mean())

    native = robust_accuracy("pgd", {"eps": 0.1, "steps": 20, "step_size": 0.01, "random_start": False})
    assert abs(robust_accuracy("foolbox", PGD) - native) <= 0.5
    native = robust_accuracy("fgsm", {"eps": 0.1})
    assert abs(robust_accuracy("foolbox", {"attack": "FGSM", "epsilon": 0.1}) - native) <= 0.5
    assert native < 50  # the attacks do something on this model
    # L2 PGD and BIM at matched settings (an audit found every built-in within float precision of foolbox's)
    native = robust_accuracy("pgd", {"norm": "l2", "eps": 1.5, "steps": 20, "step_size": 0.2,
                                     "random_start": False})
    assert abs(robust_accuracy("foolbox", {"attack": "L2PGD", "epsilon": 1.5, "kwargs": {
        "steps": 20, "abs_stepsize": 0.2, "random_start": False}}) - native) <= 0.5 and native < 50
    native = robust_accuracy("bim", {"eps": 0.1, "steps": 10, "step_size": 0.025})
    assert abs(robust_accuracy("foolbox", {"attack": "LinfBasicIterativeAttack", "epsilon": 0.1, "kwargs": {
        "steps": 10, "abs_stepsize": 0.025}}) - native) <= 0.5


def test_budgets_version_and_provenance():
    import foolbox

    attack, p = _plugin_params({"attack": "L1PGD", "epsilon": 10.0})
    assert attack.budget(p) is None  # L1: not a norm the engine checks
    attack, p = _plugin_params({"attack": "L0FMNAttack"})
    assert attack.budget(p) is None
    assert foolbox.__version__ in attack.version
    attack, p = _plugin_params(PGD)
    assert attack.provenance(p) == {"library": "foolbox", "version": foolbox.__version__, "attack": "LinfPGD",
                                    "kwargs": PGD["kwargs"]}
    assert p.model_dump(mode="json") == {**PGD, "criterion": "misclassification"}


def test_seeded_by_the_generator_and_global_rng_untouched(ref):
    model, x, y = ref
    attack, p = _plugin_params({"attack": "L2AdditiveGaussianNoiseAttack", "epsilon": 2.0})
    state = torch.get_rng_state()
    a = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(1)).x_adv
    b = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(1)).x_adv
    c = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(2)).x_adv
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_weights_stay_frozen_even_if_handed_unfrozen(ref):
    _, x, y = ref
    model = get_plugin("model", "mlp").build(get_plugin("model", "mlp").Params(widths=[16])).eval()
    attack, p = _plugin_params({"attack": "LinfPGD", "epsilon": 0.1, "kwargs": {"steps": 3}})
    out = attack.run(model, x[:16], y[:16], p, generator=torch.Generator().manual_seed(0))
    check_attack_output("foolbox", out, x[:16], attack.budget(p), model, y[:16], 0)
    assert all(q.grad is None and q.requires_grad for q in model.parameters())  # no grads, flags restored


@pytest.mark.parametrize(("params", "fragments"), [
    ({"attack": "LinfPDG", "epsilon": 0.1}, ["attack", "LinfPDG", "did you mean 'LinfPGD'"]),
    ({"attack": "Misclassification", "epsilon": 0.1}, ["attack", "no attack class"]),
    ({"attack": "SpatialAttack"}, ["attack", "not a fixed-epsilon or minimization attack"]),
    ({"attack": "LinfPGD", "epsilon": 0.1, "kwargs": {"stepz": 5}}, ["kwargs", "stepz"]),
    ({"attack": "LinfPGD"}, ["epsilon is required", "fixed-epsilon"]),
    ({"attack": "LinfPGD", "epsilon": -0.1}, ["epsilon", "greater than or equal to 0"]),
    ({"attack": "LinfPGD", "epsilon": 0.1, "criterion": "targeted"}, ["criterion"]),
    ({"attack": "LinfPGD", "epsilon": 0.1, "eps": 0.1}, ["eps", "Extra inputs"]),
    ({"attack": "BinarizationRefinementAttack"}, ["kwargs.distance"]),
    ({"attack": "PointwiseAttack"}, ["PointwiseAttack is not supported", "has no distance"]),  # was AttributeError
])
def test_validation_errors(params, fragments):
    with pytest.raises(ValidationError) as err:
        get_plugin("attack", "foolbox").Params.model_validate(params, strict=True)
    for fragment in fragments:
        assert fragment in str(err.value)


CW = {"attack": "L2CarliniWagnerAttack", "kwargs": {"steps": 10, "binary_search_steps": 1, "initial_const": 0.01}}


@pytest.mark.parametrize("epsilon", [None, 2.0])
def test_zero_start_failures_come_back_as_the_input(ref, epsilon):
    """foolbox's CW keeps its best adversarial from all-zero images: with few steps most samples fail and came back
    black, counted as successes at distance ||x||. The adapter returns the input for them (a failure), with or
    without an epsilon (clipped, they were a step towards black), and keeps the samples CW did solve."""
    import foolbox as fb

    model, x, y = ref
    x, y = x[:50], y[:50]
    attack, p = _plugin_params({**CW, "epsilon": epsilon})
    raw, _, _ = foolbox_attack(p.attack, p.kwargs)(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=None)
    black = (raw.flatten(1) == 0).all(dim=1)
    assert 5 <= int(black.sum()) < len(x)  # failures occur, and so do adversarials
    out = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(0))
    success = check_attack_output("foolbox", out, x, attack.budget(p), model, y, 0)
    assert torch.equal(out.x_adv[black], x[black])
    with torch.no_grad():
        assert torch.equal(success[black], model(x[black]).argmax(1) != y[black])  # a failure: the clean outcome
    if epsilon is None:
        assert torch.equal(out.x_adv[~black], raw[~black]) and bool(success[~black].any())


def test_only_zero_start_attacks_are_re_keyed():
    """CW and EAD carry a key revision (their sets stored with black failures are not served, the seeds kept);
    every other attack's version, hence its key and stored set, is as it was."""
    from rbench.manager import call_version

    for name in ("L2CarliniWagnerAttack", "EADAttack"):
        attack, p = _plugin_params({"attack": name})
        assert call_version(attack, "1", p) == "1~rev.failures-as-input.2"
    for params in (PGD, {"attack": "L2DeepFoolAttack"}, {"attack": "SaltAndPepperNoiseAttack", "epsilon": 5.0}):
        attack, p = _plugin_params(params)
        assert call_version(attack, "1", p) == "1"


def test_string_distance_kwarg():
    attack, p = _plugin_params({"attack": "BinarizationRefinementAttack", "kwargs": {"distance": "l2"}})
    assert attack.budget(p) is None and p.kwargs == {"distance": "l2"}


SUITE = """
[suite]
name = "fb"

[datasets.mnist]
plugin = "mnist"

[models.mlp]
plugin = "mlp"
dataset = "mnist"

[attacks.fb]
plugin = "foolbox"
params = { attack = "L2DeepFoolAttack", epsilon = 1.5, kwargs = { steps = 50, candidates = 10 } }

[attacks.grid]
plugin = "foolbox"
params = { attack = "LinfPGD", kwargs = { steps = 5 } }
grid = { epsilon = [0.1, 0.3] }

[evaluations.ev]
dataset = "mnist"
n = 10
sources = ["mlp"]
attacks = ["fb", "grid"]

[tables.t]
evaluation = "ev"
rows = "attack"
columns = "model"
metric = "error"
"""


def test_a_second_process_takes_foolbox_s_answers_from_the_store_without_importing_it(write_suite, tmp_path):
    """foolbox's answers (its attacks, whether kwargs build one, its distance) are kept in the store's library
    cache (rbench.library_answers): a second process plans the same suite, or refuses the same kwargs in the same
    line, without importing foolbox."""
    good = write_suite(SUITE)
    bad = write_suite(SUITE.replace("candidates = 10", "candidatez = 10"), "bad.toml")
    out, _ = rbench_imports("run", str(good), "--dry-run", "--store", str(tmp_path / "store"))
    assert out.returncode == 0 and not (tmp_path / "store").exists()  # a dry run of a new store writes nothing
    (tmp_path / "store" / "library-cache").mkdir(parents=True)  # as a store an earlier run made has
    runs = {}
    for name, path in (("good", good), ("bad", bad)):
        runs[name] = [rbench_imports("run", str(path), "--dry-run", "--store", str(tmp_path / "store"))
                      for _ in range(2)]
    for name, code in (("good", 0), ("bad", 2)):
        (first, first_imports), (second, second_imports) = runs[name]
        assert first.returncode == code and "foolbox" in first_imports, first.stderr
        assert (second.returncode, second.stdout, second.stderr) == (first.returncode, first.stdout, first.stderr)
        assert "foolbox" not in second_imports
    assert "candidatez" in runs["bad"][0][0].stderr and "did you mean 'candidates'" in runs["bad"][0][0].stderr


def test_a_budget_of_params_that_skipped_validation_still_refuses_them():
    attack = get_plugin("attack", "foolbox")
    params = attack.Params.model_construct(attack="LinfPGD", epsilon=0.1, kwargs={"tensorboard": "/tmp/x"})
    with pytest.raises(ValueError, match="not an allowed keyword"):
        attack.budget(params)


def test_a_refusal_for_a_missing_package_is_not_kept(tmp_path, monkeypatch):
    """foolbox failing to build an attack because a package is missing is answered again in the next process,
    and so is the kwargs refusal made of it."""
    import json

    from rbench.plugins.attacks import foolbox_adapter

    (tmp_path / "cache").mkdir()
    monkeypatch.setenv("RBENCH_LIBRARY_CACHE", str(tmp_path / "cache"))

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'somepackage'")

    def kept() -> list[str]:
        return sorted(json.loads(p.read_text())["question"] for p in (tmp_path / "cache" / "answers").glob("*.json"))

    monkeypatch.setattr(foolbox_adapter, "foolbox_attack", missing)
    spec = {"attack": "LinfPGD", "epsilon": 0.1, "kwargs": {"steps": 7}}
    with pytest.raises(ValidationError, match="somepackage"):
        foolbox_adapter.FoolboxParams.model_validate(spec)
    assert "kwargs" not in kept() and "built" not in kept()
    monkeypatch.undo()
    monkeypatch.setenv("RBENCH_LIBRARY_CACHE", str(tmp_path / "cache"))
    assert foolbox_adapter.FoolboxParams.model_validate(spec).kwargs == {"steps": 7}
    assert {"kwargs", "built"} <= set(kept())


def test_suite_validation(write_suite):
    suite = load_suite(write_suite(SUITE))
    attacks = suite.evaluations["ev"].attacks
    assert attacks["fb"].call.params.kwargs == {"steps": 50, "candidates": 10}
    assert [a.call.params.epsilon for label, a in attacks.items() if label.startswith("grid")] == [0.1, 0.3]
    for old, new, fragment in [
        ('attack = "L2DeepFoolAttack"', 'attack = "L2DeepFool"', "did you mean 'L2DeepFoolAttack'"),
        ("steps = 50,", "stepz = 50,", "stepz"),
        ("epsilon = 1.5, ", "", None),  # fine: a minimization attack needs no epsilon
        ('attack = "L2DeepFoolAttack", epsilon = 1.5, kwargs = { steps = 50, candidates = 10 }', 'attack = "FGSM"',
         "epsilon is required"),
    ]:
        path = write_suite(SUITE.replace(old, new), "bad.toml")
        if fragment is None:
            load_suite(path)
            continue
        with pytest.raises(SuiteError) as err:
            load_suite(path)
        assert "attacks.fb.params" in str(err.value) and fragment in str(err.value), str(err.value)


# -- the allow-list: a suite is data, so kwargs are plain hyperparameters that never write files or run code ------
def _refused(params, *fragments):
    with pytest.raises(ValidationError) as err:
        get_plugin("attack", "foolbox").Params.model_validate(params, strict=True)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


@pytest.mark.parametrize(("attack", "key", "value"), [
    ("BoundaryAttack", "init_attack", "LinfPGD"),  # takes an attack object
    ("L2FMNAttack", "init_attack", "L2DeepFoolAttack"),
    ("BoundaryAttack", "tensorboard", "{tmp}/tb"),  # a folder TensorBoard logs are written to
    ("HopSkipJumpAttack", "tensorboard", False),
    ("L2BrendelBethgeAttack", "tensorboard", True),
    ("L2DeepFoolAttack", "starting_points", [0.5]),  # an argument of the call, not of the constructor
    ("L2DeepFoolAttack", "criterion", "misclassification"),
])
def test_keywords_outside_the_allow_list_are_refused(tmp_path, monkeypatch, attack, key, value):
    monkeypatch.chdir(tmp_path)
    if isinstance(value, str):
        value = value.format(tmp=tmp_path)
    _refused({"attack": attack, "kwargs": {key: value}}, repr(key), "not an allowed keyword", "plain hyperparameters",
             "write files or run code", f"allowed for foolbox.attacks.{attack}: ", "steps")
    with pytest.raises(ValueError, match=f"{key!r} is not an allowed keyword"):  # even unvalidated params
        foolbox_attack(attack, {key: value})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("params", "fragments"), [
    ({"attack": "L2DeepFoolAttack", "kwargs": {"steps": 5.0}}, ["kwargs.steps must be an integer"]),
    ({"attack": "L2DeepFoolAttack", "kwargs": {"steps": True}}, ["kwargs.steps must be an integer"]),
    ({"attack": "L2DeepFoolAttack", "kwargs": {"loss": "mse"}}, ["kwargs.loss must be one of logits, crossentropy"]),
    ({"attack": "L2DeepFoolAttack", "kwargs": {"overshoot": "0.02"}}, ["kwargs.overshoot must be a number"]),
    ({"attack": "LinfPGD", "epsilon": 0.1, "kwargs": {"random_start": 0}}, ["random_start must be true or false"]),
    ({"attack": "BinarizationRefinementAttack", "kwargs": {"distance": 2}}, ["kwargs.distance must be one of"]),
    ({"attack": "GenAttack", "epsilon": 0.1, "kwargs": {"reduced_dims": ["14", "14"]}}, ["a list of numbers"]),
    ({"attack": "FGSM", "epsilon": 0.1, "kwargs": {"steps": 3}}, ["'steps'", "allowed for foolbox.attacks.FGSM: "
                                                                  "random_start"]),
    ({"attack": "L2AdditiveGaussianNoiseAttack", "epsilon": 0.1, "kwargs": {"steps": 3}}, ["'steps'", ": none"]),
])
def test_allowed_keywords_take_plain_values_only(params, fragments):
    _refused(params, *fragments)


def test_allowed_keywords_still_work():
    for params in [PGD, *(_values(c)[0] for c in CASES),
                   {"attack": "L2DeepFoolAttack", "kwargs": {"steps": 5, "candidates": 3, "overshoot": 0.05,
                                                             "loss": "crossentropy"}},
                   {"attack": "EADAttack", "kwargs": {"binary_search_steps": 3, "decision_rule": "L1",
                                                      "abort_early": False, "confidence": 0}},
                   {"attack": "HopSkipJumpAttack", "kwargs": {"steps": 3, "constraint": "linf",
                                                              "stepsize_search": "grid_search"}},
                   {"attack": "BoundaryAttack", "kwargs": {"steps": 10, "spherical_step": 0.02}},
                   {"attack": "BinarizationRefinementAttack", "kwargs": {"distance": "linf", "threshold": 0.5}}]:
        _, p = _plugin_params(params)
        assert p.kwargs == params.get("kwargs", {})


def test_no_allowed_keyword_writes_or_takes_an_object():
    import inspect

    import foolbox

    assert not {"init_attack", "tensorboard"} & set(ALLOWED_KWARGS)
    for part in ("writer", "path", "file", "callback", "func", "tensorboard", "model", "criterion", "attack"):
        assert not [k for k in ALLOWED_KWARGS if part in k], part
    for name in attack_names():
        signature = inspect.signature(getattr(foolbox.attacks, name).__init__).parameters
        assert set(allowed_kwargs(name)) <= set(signature)
