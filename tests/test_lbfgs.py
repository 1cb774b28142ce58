"""The L-BFGS attack (Szegedy et al. 2013) on a small sigmoid MLP trained on real MNIST: the batched projected
L-BFGS against scipy's L-BFGS-B under the same c-search, the engine contract, targets, determinism, the c-search."""

from __future__ import annotations

import pytest
import torch
from support import small_mnist_model

from rbench.contract import check_attack_output
from rbench.plugins import get_plugin
from rbench.plugins.attacks.lbfgs import (
    LbfgsParams,
    batched_inner,
    minimal_adversarial,
    random_targets,
    scipy_inner,
)


@pytest.fixture(scope="module")
def trained():
    """A sigmoid MLP (100 hidden units) trained for two passes over 5000 real MNIST images, and 32 test images."""
    return small_mnist_model([100], activation="sigmoid", lr=3e-3, epochs=2, n_test=32)


def _l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).norm(dim=1)


def test_batched_solver_matches_scipy_lbfgsb(trained):
    model, x, y = trained
    x, y = x[:8], y[:8]
    targets = random_targets(y, 10, torch.Generator().manual_seed(3))
    p = LbfgsParams()
    ours = minimal_adversarial(model, x, y, targets, p, batched_inner(model, p))
    ref = minimal_adversarial(model, x, y, targets, p, scipy_inner(model, p))
    assert torch.equal(ours.success, ref.success)
    assert ours.success.all()
    d_ours, d_ref = _l2(ours.x_adv, x), _l2(ref.x_adv, x)
    assert d_ours.mean() <= 1.05 * d_ref.mean()
    assert torch.equal(ours.extras["targets"], targets) and torch.equal(ref.extras["targets"], targets)


def test_outputs_respect_the_contract_and_reach_their_targets(trained):
    model, x, y = trained
    attack = get_plugin("attack", "lbfgs")
    p = attack.Params()
    out = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(1))
    check_attack_output("lbfgs", out, x, attack.budget(p), model, y, 0)  # raises on any violation
    assert attack.budget(p) is None
    targets = out.extras["targets"]
    assert targets.dtype == torch.int64 and (targets != y).all() and ((targets >= 0) & (targets < 10)).all()
    assert out.extras["c"].dtype == torch.float32 and (out.extras["c"][out.success] > 0).all()
    assert out.success.float().mean() >= 0.9
    with torch.no_grad():
        pred = model(out.x_adv).argmax(1)
    assert torch.equal(pred[out.success], targets[out.success])
    assert torch.equal(out.x_adv[~out.success], x[~out.success])  # nothing found: x itself
    again = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.x_adv, again.x_adv) and torch.equal(targets, again.extras["targets"])
    other = attack.run(model, x, y, p, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(targets, other.extras["targets"])  # targets come from the generator
    assert not any(t.grad is not None for t in model.parameters())  # no weight gradients


def test_each_target_is_no_worse_than_the_random_one(trained):
    model, x, y = trained
    x, y = x[:8], y[:8]
    attack = get_plugin("attack", "lbfgs")
    rand = attack.run(model, x, y, attack.Params(), generator=torch.Generator().manual_seed(0))
    each = attack.run(model, x, y, attack.Params(targets="each"))
    check_attack_output("lbfgs", each, x, None, model, y, 0)
    assert each.success.all()
    d_rand, d_each = _l2(rand.x_adv, x), _l2(each.x_adv, x)
    # the random target is among those "each" tries (up to float noise between batch compositions)
    assert (d_each[rand.success] <= d_rand[rand.success] * (1 + 1e-3) + 1e-4).all()
    assert d_each.mean() < d_rand.mean()


def test_c_search_minimises_the_distortion(trained):
    model, x, y = trained
    x, y = x[:16], y[:16]
    targets = random_targets(y, 10, torch.Generator().manual_seed(5))
    searched = minimal_adversarial(model, x, y, targets, LbfgsParams())
    plain = minimal_adversarial(model, x, y, targets, LbfgsParams(c_init=1e-3, c_search_steps=0, bisection_steps=0))
    both = searched.success & plain.success
    assert both.float().mean() >= 0.9
    d_s, d_p = _l2(searched.x_adv, x)[both], _l2(plain.x_adv, x)[both]
    assert (d_s <= d_p + 1e-4).all()
    assert d_s.mean() < 0.8 * d_p.mean()
    assert torch.allclose(plain.extras["c"][plain.success], torch.tensor(1e-3))
    assert (searched.extras["c"][both] > 1e-3).all()


def test_params_are_validated():
    attack = get_plugin("attack", "lbfgs")
    with pytest.raises(ValueError):
        attack.Params(c_init=0)
    with pytest.raises(ValueError):
        attack.Params(targets="all")
    with pytest.raises(ValueError):
        attack.Params(steps=10)  # extra="forbid"
