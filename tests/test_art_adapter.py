"""The ART adapter (plugin ``art``): contract and conformance of ART attacks on a small MLP trained on real MNIST,
parity with the native attacks, and validation of its params in suites."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

pytest.importorskip("art", reason="the 'art' attack plugin needs adversarial-robustness-toolbox")

from art.attacks.evasion import ProjectedGradientDescent  # noqa: E402
from support import rbench, rbench_imports  # noqa: E402

from rbench.attack import Budget  # noqa: E402
from rbench.contract import check_attack_output  # noqa: E402
from rbench.errors import SuiteError  # noqa: E402
from rbench.plugins import get_plugin  # noqa: E402
from rbench.plugins.attacks.art_adapter import (  # noqa: E402
    ALLOWED_KWARGS,
    GRADIENT_FREE,
    ArtParams,
    _dummy_classifier,
    allowed_kwargs,
    attack_names,
    build,
)
from rbench.suite import load_suite  # noqa: E402
from rbench.testing import check_attack, reference_data, reference_model  # noqa: E402

PGD = {"attack": "ProjectedGradientDescent",
       "kwargs": {"eps": 0.1, "eps_step": 0.01, "max_iter": 20, "num_random_init": 0, "norm": "inf"}}
FGM = {"attack": "FastGradientMethod", "kwargs": {"eps": 0.1}}
DEEPFOOL = {"attack": "DeepFool", "kwargs": {"max_iter": 10, "epsilon": 0.02}}
CW = {"attack": "CarliniL2Method",
      "kwargs": {"max_iter": 10, "binary_search_steps": 3, "learning_rate": 0.1, "initial_const": 1.0}}
# AutoAttack's default list (APGD-CE/DLR with 5 restarts of 100 steps, DeepFool, Square with 5 x 5000 queries)
# took 366 s on 128 images on 2 CPU cores; a short list of the same attacks exercises the same code.
AUTOATTACK = {"attack": "AutoAttack", "kwargs": {"eps": 0.1, "eps_step": 0.01, "norm": "inf", "attacks": [
    {"attack": "AutoProjectedGradientDescent", "kwargs": {
        "eps": 0.1, "eps_step": 0.01, "norm": "inf", "max_iter": 20, "nb_random_init": 1,
        "loss_type": "cross_entropy"}},
    {"attack": "AutoProjectedGradientDescent", "kwargs": {
        "eps": 0.1, "eps_step": 0.01, "norm": "inf", "max_iter": 20, "nb_random_init": 1,
        "loss_type": "difference_logits_ratio"}},
    {"attack": "SquareAttack", "kwargs": {"eps": 0.1, "norm": "inf", "max_iter": 100, "nb_restarts": 1}},
]}}
PGD_L2 = {"attack": "ProjectedGradientDescent",
          "kwargs": {"eps": 1.5, "eps_step": 0.2, "max_iter": 10, "num_random_init": 1, "norm": 2}}

CASES = {"pgd": (PGD, ("linf", 0.1)), "fgm": (FGM, ("linf", 0.1)), "deepfool": (DEEPFOOL, None),
         "cw_l2": (CW, None), "autoattack": (AUTOATTACK, ("linf", 0.1)), "pgd_l2_random": (PGD_L2, ("l2", 1.5))}


@pytest.fixture(scope="module")
def setup():
    model, (x, y) = reference_model(), reference_data()
    return get_plugin("attack", "art"), model, x, y


def _params(attack, spec):
    return attack.Params.model_validate(spec, strict=True)


#: the slowest ART attacks (30 s to two and a half minutes each on a 2-core CPU) run in `make check-full`; Linf PGD
#: stays covered in `make test` by the parity test and pgd_l2_random by this one, AutoAttack's table checks by
#: test_autoattack_attacks_must_be_tables
HEAVY = ("deepfool", "cw_l2", "pgd", "autoattack")


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.full) if c in HEAVY else c for c in CASES])
def test_art_attacks_respect_the_contract_and_conform(setup, case):
    attack, model, x, y = setup
    spec, budget = CASES[case]
    params = _params(attack, spec)
    b = attack.budget(params)
    assert (b.norm, b.eps) == budget if budget else b is None
    started = time.perf_counter()
    out = attack.run(model, x, y, params, generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - started
    success = check_attack_output("art", out, x, b, model, y, 0)  # raises on any violation
    clean_error = float((model(x).argmax(1) != y).float().mean())
    assert success.float().mean() > clean_error + 0.3, f"{case}: too weak ({seconds:.2f} s)"
    assert all(p.grad is None for p in model.parameters())
    check_attack("art", spec)  # determinism, batch sizes, no weight gradients (and CUDA when visible)


def test_random_attacks_are_seeded_by_the_generator_and_leave_global_rngs_alone(setup):
    import random

    import numpy as np

    attack, model, x, y = setup
    params = _params(attack, PGD_L2)  # one random start: ART draws it from numpy's global RNG
    states = (np.random.get_state()[1].copy(), random.getstate(), torch.random.get_rng_state())
    runs = [attack.run(model, x[:32], y[:32], params, generator=torch.Generator().manual_seed(s)).x_adv
            for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert np.array_equal(np.random.get_state()[1], states[0]) and random.getstate() == states[1]
    assert torch.equal(torch.random.get_rng_state(), states[2])


def _robust_accuracy(name, params, model, x, y):
    attack = get_plugin("attack", name)
    p = attack.Params.model_validate(params, strict=True)
    out = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(0))
    return 1 - float(out.success_on(model, y).float().mean())


@pytest.mark.parametrize(("native", "art"), [
    (("pgd", {"eps": 0.1, "steps": 20, "step_size": 0.01, "random_start": False}), PGD),
    (("fgsm", {"eps": 0.1}), FGM),
], ids=["pgd", "fgsm"])
def test_parity_with_native_attacks(setup, native, art):
    _, model, x, y = setup
    ours = _robust_accuracy(*native, model, x, y)
    theirs = _robust_accuracy("art", art, model, x, y)
    assert abs(ours - theirs) <= 0.005, f"robust accuracy: native {ours:.4f}, ART {theirs:.4f}"


def test_provenance_and_version_name_the_library(setup):
    import art

    attack = setup[0]
    prov = attack.provenance(_params(attack, PGD))
    assert prov == {"library": "adversarial-robustness-toolbox", "version": art.__version__,
                    "attack": "ProjectedGradientDescent", "kwargs": PGD["kwargs"]}
    assert art.__version__ in attack.version


@pytest.mark.parametrize(("spec", "fragments"), [
    ({"attack": "ProjectedGradientDecent"}, ["ProjectedGradientDecent", "did you mean 'ProjectedGradientDescent'"]),
    ({"attack": "deepfool"}, ["did you mean 'DeepFool'"]),
    ({"attack": "ProjectedGradientDescent", "kwargs": {"eps": 0.1, "step": 3}},
     ["'step'", "eps_step", "max_iter"]),
    ({"attack": "ProjectedGradientDescent", "kwargs": {"eps": -0.1}}, ["ProjectedGradientDescent", "eps"]),
    ({"attack": "FastGradientMethod", "kwargs": {"eps": 0.1, "norm": "l3"}}, ["norm"]),
    ({"attack": "FastGradientMethod", "kwargs": {"eps": 0.1, "norm": 1}}, ["Linf or L2"]),
    ({"attack": "FastGradientMethod", "kwargs": {"eps": 0.1, "targeted": True}}, ["targeted"]),
    ({"attack": "FastGradientMethod", "kwargs": {"batch_size": 8}}, ["batch_size"]),
    ({"attack": "AutoAttack", "kwargs": {"attacks": [{"attack": "Squar"}]}}, ["kwargs.attacks", "SquareAttack"]),
    ({"attack": "ProjectedGradientDescent", "wat": 1}, ["wat"]),
    ({"attack": "SignOPTAttack", "kwargs": {"targeted": True}}, ["targeted"]),
    # targeted whatever the suite says: they aim at the true labels the adapter gives them
    ({"attack": "LowProFool"}, ["LowProFool", "cannot be made untargeted"]),
    ({"attack": "TargetedUniversalPerturbation"}, ["TargetedUniversalPerturbation", "cannot be made untargeted"]),
    ({"attack": "SaliencyMapMethod"}, ["SaliencyMapMethod", "cannot be made untargeted"]),
    ({"attack": "AdversarialPatchNumpy"}, ["targeted by default", "untargeted attacks only"]),
    # Wasserstein: its ball is the budget, and eps must not grow (eps_factor > 1 every eps_iter iterations)
    ({"attack": "Wasserstein", "kwargs": {"norm": "2"}}, ["ball 'wasserstein'", "Linf or L2"]),
    ({"attack": "Wasserstein", "kwargs": {"norm": "2", "ball": "2", "max_iter": 20}}, ["eps_iter >= max_iter"]),
])
def test_invalid_params_are_validation_errors(setup, spec, fragments):
    attack = setup[0]
    with pytest.raises(ValidationError) as info:
        _params(attack, spec)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_norm_spellings_are_normalised(setup):
    attack = setup[0]
    for norm in ("inf", float("inf")):
        p = _params(attack, {"attack": "FastGradientMethod", "kwargs": {"eps": 0.1, "norm": norm}})
        assert p.kwargs["norm"] == "inf" and attack.budget(p).norm == "linf"
    p = _params(attack, {"attack": "FastGradientMethod", "kwargs": {"eps": 0.5, "norm": 2}})
    assert attack.budget(p).norm == "l2" and attack.budget(p).eps == 0.5
    assert attack.budget(_params(attack, {"attack": "FastGradientMethod"})).norm == "linf"  # ART's defaults


def test_attacks_targeted_by_default_are_built_untargeted_and_keyed_so():
    """BoundaryAttack and SignOPTAttack default to targeted=True: built so, they aimed at the true labels and
    returned their inputs. The adapter writes targeted = false into their validated kwargs (their job key: a set
    stored while they ran targeted is never served) and into nothing else's (other attacks keep their keys)."""
    for name in ("BoundaryAttack", "SignOPTAttack"):
        params = ArtParams.model_validate({"attack": name, "kwargs": {"max_iter": 5}}, strict=True)
        assert params.kwargs == {"max_iter": 5, "targeted": False}
        assert build(name, params.kwargs, 8, _dummy_classifier()).targeted is False
        assert ArtParams.model_validate(params.model_dump(mode="json"), strict=True) == params  # as a job reads it
    for spec in (PGD, FGM, DEEPFOOL, {"attack": "HopSkipJump"}, {"attack": "SquareAttack"}):
        assert "targeted" not in ArtParams.model_validate(spec, strict=True).kwargs


