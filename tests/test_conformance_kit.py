"""The conformance kit: built-in attacks pass it; broken attacks are caught with a clear message."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from pydantic import BaseModel

from rbench.attack import AttackOutput, FixedBudgetAttack, misclassified
from rbench.estimate import Estimate
from rbench.inputs import PluginContractError
from rbench.manager import PluginInfo, get_registry
from rbench.testing import check_attack, reference_data, reference_model


@pytest.mark.parametrize(("name", "params"), [("fgsm", {"eps": 0.1}), ("pgd", {"eps": 0.1, "steps": 5}),
                                               ("pgd", {"eps": 1.0, "norm": "l2", "steps": 5}),
                                               ("gaussian_noise", {"sigma": 0.2}),
                                               # 1.5-3 min on 2 cores: make check-full (test_lbfgs in make test)
                                               pytest.param("lbfgs", {"bisection_steps": 2}, marks=pytest.mark.full)])
def test_builtin_attacks_conform(name, params):
    report = check_attack(name, params, batch_sizes=(64, 16) if name == "lbfgs" else (128, 32, 7))
    assert 0 <= report.success_rate <= 1 and report.mean_l2 > 0


def test_fixtures_are_registered_through_pytest11(rbench_reference_model, rbench_reference_data):
    x, y = rbench_reference_data
    accuracy = (rbench_reference_model(x).argmax(1) == y).float().mean()
    assert accuracy > 0.8 and not any(p.requires_grad for p in rbench_reference_model.parameters())


class _P(BaseModel):
    eps: float = 0.1


class _Unseeded(FixedBudgetAttack):
    name, Params, norm = "unseeded", _P, "linf"

    def run(self, model, x, y, params, *, generator=None):
        x_adv = (x + params.eps * torch.randn(x.shape).sign()).clamp(0, 1)  # ignores the generator
        return AttackOutput(x_adv, misclassified(model, x_adv, y))


class _BatchDependent(FixedBudgetAttack):
    name, Params, norm = "batchy", _P, "linf"

    def run(self, model, x, y, params, *, generator=None):
        eps = params.eps if len(x) > 50 else params.eps / 4  # a bug that only shows at small batch sizes
        x_adv = (x + eps).clamp(0, 1)
        return AttackOutput(x_adv, misclassified(model, x_adv, y))


class _DrawsPerBatch(FixedBudgetAttack):
    """Random signs drawn per batch in a batch-dependent order (the batch's last pixel first): the same
    statistics at every batch size, other samples; a store would serve one batch size's set to another."""

    name, Params, norm = "draws_per_batch", _P, "linf"

    def __init__(self, declares: bool = True):
        self.declares = declares
        if not declares:
            self.name = "draws_per_batch_declared"

    def batch_invariant(self, params):
        return self.declares

    def run(self, model, x, y, params, *, generator=None):
        noise = torch.randint(0, 2, (x.numel(),), generator=generator, device=x.device).flip(0).view_as(x) * 2 - 1
        x_adv = (x + params.eps * noise).clamp(0, 1)
        return AttackOutput(x_adv, misclassified(model, x_adv, y))


class _LyingResolver(FixedBudgetAttack):
    """Says it steps by eps / 2 when ``step`` is unset; steps by eps."""

    name, norm = "lying_resolver", "linf"

    class Params(BaseModel):
        eps: float = 0.1
        step: float | None = None

    def resolved_params(self, params):
        return {} if params.step is not None else {"step": params.eps / 2}

    def run(self, model, x, y, params, *, generator=None):
        step = params.step if params.step is not None else params.eps
        x_adv = (x + min(step, params.eps)).clamp(0, 1)
        return AttackOutput(x_adv, misclassified(model, x_adv, y))


class _Liar(FixedBudgetAttack):
    name, Params, norm = "liar", _P, "linf"

    def run(self, model, x, y, params, *, generator=None):
        return AttackOutput(x.clone(), torch.ones(len(x), dtype=torch.bool))


class _Vandal(FixedBudgetAttack):
    """Zeroes the weights of the model it attacks, then claims success wherever the zeroed model errs."""

    name, Params, norm = "vandal", _P, "linf"

    def run(self, model, x, y, params, *, generator=None):
        for p in model.parameters():
            p.zero_()
        return AttackOutput(x.clone(), misclassified(model, x, y))


class _Noise(FixedBudgetAttack):
    name, Params, norm = "sign_noise", _P, "linf"

    def run(self, model, x, y, params, *, generator=None):
        noise = torch.randint(0, 2, x.shape, generator=generator, device=x.device) * 2 - 1
        x_adv = (x + params.eps * noise).clamp(0, 1)
        return AttackOutput(x_adv, misclassified(model, x_adv, y))


class _GradientDenier(FixedBudgetAttack):
    """FGSM that declares it takes no gradients: through a rounding defense without BPDA it would see zeros."""

    name, Params, norm = "gradient_denier", _P, "linf"

    def uses_gradients(self, params):
        return False

    def run(self, model, x, y, params, *, generator=None):
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), x)
        x_adv = (x + params.eps * grad.sign()).clamp(0, 1).detach()
        return AttackOutput(x_adv, misclassified(model, x_adv, y))


