"""Built-in attacks on a small model trained on real MNIST: budgets, box, success flags, determinism, strength."""

from __future__ import annotations

import pytest
import torch
from support import small_mnist_model

from rbench.contract import check_attack_output
from rbench.plugins import get_plugin
from rbench.plugins.attacks.gradients import project, random_in_ball


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained for one pass over 5000 real MNIST images, and 200 test images."""
    return small_mnist_model([64])


def _attack(name: str, **params):
    plugin = get_plugin("attack", name)
    return plugin, plugin.Params(**params)


CASES = [
    ("fgsm", {"eps": 0.1}), ("fgv", {"eps": 0.1}),
    ("pgd", {"eps": 0.1, "steps": 10}), ("pgd", {"norm": "l2", "eps": 1.5, "steps": 10}),
    ("bim", {"eps": 0.1}), ("gaussian_noise", {"norm": "l2", "eps": 3.0}),
    ("gaussian_noise", {"norm": "linf", "eps": 0.3}), ("gaussian_noise", {"sigma": 0.2}),
]


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_outputs_respect_the_contract(trained, name, params):
    model, x, y = trained
    attack, p = _attack(name, **params)
    out = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(1))
    check_attack_output(name, out, x, attack.budget(p), model, y, 0)  # raises on any violation
    again = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.x_adv, again.x_adv)  # deterministic under a seed
    assert not any(t.grad is not None for t in model.parameters())  # no weight gradients


def test_attacks_are_stronger_than_noise_and_pgd_beats_fgsm(trained):
    model, x, y = trained
    rate = {}
    for name, params in [("fgsm", {"eps": 0.1}), ("pgd", {"eps": 0.1, "steps": 20}),
                         ("gaussian_noise", {"norm": "linf", "eps": 0.1})]:
        attack, p = _attack(name, **params)
        out = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(0))
        rate[name] = out.success_on(model, y).float().mean()
    assert rate["gaussian_noise"] < rate["fgsm"] <= rate["pgd"]
    assert rate["pgd"] > 0.5


def test_fixed_budget_attacks_reach_their_budget(trained):
    model, x, y = trained
    attack, p = _attack("fgsm", eps=0.1)
    delta = (attack.run(model, x, y, p).x_adv - x).abs().flatten(1).amax(1)
    assert torch.allclose(delta, torch.full_like(delta, 0.1), atol=1e-6)  # every image has a pixel < 0.9
    attack, p = _attack("gaussian_noise", sigma=0.1)
    assert attack.budget(p) is None


def test_budget_violation_is_reported_with_the_worst_sample(trained):
    from rbench.attack import AttackOutput, Budget
    from rbench.inputs import PluginContractError

    model, x, y = trained
    x_adv = x.clone()
    x_adv[7] = (x_adv[7] + 0.5).clamp(0, 1)
    with pytest.raises(PluginContractError, match=r"'bad' exceeds its declared linf budget 0.1: sample 17"):
        check_attack_output("bad", AttackOutput(x_adv, model(x_adv).argmax(1) != y), x, Budget("linf", 0.1),
                            model, y, offset=10)
    with pytest.raises(PluginContractError, match="success flags disagree"):
        check_attack_output("bad", AttackOutput(x, torch.ones(len(x), dtype=torch.bool)), x, None, model, y, 0)
    with pytest.raises(PluginContractError, match="float32"):
        check_attack_output("bad", AttackOutput(x.double(), torch.zeros(len(x), dtype=torch.bool)), x, None,
                            model, y, 0)


def test_ball_geometry():
    g = torch.Generator().manual_seed(0)
    like = torch.zeros(500, 1, 4, 4)
    for norm, eps in (("linf", 0.3), ("l2", 2.0)):
        d = random_in_ball(like, norm, eps, g).flatten(1)
        size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        assert (size <= eps + 1e-6).all() and size.max() > 0.9 * eps
    big = torch.randn(10, 1, 4, 4) * 10
    assert torch.allclose(project(big, "l2", 1.0).flatten(1).norm(dim=1), torch.ones(10), atol=1e-5)
    small = torch.full((2, 1, 2, 2), 0.01)
    assert torch.equal(project(small, "l2", 1.0), small)


def test_noise_params_need_one_mode():
    from pydantic import ValidationError

    params = get_plugin("attack", "gaussian_noise").Params
    for bad in ({}, {"sigma": 0.1, "eps": 1.0, "norm": "l2"}, {"eps": 1.0}, {"norm": "l2"}):
        with pytest.raises(ValidationError):
            params(**bad)


def test_extras_and_success_of_the_wrong_kind_are_the_attack_s_contract_error(trained):
    """Caught where the attack ran, naming it: extras of another length were stored and failed a later eval job
    that named the model; a list or an array of flags was an engine-internal error."""
    from rbench.attack import AttackOutput
    from rbench.inputs import PluginContractError

    model, x, y = trained
    flags = model(x).argmax(1) != y
    for extras, shown in (({"steps": torch.ones(len(x) - 1)}, rf"extras\['steps'\] Tensor of shape \({len(x) - 1},\)"),
                          ({"steps": [1] * len(x)}, r"extras\['steps'\] list;"),
                          ({"steps": torch.tensor(3.0)}, r"extras\['steps'\] Tensor of shape \(\);")):
        with pytest.raises(PluginContractError, match=rf"^attack 'bad' returned {shown}.*one row per sample"):
            check_attack_output("bad", AttackOutput(x, flags, extras), x, None, model, y, 0)
    with pytest.raises(PluginContractError, match=r"^attack 'bad' returned success ndarray of shape \(200,\)"):
        check_attack_output("bad", AttackOutput(x, flags.numpy()), x, None, model, y, 0)  # type: ignore[arg-type]
    check_attack_output("good", AttackOutput(x, flags, {"steps": torch.ones(len(x), dtype=torch.int32)}), x, None,
                        model, y, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                                   torch.int8, torch.bool, torch.complex64])
def test_the_model_guard_compares_bits(dtype):
    """Any changed bit is a change (a sign flip of 0.0 too, which ``==`` misses) and the same bits are not (a NaN
    left as it was, which ``torch.equal`` calls changed), whatever the dtype, on strided tensors too."""
    from rbench.contract import _same_bits

    base = (torch.arange(24, dtype=torch.float64).reshape(4, 6) - 3).to(dtype)
    strided = base.t()
    assert _same_bits(strided, strided.clone()) and not _same_bits(base, base[:3])
    if dtype == torch.bool:
        changed = base.clone()
        changed[3, 5] = ~changed[3, 5]
        assert not _same_bits(base, changed)
        return
    flipped = base.clone()
    flipped.reshape(-1)[3] = -flipped.reshape(-1)[3]  # element 3 is 0: -0.0 for floats, the same 0 for integers
    assert _same_bits(base, flipped) == (not (dtype.is_floating_point or dtype.is_complex))
    changed = base.clone()
    changed.reshape(-1)[-1] += 1
    assert not _same_bits(base, changed) and not _same_bits(base.t(), changed.t())
    if dtype.is_floating_point:
        nan = base.clone()
        nan[0, 0] = float("nan")
        assert _same_bits(nan, nan.clone())


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_the_model_guard_compares_quantized_tensors_and_lazy_views():
    """A byte view of a quantized tensor crashed torch, and conjugate or negative views cannot be viewed at all:
    a quantized weight compares by its integers and their scale, a lazy view by what it stands for."""
    from rbench.contract import _same_bits

    values = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    q = torch.quantize_per_tensor(values, 0.1, 3, torch.qint8)
    assert _same_bits(q, q.clone())
    assert not _same_bits(q, torch.quantize_per_tensor(q.dequantize(), 0.2, 3, torch.qint8))  # other scale
    assert not _same_bits(q, torch.quantize_per_tensor(values + 1, 0.1, 3, torch.qint8))
    channel = torch.quantize_per_channel(values, torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 1, 2]), 1,
                                         torch.quint8)
    assert _same_bits(channel, channel.clone()) and not _same_bits(channel, q)
    z = torch.complex(values, values.flip(0))
    assert _same_bits(z.conj(), z.conj().clone()) and not _same_bits(z.conj(), z)
    assert _same_bits(z.conj().imag, -z.imag) and not _same_bits(z.conj().imag, z.imag)


def test_a_plugin_that_changes_the_model_it_attacks_is_caught():
    """The success flags are re-predicted with the same model object: an attack that zeroes the weights (or
    switches the model to training mode) and claims success would vouch for itself."""
    from rbench.contract import ModelGuard
    from rbench.inputs import PluginContractError

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Dropout(0.5)).eval()
    guard = ModelGuard(model)
    guard.check("attack 'fine'")
    model[1].weight.requires_grad_(False).zero_()
    with pytest.raises(PluginContractError, match=r"^attack 'zeroes' changed the model it attacks \('1.weight' "
                                                  r"and 0 more tensors\)"):
        guard.check("attack 'zeroes'")
    norm = torch.nn.BatchNorm1d(3).eval()
    norm.running_var[0] = float("nan")  # a NaN buffer left as it was is not a change (torch.equal says it is)
    ModelGuard(norm).check("attack 'fine'")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Dropout(0.5)).eval()
    guard = ModelGuard(model)
    model.train()
    with pytest.raises(PluginContractError, match="left the model it attacks in another train/eval mode"):
        guard.check("attack 'trains'")


def test_dead_gradient_rows_are_the_zero_and_non_finite_ones():
    from rbench.contract import _dead_rows

    nan, inf = float("nan"), float("inf")
    grad = torch.tensor([[0.0, 1e-30, 0.0], [0.0, -0.0, 0.0], [1.0, nan, 0.0], [nan, nan, nan], [1.0, -inf, 2.0],
                         [-3.0, 0.5, 1.0]]).view(6, 1, 3)
    assert _dead_rows(grad, 6).tolist() == [False, True, True, True, True, False]
    assert _dead_rows(None, 2).tolist() == [True, True]


class _CountedBackward(torch.nn.Module):
    """``scale`` times a linear map of the input, optionally rounded first; counts its backward passes."""

    def __init__(self, scale: float = 1.0, rounded: bool = False):
        super().__init__()
        self.linear, self.scale, self.rounded, self.backward_passes = torch.nn.Linear(12, 10), scale, rounded, 0
        self.linear.register_full_backward_hook(lambda *_: setattr(self, "backward_passes", self.backward_passes + 1))

    def forward(self, x):
        x = x.flatten(1)
        return self.scale * self.linear(torch.round(x) if self.rounded else x)


@pytest.mark.parametrize(("scale", "rounded", "loss", "of", "passes"), [
    (1.0, False, "ce", None, 1),  # the cross-entropy's gradient is alive: the logits' cannot be dead
    (1.0, False, "margin", None, 1), (1.0, False, None, None, 1),
    (1e6, False, "ce", "cross-entropy", 2),  # saturated softmax: the logits pass gradients, the loss does not
    (1e6, False, "margin", None, 1),
    (1.0, True, "ce", "logits", 2), (1.0, True, "margin", "logits", 1),
])
def test_the_masking_probe_names_what_is_dead_and_backpropagates_once_where_the_loss_is_alive(
        scale, rounded, loss, of, passes):
    from rbench.contract import MASKING_PROBE, check_input_gradients
    from rbench.inputs import PluginContractError

    torch.manual_seed(0)
    model = _CountedBackward(scale, rounded).eval().requires_grad_(False)
    x = torch.rand(MASKING_PROBE, 1, 3, 4)
    y = model(x).argmax(1)  # the model's own answers: saturated, its softmax is exactly their one-hot
    if of is None:
        check_input_gradients(model, x, y, "model 'm'", loss)
    else:
        with pytest.raises(PluginContractError, match=rf"^gradient masking in model 'm': the input gradient of its "
                                                      rf"{of} is zero, missing or not finite on \d+ of 64 inputs"):
            check_input_gradients(model, x, y, "model 'm'", loss)
    assert model.backward_passes == passes


def test_a_vanishing_gradient_still_takes_a_full_step():
    """fgv and L2 pgd divided each sample's gradient by max(norm, 1e-12): on a saturated softmax, whose input
    gradient is tiny but not zero, their step shrank to almost nothing (an audit: fgv's robust accuracy 48.7%
    against 38.7% on a model with logits x10). They now step as far as on any gradient; a zero gradient moves
    nothing, and the others divide as before, to the bit. Only their keys changed (pgd's L2 calls alone)."""
    from rbench.plugins.attacks.gradients import l2_normalize

    g = torch.zeros(3, 1, 4, 4)
    g[0, 0, 0, :2] = torch.tensor([3e-25, 4e-25])  # its squares underflow float32: norm() gives 0
    g[1] = torch.randn(1, 4, 4)
    unit = l2_normalize(g)
    assert g[0].norm() == 0 and torch.allclose(unit[0, 0, 0, :2], torch.tensor([0.6, 0.8]))
    assert torch.equal(unit[1], g[1] / g[1].flatten().norm()) and torch.equal(unit[2], torch.zeros(1, 4, 4))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        model[1].weight.mul_(0).add_(torch.randn(3, 16) * 0.01)
        model[1].bias.copy_(torch.tensor([60.0, 0.0, 0.0]))  # class 0 at a softmax of 1 - 1e-26
    model.eval().requires_grad_(False)
    x, y = torch.full((2, 1, 4, 4), 0.5), torch.zeros(2, dtype=torch.long)
    fgv = get_plugin("attack", "fgv")
    moved = fgv.run(model, x, y, fgv.Params(eps=0.1)).x_adv - x
    assert torch.allclose(moved.flatten(1).abs().amax(1), torch.tensor([0.1, 0.1]))  # was ~1e-15
    pgd = get_plugin("attack", "pgd")
    params = pgd.Params(eps=0.6, norm="l2", steps=2, step_size=0.3)
    moved = pgd.run(model, x, y, params).x_adv - x
    assert torch.allclose(moved.flatten(1).norm(dim=1), torch.tensor([0.6, 0.6]), atol=1e-5)  # was ~1e-15
    from rbench.manager import call_version, get_registry

    version = get_registry().get("attack", "pgd").version
    assert call_version(pgd, version, pgd.Params(eps=0.1)) == version  # Linf: its stored sets keep their keys
    assert call_version(pgd, version, params) == f"{version}~rev.l2-unit-step.2"
    assert call_version(fgv, version, fgv.Params(eps=0.1)) == f"{version}~rev.unit-step.2"