def test_a_decision_based_attack_runs_untargeted_end_to_end():
    """BoundaryAttack through the adapter as a job runs it (the kit: its gradient-free declaration enforced): ART
    feeds it float64, which the adapter casts to the model's float32, and it runs untargeted, so it succeeds well
    beyond the clean error (built targeted, it returned the clean images: success = clean error, L2 0). The kit
    also runs it twice from one seed: its starting points came from an unseeded ``np.random.RandomState()``."""
    model, (x, y) = reference_model(), reference_data(20)
    spec = {"attack": "BoundaryAttack", "kwargs": {"max_iter": 10}}
    assert not get_plugin("attack", "art").uses_gradients(ArtParams.model_validate(spec, strict=True))
    report = check_attack("art", spec, model=model, x=x, y=y, batch_sizes=(20,))
    clean_error = float((model(x).argmax(1) != y).float().mean())
    assert report.success_rate > clean_error + 0.5 and report.mean_l2 > 0


def test_wasserstein_declares_its_ball_as_the_budget():
    """ART's Wasserstein projects onto ``ball``; ``norm`` is its step's norm (the budget was read from it)."""
    attack = get_plugin("attack", "art")
    for norm, ball, expected in (("2", "inf", "linf"), ("inf", "2", "l2"), ("wasserstein", "2", "l2")):
        params = ArtParams.model_validate({"attack": "Wasserstein", "kwargs": {
            "norm": norm, "ball": ball, "eps": 0.1, "eps_step": 0.05, "max_iter": 5}}, strict=True)
        assert attack.budget(params) == Budget(expected, 0.1)
    ok = {"norm": "2", "ball": "2", "eps": 0.1, "max_iter": 20, "eps_iter": 20}  # eps never grows
    assert ArtParams.model_validate({"attack": "Wasserstein", "kwargs": ok}, strict=True).kwargs == ok
    from rbench.manager import call_version  # its sets projected onto its step's ball are not served again

    assert call_version(attack, "1", params) == "1~rev.ball-budget.2"
    assert call_version(attack, "1", ArtParams.model_validate({"attack": "SquareAttack"})) == "1"