class _NoGradientNoise(_Noise):
    """Honestly gradient-free: it only queries the model."""

    name = "no_gradient_noise"

    def uses_gradients(self, params):
        return False


class _SecretlyTargeted(_Noise):
    """Returns targets (the next class) without declaring itself targeted: its flags would mean another thing."""

    name = "secretly_targeted"

    def run(self, model, x, y, params, *, generator=None):
        out = super().run(model, x, y, params, generator=generator)
        targets = (y + 1) % 10
        return AttackOutput(out.x_adv, model(out.x_adv).argmax(1) == targets, {"targets": targets})


class _OwnLabelTargeted(_Noise):
    """Declares itself targeted and "targets" each input's own label: every correct prediction a success."""

    name = "own_label_targeted"

    def targeted(self, params):
        return True

    def run(self, model, x, y, params, *, generator=None):
        out = super().run(model, x, y, params, generator=generator)
        return AttackOutput(out.x_adv, model(out.x_adv).argmax(1) == y, {"targets": y.clone()})


class _TargetlessTargeted(_Noise):
    name = "targetless_targeted"

    def targeted(self, params):
        return True


@pytest.fixture
def broken():
    registry = get_registry()
    objects = (_Unseeded(), _BatchDependent(), _Liar(), _Vandal(), _Noise(), _GradientDenier(), _NoGradientNoise(),
               _SecretlyTargeted(), _OwnLabelTargeted(), _TargetlessTargeted(), _DrawsPerBatch(),
               _DrawsPerBatch(declares=False), _LyingResolver())
    for obj in objects:
        registry.plugins["attack"][obj.name] = PluginInfo("attack", obj.name, "0", "tests", "tests", obj)
    yield
    for obj in objects:
        registry.plugins["attack"].pop(obj.name)


def test_broken_attacks_are_caught(broken):
    with pytest.raises(AssertionError, match="not deterministic"):
        check_attack("unseeded", {})
    with pytest.raises(AssertionError, match="batch size 32"):
        check_attack("batchy", {})
    # the same statistics at every batch size, other samples: caught as it declares itself batch-invariant
    with pytest.raises(AssertionError, match=r"^attack 'draws_per_batch' changes its samples with batch size 32 vs "
                                             r"128: the median sample moves by [0-9.]+ of its perturbation"):
        check_attack("draws_per_batch", {})
    report = check_attack("draws_per_batch_declared", {})  # declared: its batch size is keyed, it passes
    assert abs(report.by_batch_size[7][0] - report.success_rate) <= 0.05
    with pytest.raises(AssertionError, match=r"^attack 'lying_resolver': run with its resolved_params written in "
                                             r"\(step=0.05\) it gives other outputs"):
        check_attack("lying_resolver", {})
    check_attack("lying_resolver", {"step": 0.05})  # set, nothing is resolved
    with pytest.raises(PluginContractError, match="success flags disagree"):
        check_attack("liar", {})
    with pytest.raises(PluginContractError, match=r"^attack 'gradient_denier' declares it takes no gradients"):
        check_attack("gradient_denier", {})
    check_attack("no_gradient_noise", {})  # passes: querying the model is what it declares


def test_targets_must_be_what_the_attack_declares(broken):
    """An untargeted attack returns no targets; a targeted one a class other than each input's label. Either
    mistake changes what a success flag means, so the contract refuses it when the attack runs (and the validity
    gate refuses a stored set edited that way: tests/test_validity.py)."""
    with pytest.raises(PluginContractError, match=r"^attack 'secretly_targeted' has targets other than -1, though "
                                                  r"the attack is untargeted"):
        check_attack("secretly_targeted", {})
    with pytest.raises(PluginContractError, match=r"^attack 'own_label_targeted' targets sample 0's own label"):
        check_attack("own_label_targeted", {})
    with pytest.raises(PluginContractError, match=r"^attack 'targetless_targeted' returned no extras\['targets'\] "
                                                  r"though it declares itself targeted"):
        check_attack("targetless_targeted", {})


