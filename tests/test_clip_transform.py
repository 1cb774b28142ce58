"""The ``clip`` transform: projecting minimal perturbations onto a budget reproduces foolbox's per-epsilon runs of
its minimization attacks, so one stored minimal set serves a whole epsilon grid."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("foolbox")

from rbench.plugins import get_plugin  # noqa: E402
from rbench.testing import reference_data, reference_model  # noqa: E402


def _run(params, model, x, y, seed=0):
    plugin = get_plugin("attack", "foolbox")
    p = plugin.Params.model_validate(params, strict=True)
    return plugin.run(model, x, y, p, generator=torch.Generator().manual_seed(seed)).x_adv


def _clip(x, x_adv, eps, norm):
    plugin = get_plugin("transform", "clip")
    return plugin.apply(x, x_adv, plugin.Params.model_validate({"eps": eps, "norm": norm}, strict=True))


@pytest.fixture(scope="module")
def setup():
    model = reference_model().eval().requires_grad_(False)
    x, y = reference_data(64)
    return model, x, y


@pytest.mark.parametrize("attack", [{"attack": "L2DeepFoolAttack", "kwargs": {"steps": 20}},
                                    {"attack": "SaltAndPepperNoiseAttack", "kwargs": {"steps": 20}}])
def test_clipping_the_minimal_set_equals_foolbox_run_per_epsilon(setup, attack):
    model, x, y = setup
    minimal = _run(attack, model, x, y)
    for eps in (0.3, 1.5, 10.0):
        direct = _run({**attack, "epsilon": eps}, model, x, y)
        clipped = _clip(x, minimal, eps, "l2")
        assert torch.allclose(clipped, direct, atol=1e-6), eps
        assert (clipped - x).flatten(1).norm(dim=1).max() <= eps * (1 + 1e-5) + 1e-5


def test_linf_clip_and_no_op_when_inside():
    x = torch.full((2, 1, 2, 2), 0.5)
    x_adv = x + torch.tensor([0.3, -0.05]).view(2, 1, 1, 1)
    out = _clip(x, x_adv, 0.1, "linf")
    assert torch.allclose(out[0], x[0] + 0.1) and torch.allclose(out[1], x_adv[1])
    assert torch.equal(_clip(x, x_adv, 10.0, "l2"), x_adv)  # within the ball: unchanged


def test_params_are_validated():
    plugin = get_plugin("transform", "clip")
    with pytest.raises(ValueError):
        plugin.Params.model_validate({"eps": -1.0}, strict=True)
    with pytest.raises(ValueError):
        plugin.Params.model_validate({"eps": 1.0, "norm": "l1"}, strict=True)
