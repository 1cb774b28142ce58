"""Tests of the MI-FGSM example plugin (run them once the distribution is installed:
``pip install examples/rbench-example-mifgsm && pytest examples/rbench-example-mifgsm/tests``)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from rbench_example_mifgsm import MiFgsm
from torch import nn

from rbench import AttackOutput, Budget
from rbench.manager import build_registry, get_plugin


def _model(seed: int = 0) -> nn.Module:
    """A small random CNN in eval mode with frozen parameters, as rbench hands it to attacks."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    ).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _batch(n: int = 32, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _run(eps: float = 0.1, **params) -> tuple[AttackOutput, torch.Tensor, torch.Tensor, nn.Module]:
    attack = MiFgsm()
    model = _model()
    x, y = _batch()
    out = attack.run(model, x, y, attack.Params(eps=eps, **params))
    return out, x, y, model


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("decay", [0.0, 1.0])
def test_within_linf_budget_and_box(eps, decay):
    out, x, _, _ = _run(eps, decay=decay)
    assert out.x_adv.dtype == torch.float32 and out.x_adv.shape == x.shape
    assert (out.x_adv - x).abs().max() <= eps + 1e-6
    assert out.x_adv.min() >= 0 and out.x_adv.max() <= 1


def test_success_flags_are_left_to_rbench():
    out, _, y, model = _run(0.3)
    assert out.success is None  # rbench predicts them in one pass, instead of re-predicting flags to check them
    success = out.success_on(model, y)
    assert success.dtype == torch.bool and success.shape == y.shape
    assert success.any(), "a large budget should fool a random model on some inputs"


def test_deterministic():
    a, *_ = _run(0.1)
    b, *_ = _run(0.1)
    assert torch.equal(a.x_adv, b.x_adv)


def test_leaves_model_parameters_untouched():
    out, x, y, model = _run(0.1)
    assert all(p.grad is None for p in model.parameters())
    assert not out.x_adv.requires_grad


def test_no_momentum_equals_bim():
    """With decay 0 the velocity's sign is the gradient's sign: the built-in BIM with the same step size."""
    registry = build_registry()
    bim = registry.get("attack", "bim").obj
    model = _model()
    x, y = _batch()
    ours = MiFgsm().run(model, x, y, MiFgsm.Params(eps=0.1, steps=5, decay=0.0))
    theirs = bim.run(model, x, y, bim.Params(eps=0.1, steps=5, step_size=0.02, random_start=False))
    assert torch.allclose(ours.x_adv, theirs.x_adv)


def test_params_and_budget():
    p = MiFgsm.Params(eps=0.2)
    assert (p.steps, p.decay, p.step_size) == (10, 1.0, None)
    assert MiFgsm().budget(p) == Budget("linf", 0.2)
    for bad in ({"eps": 0}, {"eps": 1.5}, {"eps": 0.1, "steps": 0}, {"eps": 0.1, "norm": "l2"}):
        with pytest.raises(ValidationError):
            MiFgsm.Params(**bad)


def test_registered_through_the_entry_point():
    info = build_registry().get("attack", "mifgsm")
    assert isinstance(info.obj, MiFgsm)
    assert info.distribution == "rbench-example-mifgsm"


def test_conformance_kit():
    """rbench's conformance kit: budget, box, success flags, determinism, batch sizes, devices, no weight grads."""
    from rbench.testing import check_attack

    report = check_attack("mifgsm", {"eps": 0.1, "steps": 5})
    assert report.success_rate > 0.3  # a 5-step attack at eps 0.1 fools a small MLP often


def test_conformance_fixtures(rbench_reference_model, rbench_reference_data):
    """The kit's pytest plugin (entry point pytest11) provides a trained model and MNIST test images."""
    x, y = rbench_reference_data
    attack = get_plugin("attack", "mifgsm")
    out = attack.run(rbench_reference_model, x, y, attack.Params(eps=0.2), generator=torch.Generator().manual_seed(0))
    assert out.success_on(rbench_reference_model, y).float().mean() > 0.5