def test_an_attack_changing_the_model_fails_the_kit_and_leaves_the_reference_model_whole(broken):
    """The kit attacks a copy, watched: the vandal is caught, and the next check still runs on the trained model
    (the cached reference model was shared, so one bad plugin broke every later check)."""
    before = {k: v.clone() for k, v in reference_model().state_dict().items()}
    with pytest.raises(PluginContractError, match="^attack 'vandal' changed the model it attacks"):
        check_attack("vandal", {})
    assert all(torch.equal(v, reference_model().state_dict()[k]) for k, v in before.items())
    report = check_attack("sign_noise", {"eps": 0.1})
    assert report.success_rate < 0.5  # on the trained model; the zeroed one errs on ~90% of the images


# -- metrics ------------------------------------------------------------------------------------------------------
def _cell_metrics() -> list[str]:
    """Every built-in metric whose default params name nothing of a suite (what check_metric covers)."""
    from rbench.metric import declared_references

    out = []
    for name, info in sorted(get_registry().plugins["metric"].items()):
        if info.distribution != "rbench":
            continue
        try:
            params = info.obj.Params()
        except ValueError:  # a required param (ood_auroc's ood, worst_case's attacks): it names suite things
            continue
        if not declared_references(info.obj, params):
            out.append(name)
    return out


@pytest.mark.parametrize("name", _cell_metrics())
def test_builtin_metrics_conform(name):
    from rbench.testing import check_metric

    check_metric(name, {})  # the fooling metrics give None on cells without generated sets: allowed


class _MetricP(BaseModel):
    pass


class _Metric:
    Params, unit, fmt, label = _MetricP, "%", ".1f", "m"

    def __init__(self, name, compute):
        self.name, self._compute = name, compute

    def references(self, params):
        return []

    def compute(self, cell, params):
        return self._compute(cell)


def _shuffles(cell):
    cell.predictions.logits[:] = cell.predictions.logits[::-1].copy()  # in place: the stored outputs change
    return 1.0


def _vandal(cell):
    for p in cell.model.parameters():
        p.zero_()
    cell.inputs[0].zero_()
    return 1.0


def _retrains(cell):
    for p in cell.model.parameters():
        p.add_(1.0)
    return 1.0


BROKEN_METRICS = {"m_vandal": (_vandal, "changed the cell's inputs.x in place"),
                  "m_retrains": (_retrains, "changed the cell's model"),
                  "m_random": (lambda cell: float(torch.rand(())), "is not a pure function of its cell"),
                  "m_string": (lambda cell: "12.5", "returned str '12.5'"),
                  "m_nan": (lambda cell: float("nan"), "returned nan, not a finite number"),
                  "m_shuffles": (_shuffles, "changed the cell's clean.logits in place"),
                  # what the engine refuses when it assembles a cell (each passed the kit and failed every cell)
                  "m_percent": (lambda cell: 250.0, r"returned 250: outside \[0, 100\], where a value in %"),
                  "m_negative_rate": (lambda cell: Estimate(-20.0, 100, -25.0, -15.0, "wilson"),
                                      "returned an estimate rbench cannot stand behind: a wilson estimate of -20.0")}


@pytest.mark.parametrize("name", sorted(BROKEN_METRICS))
def test_broken_metrics_are_caught(name, monkeypatch):
    from rbench.testing import check_metric

    compute, message = BROKEN_METRICS[name]
    monkeypatch.setitem(get_registry().plugins["metric"], name,
                        PluginInfo("metric", name, "0", "tests", "tests", _Metric(name, compute)))
    before = {k: v.clone() for k, v in reference_model().state_dict().items()}
    with pytest.raises(AssertionError, match=rf"^metric '{name}' \(clean cell\) .*{message}"):
        check_metric(name, {})
    assert all(torch.equal(v, reference_model().state_dict()[k]) for k, v in before.items())  # the kit's own
    assert check_metric("error", {}).clean is not None  # and the next check is unaffected


def test_a_metric_reading_other_evaluations_is_left_to_a_suite():
    from rbench.testing import check_metric

    with pytest.raises(TypeError, match="check it through a suite"):
        check_metric("ood_auroc", {"ood": "elsewhere"})