def test_only_listed_attacks_are_gradient_free_and_gradient_attacks_run_as_declared():
    """ART's estimator requirements do not say whether an attack differentiates the model (UniversalPerturbation
    names none, yet its FGSM does): attacks take gradients unless listed in GRADIENT_FREE, each a class of ART.
    UniversalPerturbation then runs as a job runs it (declared gradient-free, it failed the declaration's check)."""
    attack = get_plugin("attack", "art")
    assert GRADIENT_FREE <= set(attack_names())
    assert not attack.uses_gradients(ArtParams.model_validate({"attack": "SquareAttack"}, strict=True))
    spec = {"attack": "UniversalPerturbation", "kwargs": {"attacker": "fgsm", "eps": 0.3, "max_iter": 1}}
    assert attack.uses_gradients(ArtParams.model_validate(spec, strict=True))
    model, (x, y) = reference_model(), reference_data(20)
    report = check_attack("art", spec, model=model, x=x, y=y, batch_sizes=(20,))
    assert report.success_rate > float((model(x).argmax(1) != y).float().mean())


SUITE = """
[suite]
name = "s"

[datasets.mnist]
plugin = "mnist"

[models.mlp]
plugin = "mlp"
dataset = "mnist"

[attacks.art_pgd]
plugin = "art"
params = {{ attack = "ProjectedGradientDescent", kwargs = {{ {kwargs} }} }}

[evaluations.ev]
dataset = "mnist"
n = 10
sources = ["mlp"]
attacks = ["art_pgd"]

[tables.t]
evaluation = "ev"
rows = "attack"
columns = "model"
metric = "error"
"""


