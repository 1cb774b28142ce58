"""The built-in defense plugins (lowpass, noise_injection, bit_depth, median, dae, committee), the ``denoising``
trainer, and the defense conformance kit (``rbench.testing.check_defense``), which must catch broken defenses."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ValidationError
from scipy import ndimage
from support import rbench
from torch import nn

from rbench.data import load_split
from rbench.defense import Defense, DefenseModule, seed_randomness
from rbench.manager import PluginInfo, get_plugin, get_registry
from rbench.model import TrainData
from rbench.plugins.defenses.lowpass import PAPER_VARIANCE, gaussian_kernel
from rbench.plugins.models.ensemble import EnsembleNet
from rbench.plugins.trainers.denoising import DenoisingTrainer
from rbench.testing import check_defense, reference_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUILTIN = ["noise_injection", "lowpass", "bit_depth", "median", "dae", "committee"]


def _build(name: str, **params) -> nn.Module:
    plugin = get_plugin("defense", name)
    return plugin.build(plugin.Params.model_validate(params, strict=True)).eval()


def _mnist(n: int = 64) -> torch.Tensor:
    return reference_data()[0][:n]


# -- every built-in defense through the kit, with its declared flags ---------------------------------------
@pytest.mark.parametrize(("name", "params", "randomized", "differentiable"), [
    ("noise_injection", {"sigma": 0.3}, True, True),
    ("lowpass", {}, False, True),
    ("lowpass", {"size": 3, "noise_sigma": 0.1}, True, True),
    ("lowpass", {"size": 7, "variance": 0.6}, False, True),
    ("bit_depth", {}, False, False),
    ("bit_depth", {"bits": 4}, False, False),
    ("median", {}, False, True),
    ("median", {"size": 3}, False, True),
    ("dae", {"widths": [64, 16]}, False, True),
    ("committee", {}, False, True),
    ("committee", {"combine": "mean_logits"}, False, True),
])
def test_builtin_defenses_conform(name, params, randomized, differentiable):
    report = check_defense(name, params)
    assert (report.randomized, report.differentiable) == (randomized, differentiable)
    if name != "committee":
        assert report.mean_change > 0, "the defense changes nothing on MNIST"


def test_declared_kinds():
    kinds = {n: (p.trained, p.aggregates) for n in BUILTIN for p in [get_plugin("defense", n)]}
    assert kinds == {"noise_injection": (False, False), "lowpass": (False, False), "bit_depth": (False, False),
                     "median": (False, False), "dae": (True, False), "committee": (False, True)}
    for name in BUILTIN:
        plugin = get_plugin("defense", name)
        assert isinstance(plugin, Defense) and plugin.approximation(plugin.Params.model_validate(
            {"sigma": 0.1} if name == "noise_injection" else {})) is None
        assert plugin.__doc__ and "Params" in plugin.__doc__ and "ifferentiable" in plugin.__doc__


def test_params_are_validated_strictly():
    bad = [("noise_injection", {}), ("noise_injection", {"sigma": 0}), ("lowpass", {"size": 4}),
           ("lowpass", {"variance": -1.0}), ("lowpass", {"noise_sigma": -0.1}), ("bit_depth", {"bits": 0}),
           ("bit_depth", {"bits": 9}), ("bit_depth", {"bits": "2"}), ("median", {"size": 4}),
           ("dae", {"widths": []}), ("committee", {"combine": "max"}), ("lowpass", {"sigma": 1.0})]
    for name, params in bad:
        with pytest.raises(ValidationError):
            get_plugin("defense", name).Params.model_validate(params, strict=True)


# -- lowpass ------------------------------------------------------------------------------------------------
def test_lowpass_kernel_values():
    for size, variance in PAPER_VARIANCE.items():
        k = gaussian_kernel(size, variance)
        assert k.shape == (size, size) and k.dtype == torch.float32
        assert abs(float(k.sum()) - 1) < 1e-6
        assert torch.equal(k, k.T) and torch.equal(k, k.flip(0)) and torch.equal(k, k.flip(1))
        assert float(k[size // 2, size // 2]) == float(k.max())
    # 3x3, variance 7: grid (-3, 0, 3); weights exp(-(u^2 + v^2) / 14): 1 at the centre, exp(-9/14) at the four
    # edges, exp(-18/14) at the four corners
    edge, corner = math.exp(-9 / 14), math.exp(-18 / 14)
    total = 1 + 4 * edge + 4 * corner
    k = gaussian_kernel(3, 7.0)
    assert float(k[1, 1]) == pytest.approx(1 / total, abs=1e-7)
    assert float(k[1, 1]) == pytest.approx(0.23759, abs=1e-5)
    assert float(k[0, 1]) == pytest.approx(edge / total, abs=1e-7)
    assert float(k[0, 0]) == pytest.approx(corner / total, abs=1e-7)


def test_lowpass_variance_defaults_to_the_papers():
    params = get_plugin("defense", "lowpass").Params
    assert [params(size=s).variance for s in (3, 5, 7)] == [7.0, 1.3, 0.6]
    assert params(size=5) == params(size=5, variance=1.3)  # one key whether the default is written or not
    assert params(size=3, variance=2.0).variance == 2.0


def test_lowpass_constant_image_passes_unchanged():
    for size in (3, 5, 7):
        module = _build("lowpass", size=size)
        for c in (0.0, 0.3, 1.0):
            x = torch.full((2, 3, 28, 28), c)
            assert torch.allclose(module(x), x, atol=1e-6), (size, c)


def test_lowpass_is_a_replicate_padded_depthwise_convolution():
    x = torch.cat([_mnist(4), torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))], dim=1)
    for size in (3, 5, 7):
        out = _build("lowpass", size=size)(x)
        kernel = gaussian_kernel(size, PAPER_VARIANCE[size]).double().numpy()
        expected = np.stack([[ndimage.correlate(img.double().numpy(), kernel, mode="nearest") for img in sample]
                             for sample in x])
        assert np.allclose(out.numpy(), expected, atol=1e-6), size
        assert not torch.equal(out[:, 0], out[:, 1])  # channel by channel


def test_lowpass_is_unbiased_under_autocast_and_keeps_gradients_after_inference_mode():
    """Its products run in float32 outside autocast (bfloat16 matrices' rows sum to 0.998: every image darker);
    matrices first made under inference mode still enter a graph later; a copy rebuilds them; an input
    that is not an image is refused, not blurred across the batch."""
    module = _build("lowpass")
    x = _mnist(8)
    with torch.inference_mode():
        module(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast, ones = module(x), module(torch.ones(1, 1, 28, 28))
    assert torch.equal(under_autocast, module(x)) and torch.equal(ones, torch.ones(1, 1, 28, 28))
    grad_input = x.clone().requires_grad_(True)
    module(grad_input).sum().backward()
    assert grad_input.grad is not None and float(grad_input.grad.abs().sum()) > 0
    copied = copy.deepcopy(module)  # through __getstate__, as any copy of the module: the matrices are not carried
    assert not copied._matrices and torch.equal(copied(x), module(x))
    with pytest.raises(ValueError, match="images"):
        module(x.flatten(1))


def test_lowpass_noise_makes_it_randomized():
    plugin = get_plugin("defense", "lowpass")
    assert not plugin.is_randomized(plugin.Params()) and plugin.is_randomized(plugin.Params(noise_sigma=0.1))
    noisy = _build("lowpass", noise_sigma=0.2)
    x = _mnist(8)
    seed_randomness(noisy, 0)
    a = noisy(x)
    seed_randomness(noisy, 0)
    assert torch.equal(a, noisy(x)) and not torch.equal(a, _build("lowpass")(x))


# -- bit depth, median --------------------------------------------------------------------------------------
def test_bit_depth_one_bit_is_a_threshold_at_half():
    x = torch.cat([_mnist(32).flatten(), torch.rand(1000, generator=torch.Generator().manual_seed(0)),
                   torch.tensor([0.0, 0.4999, 0.5, 0.5001, 1.0])])
    out = _build("bit_depth", bits=1)(x.view(1, 1, 1, -1)).flatten()
    assert torch.equal(out, (x >= 0.5).float())


def test_bit_depth_levels_match_xu_et_al():
    x = _mnist(32)
    for bits in range(1, 9):
        levels = 2**bits - 1
        out = _build("bit_depth", bits=bits)(x)
        assert torch.equal(out, torch.tensor(np.rint(x.numpy() * levels) / levels, dtype=torch.float32)), bits
        assert len(out.unique()) <= levels + 1
    assert torch.equal(_build("bit_depth", bits=8)(x), x)  # 8-bit images are left alone


def test_median_removes_a_single_salt_or_pepper_pixel():
    for size in (2, 3):
        module = _build("median", size=size)
        salt = torch.zeros(1, 1, 9, 9)
        salt[0, 0, 4, 4] = 1
        assert torch.equal(module(salt), torch.zeros_like(salt)), size
        pepper = 1 - salt
        assert torch.equal(module(pepper), torch.ones_like(pepper)), size


def test_median_equals_scipy_median_filter_as_xu_et_al_use_it():
    x = _mnist(16)
    for size in (2, 3):
        out = _build("median", size=size)(x)
        expected = ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
        assert np.array_equal(out.numpy(), expected), size


# -- noise injection ----------------------------------------------------------------------------------------
def test_noise_injection_mean_and_std():
    sigma = 0.1
    module = _build("noise_injection", sigma=sigma)
    assert isinstance(module, DefenseModule)
    x = torch.full((64, 1, 28, 28), 0.5)  # 5 sigma from either edge: the clamp (almost) never acts
    seed_randomness(module, 3)
    noise = module(x) - x
    assert abs(float(noise.mean())) < 0.003
    assert float(noise.std()) == pytest.approx(sigma, rel=0.02)
    low = module(torch.zeros(4, 1, 28, 28))
    assert float(low.min()) == 0 and float(low.max()) > 0  # clamped into the box


# -- committee ----------------------------------------------------------------------------------------------
def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    plugin = get_plugin("model", "mlp")
    return plugin.build(plugin.Params(widths=[32])).eval().requires_grad_(False)


@pytest.mark.parametrize("combine", ["mean_softmax", "mean_logits"])
def test_committee_equals_the_ensemble(combine):
    members = [_mlp(0), _mlp(1)]
    committee = get_plugin("defense", "committee")
    params = committee.Params(combine=combine)
    module = committee.compose(members, params)
    assert isinstance(module, EnsembleNet) and list(module.members) == members
    x = _mnist(32)
    ensemble = get_plugin("model", "ensemble")
    assert torch.equal(module(x), ensemble.compose(members, ensemble.Params(combine=combine))(x))
    outs = torch.stack([m(x) for m in members])
    if combine == "mean_softmax":
        assert torch.allclose(module(x).softmax(1), outs.softmax(2).mean(0), atol=1e-6)
    else:
        assert torch.allclose(module(x), outs.mean(0), atol=1e-6)
    with pytest.raises(TypeError):
        committee.build(params)


# -- the denoising autoencoder and its trainer --------------------------------------------------------------
def test_dae_architecture():
    module = _build("dae")
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    sizes = [linears[0].in_features, *(m.out_features for m in linears)]
    assert sizes == [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    assert sum(isinstance(m, nn.Sigmoid) for m in module.modules()) == len(linears)
    out = module(_mnist(4))
    assert out.shape == (4, 1, 28, 28) and out.dtype == torch.float32


def _images(split: str, n: int) -> torch.Tensor:
    images, _ = load_split("mnist", split)
    return torch.tensor(images[:n].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255


def test_dae_learns_to_reconstruct_mnist_with_the_denoising_trainer():
    """A few hundred SGD steps on 2000 MNIST training images: the reconstruction error on held-out test images
    falls far below the untrained one's and below that of the training images' mean (the plateau a deep
    sigmoid autoencoder first reaches), so it reconstructs the digits themselves. A small DAE keeps it fast."""
    x, held_out = _images("train", 2000), _images("test", 500)
    torch.manual_seed(0)
    dae = _build("dae", widths=[256, 64])
    trainer = get_plugin("trainer", "denoising")
    params = trainer.Params(iterations=300, lr=0.1, batch_size=50)
    assert (params.input_dropout, params.loss, params.momentum, params.nesterov) == (0.2, "bce", 0.9, True)
    before = DenoisingTrainer.evaluate(dae, held_out, "mse")
    stats = trainer.train(dae, TrainData(x, torch.zeros(len(x), dtype=torch.int64)), params,
                          generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    after = DenoisingTrainer.evaluate(dae.eval(), held_out, "mse")
    mean_image = float((held_out - x.mean(0)).pow(2).flatten(1).sum(1).mean())
    assert after < 0.3 * before, (before, after)
    assert after < 0.8 * mean_image, (after, mean_image)
    assert stats["steps"] == 300 and stats["passes"] == 8
    assert all(math.isfinite(stats[k]) for k in ("final_reconstruction_loss", "clean_reconstruction_loss"))
    assert stats["clean_reconstruction_loss"] < stats["final_reconstruction_loss"]  # dropped pixels cost


class _Identityish(nn.Module):
    def __init__(self, out: str = "same"):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.out = out

    def forward(self, x):
        if self.out == "nan":
            return x * self.w * float("nan")
        if self.out == "flat":
            return (x * self.w).flatten(1)
        if self.out == "collapsed":  # e.g. dead ReLUs: the same output whatever the input
            return (x * 0 + self.w * 0.0).clamp(0, 1)
        return (x * self.w).clamp(0, 1)


def test_denoising_trainer_checks():
    trainer = get_plugin("trainer", "denoising")
    data = TrainData(_mnist(40), torch.zeros(40, dtype=torch.int64))
    kw = {"generator": torch.Generator().manual_seed(0), "device": torch.device("cpu")}
    with pytest.raises(FloatingPointError, match="not finite"):
        trainer.train(_Identityish("nan"), data, trainer.Params(loss="mse", batch_size=10), **kw)
    with pytest.raises(TypeError, match="input's shape"):
        trainer.train(_Identityish("flat"), data, trainer.Params(batch_size=10), **kw)
    with pytest.raises(ArithmeticError, match="no better than the mean image"):
        trainer.train(_Identityish("collapsed"), data, trainer.Params(loss="mse", batch_size=10), **kw)
    with pytest.raises(ValidationError, match="nesterov"):
        trainer.Params.model_validate({"momentum": 0.0}, strict=True)
    stats = trainer.train(_Identityish(), data, trainer.Params(batch_size=10, epochs=3, loss="mse"), **kw)
    assert stats["passes"] == 3 and stats["steps"] == 12
    stats = trainer.train(_Identityish(), data, trainer.Params(batch_size=10, iterations=6, loss="mse"), **kw)
    assert stats["passes"] == 2 and stats["steps"] == 6


def test_denoising_drops_pixels_with_the_given_probability():
    seen = []

    class Recorder(_Identityish):
        def forward(self, x):
            seen.append(x.detach().clone())
            return super().forward(x)

    x = torch.full((200, 1, 28, 28), 0.5)
    trainer = get_plugin("trainer", "denoising")
    trainer.train(Recorder(), TrainData(x, torch.zeros(200, dtype=torch.int64)),
                  trainer.Params(input_dropout=0.3, batch_size=200, loss="mse"),
                  generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    dropped = float((seen[0] == 0).float().mean())
    assert dropped == pytest.approx(0.3, abs=0.01)
    assert set(seen[0].unique().tolist()) == {0.0, 0.5}  # zeroed, the rest not rescaled


# -- registration ---------------------------------------------------------------------------------------------
def test_plugins_lists_the_defenses():
    proc = rbench("plugins", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["plugins"]
    defenses = {r["name"]: r for r in rows if r["kind"] == "defense"}
    assert set(BUILTIN) <= set(defenses)
    for name in BUILTIN:
        assert defenses[name]["error"] is None and defenses[name]["distribution"] == "rbench"
    assert any(r["kind"] == "trainer" and r["name"] == "denoising" and r["error"] is None for r in rows)


# -- the kit catches broken defenses --------------------------------------------------------------------------
class _NoParams(BaseModel):
    pass


class _NoisyModule(DefenseModule):
    def forward(self, x):
        return (x + 0.1 * self.normal(x)).clamp(0, 1)


class _SecretlyRandom(Defense):
    """Declares itself deterministic, but draws noise."""

    name, Params = "secretly_random", _NoParams

    def build(self, params):
        return _NoisyModule()


class _GlobalRng(Defense):
    """Randomized, but draws from torch's global generator, which the engine does not seed."""

    name, Params, randomized = "global_rng", _NoParams, True

    def build(self, params):
        return _Lambda(lambda x: (x + 0.1 * torch.randn_like(x)).clamp(0, 1))


class _ClaimsRandom(Defense):
    name, Params, randomized = "claims_random", _NoParams, True

    def build(self, params):
        return _Lambda(lambda x: x.clamp(0.1, 0.9))


class _Detached(Defense):
    """Declares itself differentiable, but cuts the graph."""

    name, Params = "detached", _NoParams

    def build(self, params):
        return _Lambda(lambda x: x.detach().clamp(0.1, 0.9))


class _OutOfBox(Defense):
    name, Params = "out_of_box", _NoParams

    def build(self, params):
        return _Lambda(lambda x: x * 1.5 - 0.1)


class _BadApproximation(Defense):
    name, Params, differentiable = "bad_approximation", _NoParams, False

    def build(self, params):
        return _Lambda(torch.round)

    def approximation(self, params):
        return _Lambda(lambda x: x[..., :14])


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


BROKEN = [_SecretlyRandom(), _GlobalRng(), _ClaimsRandom(), _Detached(), _OutOfBox(), _BadApproximation()]


@pytest.fixture
def broken():
    registry = get_registry()
    for obj in BROKEN:
        registry.plugins["defense"][obj.name] = PluginInfo("defense", obj.name, "0", "tests", "tests", obj)
    yield
    for obj in BROKEN:
        registry.plugins["defense"].pop(obj.name)


@pytest.mark.parametrize(("name", "message"), [
    ("secretly_random", "declared deterministic .* changes with the seed"),
    ("global_rng", "not deterministic under a seed"),
    ("claims_random", "declared randomized but its output does not change"),
    ("detached", "declared differentiable.*does not depend on the input through autograd"),
    ("out_of_box", r"left the \[0, 1\] box"),
    ("bad_approximation", "BPDA approximation maps"),
])
def test_broken_defenses_are_caught(broken, name, message):
    with pytest.raises(AssertionError, match=message):
        check_defense(name, {})


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


@pytest.mark.parametrize("bpda", [False, True])
def test_an_input_defense_leaving_the_box_fails_where_it_runs_naming_it(bpda):
    """Checked on every pass of a defended model (attacks and evaluations alike), not only by check_defense: a
    defense doubling its inputs gave a normal-looking table."""
    from rbench.defense import Stage
    from rbench.errors import PluginContractError

    x = reference_data()[0][:8]
    for factor, shown in ((2.0, r"\[0, 2\]"), (float("nan"), r"\[nan, nan\]")):
        stage = Stage(_Scale(factor), name="doubler", differentiable=True, randomized=False, trained=False,
                      approximation=None)
        stage.bpda = bpda
        with pytest.raises(PluginContractError, match=rf"^defense 'doubler' maps inputs to values in {shown}"):
            stage(x)
    ok = Stage(_Scale(1.0), name="same", differentiable=True, randomized=False, trained=False, approximation=None)
    assert torch.equal(ok(x), x) and ok(x[:0]).shape == (0, 1, 28, 28)  # an empty batch passes through
    flat = Stage(nn.Flatten(), name="flat", differentiable=True, randomized=False, trained=False, approximation=None)
    with pytest.raises(PluginContractError, match=r"^defense 'flat' returned Tensor \(8, 784\) for inputs of "
                                                  r"shape \(8, 1, 28, 28\)"):
        flat(x)


@pytest.mark.parametrize("approximation", [None, "lowpass"])
def test_bpda_forward_is_the_defense_bit_for_bit_and_backward_the_stand_in(approximation):
    """Attacks through BPDA see exactly what evaluations see (the median's output moved by up to 6e-8 before, so a
    set's success flags, predicted through BPDA, could disagree with the gate's re-prediction on a near tie)."""
    from rbench.defense import Stage

    x = (reference_data()[0][:16] * 0.9 + 0.05).requires_grad_(True)  # values whose sums round
    stand_in = None if approximation is None else _build(approximation)
    stage = Stage(_build("median"), name="median", differentiable=False, randomized=False, trained=False,
                  approximation=stand_in)
    stage.bpda = True
    out = stage(x)
    assert torch.equal(out, _build("median")(x.detach()))
    weights = torch.randn_like(x)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    expected = weights if stand_in is None else torch.autograd.grad((stand_in(x) * weights).sum(), x)[0]
    assert torch.equal(grad, expected)


def test_flags_that_disagree_through_a_defense_name_an_undeclared_randomized_defense_as_a_cause():
    """A defense drawing from the global generator though declared deterministic makes the re-prediction differ;
    the attack was blamed alone."""
    from rbench.attack import AttackOutput
    from rbench.contract import check_attack_output
    from rbench.defense import DefendedModel, Stage
    from rbench.errors import PluginContractError

    class Secret(nn.Module):
        def forward(self, x):
            return torch.rand_like(x)  # the global generator: another image on every pass

    torch.manual_seed(0)
    head = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    nn.init.normal_(head[1].weight, std=3.0)  # so that the prediction changes with the image
    stage = Stage(Secret(), name="secret", differentiable=True, randomized=False, trained=False, approximation=None)
    model = DefendedModel([stage], head, [head]).eval()
    x, y = torch.rand(64, 1, 4, 4), torch.zeros(64, dtype=torch.long)
    with pytest.raises(PluginContractError, match=r"success flags disagree .*; or a defense of the model is "
                                                  r"randomized without declaring it"):
        check_attack_output("fgsm", AttackOutput(x, model(x).argmax(1) != y), x, None, model, y, 0)
    with pytest.raises(PluginContractError) as plain:  # an undefended model: the attack alone is named
        check_attack_output("fgsm", AttackOutput(x, torch.ones(64, dtype=torch.bool)), x, None, head, y, 0)
    assert "defense" not in str(plain.value)


def test_a_defense_that_cuts_its_gradients_while_declaring_them_is_caught_before_an_attack_masks_them():
    """A rounding defense left at differentiable = True showed 6% error under PGD (96% undefended): gradient
    masking reported as robustness. The attack job checks each declared-differentiable stage first."""
    from rbench.contract import check_defense_gradients
    from rbench.defense import DefendedModel, Stage
    from rbench.errors import PluginContractError

    torch.manual_seed(0)
    head = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x = reference_data()[0][:32]

    def defended(module, name, **flags):
        stage = Stage(module, name=name, differentiable=flags.get("differentiable", True),
                      randomized=flags.get("randomized", False), trained=False, approximation=None)
        return DefendedModel([stage], head, [head]).eval(), stage

    for module, why in ((_Lambda(torch.round), "its input gradients are all zero"),
                        (_Lambda(lambda v: v.detach().clamp(0.1, 0.9)), "no gradient reaches its input")):
        model, _ = defended(module, "liar")
        with pytest.raises(PluginContractError, match=rf"^defense 'liar' declares itself differentiable, but {why} "
                                                      r"\(on 16 inputs\)"):
            check_defense_gradients(model, x)
    model, stage = defended(_Lambda(torch.round), "honest", differentiable=False)
    check_defense_gradients(model, x)  # declared not differentiable: attacks go through BPDA, not checked here
    noisy, _ = defended(_NoisyModule(), "noisy", randomized=True)
    seed_randomness(noisy, 7)
    before = noisy.stages[0].module.generator.get_state()
    check_defense_gradients(noisy, x)  # an honest randomized stage passes, and its stream is left where it was
    assert torch.equal(noisy.stages[0].module.generator.get_state(), before)


ROUNDING = '''
import torch
from pydantic import BaseModel
from rbench import hookimpl
from rbench.defense import Defense, DefenseModule


class Rounded(DefenseModule):
    def forward(self, x):
        return torch.round(x)


class Params(BaseModel):
    pass


class Rounding(Defense):
    name, Params = "rounding", Params  # differentiable = True by default: a false declaration

    def build(self, params):
        return Rounded()


@hookimpl
def rbench_defenses():
    return [Rounding()]
'''


def test_a_run_fails_the_gradient_attacks_on_a_lying_defense_and_keeps_the_others(tiny_reference, tmp_path):
    import shutil

    from support import mlp_suite, plugin_dist, run_values

    suite, store, _, _ = tiny_reference
    shutil.copytree(store, tmp_path / "store")
    env = plugin_dist(tmp_path / "plugins", "rbench_test_rounding", ROUNDING)
    extra = """
[defenses.round]
plugin = "rounding"
[models.mlp_round]
base = "mlp"
defenses = ["round"]
[attacks.fgsm]
plugin = "fgsm"
params = { eps = 0.2 }
[attacks.noise]
plugin = "gaussian_noise"
params = { norm = "l2", eps = 3.0 }
"""
    text = mlp_suite(suite, extra, ["mlp_round"], ["fgsm", "noise"])
    (tmp_path / "suite.toml").write_text(text)
    out = rbench("run", str(tmp_path / "suite.toml"), "--store", str(tmp_path / "store"), "--run-dir",
                 str(tmp_path / "run"), "-q", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    flat = " ".join(out.stdout.split())
    assert "defense 'rounding' declares itself differentiable, but its input gradients are all zero" in flat
    assert "[defense 'rounding']: PluginContractError" in flat  # the defense at fault, not the attack that ran
    # the failure once; what it kept from running as a count (each skipped job was listed, in full, twice)
    assert flat.count("failed: attack fgsm on mlp_round") == 1 and "not run: needs" not in flat
    assert "skipped: 1 job needing a failed job (e.g. eval mlp_round on fgsm" in flat, flat
    values = run_values(tmp_path / "run")
    assert values[("errors", "fgsm", "mlp_round")] is None  # no number where the attack saw nothing
    assert values[("errors", "noise", "mlp_round")] is not None and values[("errors", "clean", "mlp_round")] is not None


MISBEHAVING = '''
import torch
from torch import nn
from rbench import AttackOutput, FixedBudgetAttack, ModelPlugin, NoParams, hookimpl
from rbench.defense import Defense, DefenseModule
from pydantic import BaseModel


class Undeclared(DefenseModule):  # noise from torch's global generator, declared deterministic
    def forward(self, x):
        return (x + 0.05 * torch.randn_like(x)).clamp(0, 1)


class Halves(DefenseModule):  # writes into its input
    def forward(self, x):
        return x.mul_(0.5)


def defense(plugin_name, module, is_randomized=False):
    class One(Defense):
        name, Params, randomized = plugin_name, NoParams, is_randomized

        def build(self, params):
            return module()
    return One()


class Dropped(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 10)

    def forward(self, x):
        return self.lin(torch.nn.functional.dropout(x.flatten(1), 0.5, training=True))  # on in eval mode too


class DropoutModel(ModelPlugin):
    name, Params, default_trainer = "dropout_on", NoParams, "none"

    def build(self, params):
        return Dropped()


class Eps(BaseModel):
    eps: float = 0.1


class InPlace(FixedBudgetAttack):  # steps 3 eps into its input and returns that
    name, Params, norm = "in_place", Eps, "linf"

    def run(self, model, x, y, params, *, generator=None):
        x.add_(3 * params.eps * torch.sign(torch.rand_like(x) - 0.5)).clamp_(0, 1)
        return AttackOutput(x)


@hookimpl
def rbench_defenses():
    return [defense("undeclared", Undeclared), defense("outside_own", Undeclared, True), defense("halves", Halves)]


@hookimpl
def rbench_models():
    return [DropoutModel()]


class Exits(InPlace):  # a plugin calling sys.exit: it ended the whole run with exit 3 and no word
    name = "exits"

    def run(self, model, x, y, params, *, generator=None):
        raise SystemExit(3)


@hookimpl
def rbench_attacks():
    return [InPlace(), Exits()]
'''


def test_plugins_that_write_into_their_inputs_or_draw_undeclared_randomness_fail_named(tiny_reference, tmp_path):
    """Each of these ran silently and stored numbers: an attack stepping 3 eps into its input (distortion 0 within
    its budget), a defense drawing from torch's global generator declared deterministic (FGSM through it 37%
    against 62% undefended), one declared randomized drawing outside its own generator (draws no seed fixes), a
    defense halving its input in place (a noise set at 5x its budget), a model with dropout left on; and an attack
    calling sys.exit ended the run (exit 3, nothing said). Each now fails its jobs, naming the plugin at fault; the
    plain model's other cells are still computed."""
    import shutil

    from support import mlp_suite, plugin_dist, run_values

    suite, store, _, _ = tiny_reference
    shutil.copytree(store, tmp_path / "store")
    env = plugin_dist(tmp_path / "plugins", "rbench_test_misbehaving", MISBEHAVING)
    extra = "".join(f"""
[defenses.{name}]
plugin = "{name}"
[models.mlp_{name}]
base = "mlp"
defenses = ["{name}"]
""" for name in ("undeclared", "outside_own", "halves")) + """
[models.dropout_on]
plugin = "dropout_on"
dataset = "mnist"
[attacks.in_place]
plugin = "in_place"
[attacks.exits]
plugin = "exits"
[attacks.noise]
plugin = "gaussian_noise"
params = { norm = "l2", eps = 3.0 }
"""
    sources = ["mlp", "mlp_undeclared", "mlp_outside_own", "mlp_halves", "dropout_on"]
    (tmp_path / "suite.toml").write_text(mlp_suite(suite, extra, sources, ["in_place", "exits", "noise"]))
    out = rbench("run", str(tmp_path / "suite.toml"), "--store", str(tmp_path / "store"), "--run-dir",
                 str(tmp_path / "run"), "-q", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    flat = " ".join(out.stdout.split())
    assert ("attack in_place on mlp [attack 'in_place']: PluginContractError: attack 'in_place' modified the "
            "inputs (or labels) it was given in place") in flat
    assert ("eval mlp_undeclared on clean mnist/test [defense 'undeclared']: PluginContractError: defense "
            "'undeclared' gives other images on a second pass over the same inputs") in flat
    assert "[defense 'outside_own']: PluginContractError: defense 'outside_own' declares its randomness but draws " \
           "outside its own generator" in flat
    assert "[defense 'halves']: PluginContractError: defense 'halves' modified its input in place" in flat
    assert ("eval dropout_on on clean mnist/test [model 'dropout_on']: PluginContractError: model 'dropout_on' "
            "cannot be evaluated image by image: its outputs differ between two passes") in flat
    assert "attack exits on mlp [attack 'exits']: SystemExit: 3" in flat  # fails alone, the run goes on
    values = run_values(tmp_path / "run")
    assert values[("errors", "in_place", "mlp")] is None and values[("errors", "exits", "mlp")] is None
    assert values[("errors", "noise", "mlp")] is not None and values[("errors", "clean", "mlp")] is not None
    for source in sources[1:]:
        assert values[("errors", "noise", source)] is None and values[("errors", "clean", source)] is None


def test_the_consistency_check_tells_declared_draws_from_undeclared_ones_in_composite_defenses():
    """A randomized defense may draw through the generators of several DefenseModules (the engine seeds each):
    only the top one's was reset between the two passes, so a composite was refused though it reproduces under
    its seed. Reset all of them where randomness is declared, none where it is not; torch's global generator is
    seeded differently for each pass, so a stage drawing from it fails either way, and is left as it was."""
    from rbench.contract import check_consistent
    from rbench.defense import DefendedModel, Stage
    from rbench.errors import PluginContractError
    from rbench.testing import reference_model

    class Child(DefenseModule):
        def forward(self, x):
            return (x + 0.1 * self.normal(x)).clamp(0, 1)

    class Composite(DefenseModule):
        def __init__(self):
            super().__init__()
            self.noise = Child()

        def forward(self, x):
            return self.noise(x)

    class GlobalNoise(nn.Module):
        def forward(self, x):
            return (x + 0.1 * torch.randn_like(x)).clamp(0, 1)

    def check(module: nn.Module, randomized: bool) -> str:
        stage = Stage(module, name="d", differentiable=True, randomized=randomized, trained=False,
                      approximation=None)
        before = torch.random.get_rng_state()
        try:
            check_consistent(DefendedModel([stage], reference_model(), []), reference_data()[0][:8],
                             torch.device("cpu"))
            return "ok"
        except PluginContractError as exc:
            return str(exc)
        finally:
            assert torch.equal(before, torch.random.get_rng_state())

    assert check(Composite(), randomized=True) == "ok"
    assert check(nn.Sequential(Child()), randomized=True) == "ok"
    assert "gives other images on a second pass" in check(Composite(), randomized=False)
    assert "declares its randomness but draws outside its own generators" in check(GlobalNoise(), randomized=True)
    assert "gives other images on a second pass" in check(GlobalNoise(), randomized=False)


def test_a_model_that_returns_no_logits_is_named_by_the_consistency_check():
    """A network returning (logits, features) failed the check with a bare AttributeError ('tuple' object has no
    attribute 'numel'), naming nothing."""
    from rbench.contract import check_consistent
    from rbench.errors import PluginContractError

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(784, 10)

        def forward(self, x):
            return self.lin(x.flatten(1)), x

    net = Pair().eval()
    net.rbench_plugin = "pair"
    with pytest.raises(PluginContractError, match=r"^model 'pair' is no classifier: its output on 4 inputs is a "
                       r"tuple, not logits of shape \(4, classes\)"):
        check_consistent(net, reference_data()[0][:8], torch.device("cpu"))
    nan = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Threshold(1e9, float("nan"))).eval()
    nan.rbench_plugin = "nan"  # and NaN logits are said to be so, not "outputs differ between two passes"
    with pytest.raises(PluginContractError, match=r"^model 'nan' returned non-finite logits on 4 of 4 inputs"):
        check_consistent(nan, reference_data()[0][:8], torch.device("cpu"))