def test_success_and_distortion_among_the_correctly_classified_leave_out_clean_errors():
    """``among = "correct"``: an image the source misclassifies already is no success of the attack (foolbox's
    convention, the default, counts it, with distortion 0 where the attack left it as it was)."""
    from rbench.metric import CellData
    from rbench.metric_kit import EVALUATION, _cell, _KitOutputs, check_metric
    from rbench.plugins.metrics.rates import AmongParams, SuccessRate
    from rbench.testing import reference_data

    model = reference_model()
    x, y = reference_data()
    out = get_registry().plugins["attack"]["fgsm"].obj.run(
        model, x.clone(), y.clone(), get_registry().plugins["attack"]["fgsm"].obj.Params(eps=0.1),
        generator=torch.Generator().manual_seed(0))
    correct = (model(x).argmax(1) == y).numpy()
    success = out.success_on(model, y).numpy()
    assert (~correct).any() and success[~correct].all()  # clean errors stay errors: counted as successes by default
    every = check_metric("success_rate", {}).attacked
    among = check_metric("success_rate", {"among": "correct"}).attacked
    assert every.value == pytest.approx(100 * success.mean()) and every.n == len(y)
    assert among.value == pytest.approx(100 * success[correct].mean()) and among.n == int(correct.sum())
    size = np.linalg.norm((out.x_adv - x).flatten(1).numpy(), axis=1)
    fooled = check_metric("distortion", {"norm": "l2", "among": "correct"}).attacked
    assert fooled.value == pytest.approx(size[success & correct].mean(), rel=1e-5)
    assert check_metric("success_rate", {"among": "correct"}).clean is None
    outputs = _KitOutputs(model, x, y, _adv_set(out, success, x, y), "fgsm")
    other = CellData("reference", "fgsm", "another", _cell(outputs, "fgsm").keys, outputs, EVALUATION)
    with pytest.raises(ValueError, match="this cell evaluates 'another': use it where the target is the source"):
        SuccessRate().compute(other, AmongParams(among="correct"))
    # transfer_rate counts the fooled samples; among = "correct" those the target classifies correctly when clean
    transferred = check_metric("transfer_rate", {}).attacked
    assert transferred.n == int(success.sum()) and transferred.value == pytest.approx(100)  # the same model
    assert check_metric("transfer_rate", {"among": "correct"}).attacked.n == int((success & correct).sum())
    from rbench.plugins.metrics.rates import TransferParams, TransferRate

    assert TransferRate().compute(other, TransferParams(among="correct")).n == int((success & correct).sum())


def _adv_set(out, success, x, y):
    from rbench.artifacts import AdvSet, distortions

    return AdvSet(out.x_adv.numpy(), success, y.numpy(), np.full(len(x), -1, np.int64),
                  np.arange(len(x), dtype=np.int64), distortions(x.numpy(), out.x_adv.numpy()))


def test_the_reference_data_cannot_be_changed_for_later_checks():
    """``reference_data`` was one cached pair of tensors: an attack zeroing what it was given left every later
    check running on black images, where a defense leaving [0, 1] and an attack's lying flags passed."""
    x, y = reference_data()
    x.zero_()
    y.fill_(-1)
    again_x, again_y = reference_data()
    assert float(again_x.sum()) > 0 and int(again_y.min()) >= 0


def test_the_kit_refuses_params_a_suite_refuses(monkeypatch):
    """A default that breaks its own rule (or is not finite) is refused by every suite before any work; the kit
    passed such a plugin (check_attack(name, {}) ran it with eps = 5)."""
    from pydantic import Field

    class Loose(BaseModel):
        eps: float = Field(5.0, le=1.0)

    class Infinite(BaseModel):
        eps: float = float("inf")

    for params, message in ((Loose, "Loose has a default eps = 5.0 that breaks its own rule"),
                            (Infinite, "params.eps: inf is not a finite number")):
        attack = type("A", (FixedBudgetAttack,), {"name": "loose", "Params": params, "norm": "linf",
                                                  "run": lambda self, model, x, y, p, *, generator=None: None})()
        monkeypatch.setitem(get_registry().plugins["attack"], "loose",
                            PluginInfo("attack", "loose", "0", "tests", "tests", attack))
        with pytest.raises(ValueError, match=re.escape(message)):
            check_attack("loose", {})