def test_suites_validate_art_params(write_suite):
    suite = load_suite(write_suite(SUITE.format(kwargs='eps = 0.1, eps_step = 0.01, max_iter = 20, norm = "inf"')))
    call = suite.evaluations["ev"].attacks["art_pgd"].call
    assert call.params.kwargs["max_iter"] == 20 and "art" in call.version
    for kwargs, fragment in [("eps = -0.1", "eps"), ("eps = 0.1, steps = 3", "'steps'")]:
        with pytest.raises(SuiteError, match="attacks.art_pgd.params") as info:
            load_suite(write_suite(SUITE.format(kwargs=kwargs), "bad.toml"))
        assert fragment in str(info.value)


# -- the allow-list: a suite is data, so kwargs are plain hyperparameters that never write files or run code ------
def _refused(spec, *fragments):
    with pytest.raises(ValidationError) as info:
        ArtParams.model_validate(spec, strict=True)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


class _FakeTensorboardX:
    """Stands in for tensorboardX (not installed here): its SummaryWriter creates its log folder at once, as the
    real one does, so a summary_writer that reached ART would leave a folder behind."""

    class SummaryWriter:
        def __init__(self, logdir=None, comment="", **_):
            Path(logdir or f"runs/run{comment}").mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("value", ["{tmp}/tb", True, False], ids=["path", "true", "false"])
def test_summary_writer_is_refused_and_writes_nothing(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)  # ART's summary_writer = true writes to ./runs/
    monkeypatch.setitem(sys.modules, "tensorboardX", _FakeTensorboardX)
    if isinstance(value, str):
        value = value.format(tmp=tmp_path)
    assert "summary_writer" in ProjectedGradientDescent.attack_params  # ART itself would take it
    spec = {"attack": "ProjectedGradientDescent", "kwargs": {"eps": 0.1, "summary_writer": value}}
    message = _refused(spec, "'summary_writer'", "not an allowed keyword", "plain hyperparameters",
                       "write files or run code", "allowed for ART's ProjectedGradientDescent", "eps_step", "max_iter")
    assert "summary_writer," not in message.split("allowed for")[1]
    nested = {"attack": "AutoAttack", "kwargs": {"eps": 0.1, "attacks": [spec]}}
    _refused(nested, "kwargs.attacks", "'summary_writer'", "not an allowed keyword")
    with pytest.raises(ValueError, match="'summary_writer' is not an allowed keyword"):  # even unvalidated params
        build("ProjectedGradientDescent", spec["kwargs"], 8, _dummy_classifier())
    assert list(tmp_path.iterdir()) == []  # no TensorBoard folder, at the path or in ./runs


