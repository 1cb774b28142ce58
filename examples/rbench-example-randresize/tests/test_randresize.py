"""Tests of the random-resize-and-pad example defense (run them once the distribution is installed:
``pip install examples/rbench-example-randresize && pytest examples/rbench-example-randresize/tests``)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from rbench_example_randresize import RandomResizePad, RandomResizePadModule

from rbench.defense import seed_randomness
from rbench.manager import build_registry
from rbench.testing import check_defense


def _module(max_size: int = 32) -> RandomResizePadModule:
    defense = RandomResizePad()
    return defense.build(defense.Params(max_size=max_size))


def test_conformance_kit():
    """rbench's conformance kit: dtype, shape, box, seeded determinism, randomized and differentiable as
    declared, the same draws on CUDA as on the CPU (when a GPU is visible)."""
    for params in ({}, {"max_size": 36}):
        report = check_defense("random_resize_pad", params)
        assert report.randomized and report.differentiable
        assert 0 < report.mean_change < 0.5


def test_conformance_fixtures(rbench_reference_data):
    x, _ = rbench_reference_data
    out = _module()(x)
    assert out.shape == x.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1


def test_max_size_of_the_input_is_the_identity():
    """r = 28 and no room to pad: bilinear resizing to the same size changes nothing."""
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(_module(28)(x), x, atol=1e-6)


def test_each_image_gets_its_own_draw():
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)).repeat(64, 1, 1, 1)
    module = _module()
    seed_randomness(module, 0)
    out = module(x)
    assert len({tuple(o.flatten()[:200].tolist()) for o in out}) > 10


def test_draws_only_from_its_own_generator():
    module = _module()
    x = torch.rand(4, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    state = torch.random.get_rng_state()
    seed_randomness(module, 5)
    a = module(x)
    seed_randomness(module, 5)
    b = module(x)
    assert torch.equal(torch.random.get_rng_state(), state), "touched torch's global generator"
    assert torch.equal(a, b) and a.shape == x.shape


def test_params():
    assert RandomResizePad.Params().max_size == 32
    for bad in ({"max_size": 0}, {"max_size": 32.5}, {"size": 32}):
        with pytest.raises(ValidationError):
            RandomResizePad.Params.model_validate(bad, strict=True)
    with pytest.raises(ValueError, match="smaller than the inputs"):
        _module(20)(torch.zeros(1, 1, 28, 28))


def test_registered_through_the_entry_point():
    info = build_registry().get("defense", "random_resize_pad")
    assert isinstance(info.obj, RandomResizePad)
    assert info.distribution == "rbench-example-randresize"
    assert info.version.split("+")[0] == "0.1.0"  # keyed with +files.<digest> of the install (+src. if editable)