def test_the_kit_says_a_refused_param_in_one_line(monkeypatch):
    """A misspelt or mistyped parameter raised pydantic's own error (a dozen lines, three problems for one
    typo); it is one line now, as a suite says it, with the close match."""
    for given, message in (({"eps": 0.1, "stepz": 3}, "attack 'pgd': params.stepz: unknown key (got 3); did you "
                            "mean 'steps'?"),
                           ({"eps": 0.1, "steps": "a"}, "attack 'pgd': params.steps: Input should be a valid integer "
                            "(got 'a')")):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            check_attack("pgd", given)

    class Resolving(BaseModel):
        eps: float = 0.1
        steps: int | None = None

    for resolves, problem in (({"eps": 0.2}, "names 'eps', which is not an unset parameter"),
                              ({"steps": [3]}, "gives steps = [3], not a finite number, a string or a boolean"),
                              ([], "returned list, not a dict")):
        attack = type("A", (FixedBudgetAttack,), {"name": "resolving", "Params": Resolving, "norm": "linf",
                                                  "resolved_params": lambda self, p, r=resolves: r,
                                                  "run": lambda self, model, x, y, p, *, generator=None: None})()
        monkeypatch.setitem(get_registry().plugins["attack"], "resolving",
                            PluginInfo("attack", "resolving", "0", "tests", "tests", attack))
        with pytest.raises(PluginContractError, match=f"^attack 'resolving' resolved_params {re.escape(problem)}$"):
            check_attack("resolving", {})
    # a budget it cannot state is named by the plugin, as a suite names it (the class's name was all it said)
    normless = type("NoNorm", (FixedBudgetAttack,), {"name": "normless", "Params": Resolving,
                                                     "run": lambda self, model, x, y, p, *, generator=None: None})()
    monkeypatch.setitem(get_registry().plugins["attack"], "normless",
                        PluginInfo("attack", "normless", "0", "tests", "tests", normless))
    with pytest.raises(PluginContractError, match="^attack 'normless' cannot state its budget: TypeError: NoNorm: a "
                                                  "fixed-budget attack needs"):
        check_attack("normless", {})
    from rbench.attack import resolved_params

    numpy_valued = type("N", (), {"name": "n", "resolved_params": lambda self, p: {"steps": np.float32(3)}})()
    resolved = resolved_params(numpy_valued, Resolving())  # a numpy scalar is the number it holds (JSON-able)
    assert resolved == {"steps": 3.0} and type(resolved["steps"]) is float


def test_pgd_declares_its_l2_random_start_batch_dependent(monkeypatch):
    """pgd's L2 start draws a batch's directions, then its radii, so its samples follow the batches (every one of
    128 moved by about a quarter of its perturbation between batch sizes 128 and 32); a Linf start or none does
    not. Were it to claim otherwise, the kit's per-sample check would catch it."""
    from rbench.plugins.attacks.pgd import Pgd

    pgd = get_registry().get("attack", "pgd").obj
    l2 = pgd.Params(eps=1.0, norm="l2", steps=5)
    assert not pgd.batch_invariant(l2) and pgd.batch_invariant(l2.model_copy(update={"random_start": False}))
    assert pgd.batch_invariant(pgd.Params(eps=0.1))
    claiming = type("Claiming", (Pgd,), {"name": "pgd_claiming", "batch_invariant": lambda self, params: True})()
    monkeypatch.setitem(get_registry().plugins["attack"], "pgd_claiming",
                        PluginInfo("attack", "pgd_claiming", "0", "tests", "tests", claiming))
    with pytest.raises(AssertionError, match="^attack 'pgd_claiming' changes its samples with batch size 32 vs 128"):
        check_attack("pgd_claiming", {"eps": 1.0, "norm": "l2", "steps": 5})


def test_gaussian_noise_is_batch_invariant_on_any_input_size():
    """torch's CPU normal sampler redraws the last 16 values of a tensor whose size is not a multiple of 16, so
    noise drawn for a batch of 5x5 inputs followed the batches (the median sample moved by 1.35 of its
    perturbation); each sample draws whole blocks now. MNIST's 784 = 49 x 16 hid it."""
    torch.manual_seed(1)
    small = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(25, 10))
    x, y = torch.rand(128, 1, 5, 5), torch.randint(0, 10, (128,))
    for params in ({"sigma": 0.3}, {"norm": "l2", "eps": 1.0}):
        check_attack("gaussian_noise", params, model=small, x=x, y=y)