@pytest.mark.parametrize(("attack", "key", "value"), [
    ("ProjectedGradientDescent", "verbose", True),  # the adapter sets it
    ("SquareAttack", "loss", "cross_entropy"),  # a callable in ART
    ("AutoAttack", "estimator_orig", "mlp"),  # an estimator object
    ("AutoAttack", "parallel", 2),  # a process pool (and not a constructor argument)
    ("UniversalPerturbation", "attacker_params", {"summary_writer": True}),  # kwargs that would skip the list
    ("ImperceptibleASRPyTorch", "use_amp", True),
])
def test_keywords_outside_the_allow_list_are_refused(key, attack, value):
    _refused({"attack": attack, "kwargs": {key: value}}, repr(key), "not an allowed keyword", f"ART's {attack}")


@pytest.mark.parametrize(("kwargs", "fragments"), [
    ({"eps": "0.1"}, ["kwargs.eps must be a number", "'0.1'"]),
    ({"eps": True}, ["kwargs.eps must be a number"]),
    ({"eps": 0.1, "max_iter": 20.0}, ["kwargs.max_iter must be an integer"]),
    ({"eps": 0.1, "random_eps": 1}, ["kwargs.random_eps must be true or false"]),
    ({"eps": 0.1, "norm": [2]}, ["kwargs.norm must be a number or a string"]),
    ({"eps": 0.1, "eps_step": {"value": 0.01}}, ["kwargs.eps_step must be a number"]),
])
def test_allowed_keywords_take_plain_values_only(kwargs, fragments):
    _refused({"attack": "ProjectedGradientDescent", "kwargs": kwargs}, *fragments)


def test_autoattack_attacks_must_be_tables():
    _refused({"attack": "AutoAttack", "kwargs": {"attacks": "apgd"}}, "kwargs.attacks must be a list of")


def test_allowed_keywords_still_work():
    for spec in (PGD, FGM, DEEPFOOL, CW, AUTOATTACK, PGD_L2,
                 {"attack": "ProjectedGradientDescent", "kwargs": {"eps": 0.1, "decay": 0.5, "random_eps": True}},
                 {"attack": "CarliniL2Method", "kwargs": {"max_halving": 3, "max_doubling": 3, "confidence": 0}},
                 {"attack": "SquareAttack", "kwargs": {"eps": 0.1, "p_init": 0.5, "nb_restarts": 2}},
                 {"attack": "UniversalPerturbation", "kwargs": {"attacker": "fgsm", "delta": 0.3}}):
        assert ArtParams.model_validate(spec, strict=True).kwargs.keys() == spec["kwargs"].keys()


def test_no_allowed_keyword_writes_prints_or_takes_an_object():
    import inspect

    import art.attacks.evasion as evasion

    for segment in ("dir", "fn", "model", "estimator", "classifier", "verbose", "generator", "optimizer"):
        assert not [k for k in ALLOWED_KWARGS if segment in k.split("_")], segment
    for part in ("writer", "path", "file", "callback", "func", "tensorboard", "kwargs", "params", "criterion"):
        assert not [k for k in ALLOWED_KWARGS if part in k], part
    for name in attack_names():
        allowed = allowed_kwargs(name)
        assert "summary_writer" not in allowed and "verbose" not in allowed and "batch_size" not in allowed
        assert set(allowed) <= set(inspect.signature(getattr(evasion, name).__init__).parameters)


