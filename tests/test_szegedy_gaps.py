"""Szegedy et al. 2013 (issue 15): the ``amplify`` transform's ``scale`` readings, and the suite's variant rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rbench.plugins.transforms.amplify import Amplify, AmplifyParams

SUITE = Path(__file__).resolve().parents[1] / "suites" / "szegedy2013.toml"


def _rms(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).pow(2).mean(1).sqrt()


def _set() -> tuple[torch.Tensor, torch.Tensor]:
    """Three 4x4 images at 0.5: perturbations of RMS 0.05 (below the size), 0.2 (above it) and 0 (no adversarial)."""
    x = torch.full((3, 1, 4, 4), 0.5)
    d = torch.zeros_like(x)
    d[0] = 0.05
    d[1, 0, ::2] = 0.2
    d[1, 0, 1::2] = -0.2
    return x, x + d


def test_scale_defaults_to_each_perturbation_and_enters_the_params():
    assert AmplifyParams(size=0.1).scale == "each"
    assert AmplifyParams(size=0.1, scale="set").model_dump(mode="json")["scale"] == "set"
    with pytest.raises(ValueError):
        AmplifyParams(size=0.1, scale="all")


@pytest.mark.parametrize(("scale", "expected"), [("each", [0.1, 0.1, 0.0]),   # the large one is shrunk
                                                 ("up", [0.1, 0.2, 0.0]),     # none is shrunk
                                                 ("set", [0.04, 0.16, 0.0])])  # one factor 0.1 / 0.125
def test_scale_readings(scale: str, expected: list[float]):
    x, x_adv = _set()
    out = Amplify().apply(x, x_adv, AmplifyParams(size=0.1, scale=scale))
    assert out.dtype == torch.float32
    assert torch.allclose(_rms(out - x), torch.tensor(expected), atol=1e-6)
    d, d_out = (x_adv - x).flatten(1), (out - x).flatten(1)
    assert torch.allclose(torch.nn.functional.cosine_similarity(d[:2], d_out[:2]), torch.ones(2))  # same direction


def test_set_scale_still_clips_to_the_box():
    x = torch.full((2, 1, 2, 2), 0.95)
    x_adv = x.clone()
    x_adv[0] = 1.0   # RMS 0.05
    x_adv[1] = 0.9   # RMS 0.05, downwards
    out = Amplify().apply(x, x_adv, AmplifyParams(size=0.1, scale="set"))  # factor 2
    assert torch.allclose(out[0], torch.ones_like(out[0]))                  # 0.95 + 0.1 clipped to 1
    assert torch.allclose(out[1], torch.full_like(out[1], 0.85))


def test_suite_variants_sit_beside_the_original_rows():
    from rbench.plan import build_plan
    from rbench.suite import load_suite

    plan = build_plan(load_suite(SUITE, "quick"))
    specs = {name: plan.jobs[key].spec.trainer.params for name, key in plan.trained.items()
             if name.startswith("AE400-10")}
    assert specs["AE400-10"]["sparsity_weight"] == 0.1 and specs["AE400-10"]["ae_weight_decay"] == 1e-6
    assert specs["AE400-10-ufldl"]["sparsity_weight"] == 6.0 and specs["AE400-10-ufldl"]["ae_weight_decay"] == 6e-3
    amplified = {plan.jobs[plan.attacked[("test_adv", "M1", a)]].spec.transform.params.get("scale", "each")
                 for a in ("lbfgs_amplified", "lbfgs_amplified_set")}
    assert amplified == {"each", "set"}


def test_the_gaps_example_draws_its_noise_images_as_the_suite_does():
    """examples/szegedy_gaps.py noise: 1000 training and 1000 test images, otherwise the suite's train_noise slice
    (it once built the slice as a dict after slices became dataclasses, and crashed before printing anything)."""
    import importlib.util

    from rbench.inputs import load_slice
    from rbench.plan import build_plan, data_spec
    from rbench.suite import load_suite

    path = SUITE.parents[1] / "examples" / "szegedy_gaps.py"
    module_spec = importlib.util.spec_from_file_location("szegedy_gaps", path)
    assert module_spec is not None and module_spec.loader is not None
    example = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(example)
    plan = build_plan(load_suite(SUITE, "quick"))
    suite_slice = data_spec(plan.suite.evaluations["train_noise"].data, plan.suite.seed)
    slices = example.noise_slices(plan)
    assert sorted(slices) == ["test", "train"]
    for split, data in slices.items():
        assert (data.split, data.n, data.dataset, data.subset_seed) == (split, 1000, suite_slice.dataset,
                                                                       suite_slice.subset_seed)
        x, y, _ = load_slice(data)
        assert x.shape == (1000, 1, 28, 28) and y.shape == (1000,)