def test_a_second_process_takes_art_s_answers_from_the_store_without_importing_it(write_suite, tmp_path):
    """ART's answers (its attacks, whether kwargs are valid and in which form, budgets, gradient needs) are kept in
    the store's library cache (rbench.library_answers): a second process plans the same suite, or refuses the same
    bad kwargs in the same line, without importing ART (1.5-3 s); an answer whose checksum fails is asked again."""
    good = write_suite(SUITE.format(kwargs='eps = 0.1, eps_step = 0.01, max_iter = 20, norm = "inf"'), "good.toml")
    bad = write_suite(SUITE.format(kwargs="eps = 0.1, steps = 3"), "bad.toml")
    store = tmp_path / "store"
    (store / "library-cache").mkdir(parents=True)  # as a store an earlier run made has

    def dry_run(path: Path) -> tuple[int, str, str, bool]:
        out, imported = rbench_imports("run", str(path), "--dry-run", "--store", str(store))
        return out.returncode, out.stdout, out.stderr, "art" in imported

    first, second = dry_run(good), dry_run(good)
    assert first[0] == 0 and first[3], first[2]
    assert second[:3] == first[:3] and not second[3]
    refused, again = dry_run(bad), dry_run(bad)
    assert refused[0] == 2 and "'steps' is not an allowed keyword" in refused[2] and refused[3]
    assert again[:3] == refused[:3] and not again[3]
    answers = list((store / "library-cache" / "answers").glob("*.json"))
    assert len(answers) >= 4
    for path in answers:  # each answer changed without its checksum: not taken, asked again
        record = json.loads(path.read_text())
        record["answer"] = {"kwargs": {}} if isinstance(record["answer"], dict) else None
        path.write_text(json.dumps(record))
    third = dry_run(good)
    assert third[:3] == first[:3] and third[3]


def test_a_refusal_for_a_missing_package_is_not_kept(tmp_path, monkeypatch):
    """ART refusing an attack because a package it imports is missing (torchvision, kornia...) is answered again
    in the next process: installing the package changes the answer."""
    from rbench.plugins.attacks import art_adapter

    (tmp_path / "cache").mkdir()
    monkeypatch.setenv("RBENCH_LIBRARY_CACHE", str(tmp_path / "cache"))

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'torchvision'")

    monkeypatch.setattr(art_adapter, "build", missing)
    spec = {"attack": "FastGradientMethod", "kwargs": {"eps": 0.123}}
    with pytest.raises(ValidationError, match="torchvision"):
        ArtParams.model_validate(spec)

    def kept() -> list[str]:
        return [json.loads(p.read_text())["question"] for p in (tmp_path / "cache" / "answers").glob("*.json")]

    assert "kwargs" not in kept()
    monkeypatch.undo()
    monkeypatch.setenv("RBENCH_LIBRARY_CACHE", str(tmp_path / "cache"))
    assert ArtParams.model_validate(spec).kwargs == {"eps": 0.123}
    assert "kwargs" in kept()  # the same question, answered for real, is kept


SUMMARY_WRITER_SUITE = """
[suite]
name = "s"

[datasets.mnist]
plugin = "mnist"

[models.mlp]
plugin = "mlp"
dataset = "mnist"

[attacks.art_pgd]
plugin = "art"
params = {{ attack = "ProjectedGradientDescent", kwargs = {{ eps = 0.1, summary_writer = {value} }} }}

[evaluations.ev]
dataset = "mnist"
n = 10
sources = ["mlp"]
attacks = ["art_pgd"]
"""


def test_suite_with_summary_writer_is_refused(write_suite, tmp_path):
    for value in ("true", f'"{tmp_path / "tb"}"'):
        path = write_suite(SUMMARY_WRITER_SUITE.format(value=value), "sw.toml")
        with pytest.raises(SuiteError, match=r"attacks\.art_pgd\.params\.kwargs: .*'summary_writer'"):
            load_suite(path)
    assert not (tmp_path / "tb").exists()


def test_cli_validate_refuses_summary_writer_in_one_line(write_suite, tmp_path):
    target = tmp_path / "tb"
    path = write_suite(SUMMARY_WRITER_SUITE.format(value=f'"{target}"'), "sw.toml")
    out = rbench("validate", str(path), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr + out.stdout
    assert str(path) in out.stderr and "attacks.art_pgd.params.kwargs" in out.stderr
    assert "'summary_writer' is not an allowed keyword" in out.stderr
    assert not target.exists() and not (tmp_path / "runs").exists()
