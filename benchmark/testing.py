"""The conformance kit for attack-plugin authors (also a pytest plugin, registered as ``pytest11: rbench``).

``check_attack(name, params)`` runs an installed attack plugin the way the engine does and asserts that it

1. returns float32 inputs of the right shape inside the [0, 1] box, within its declared norm budget, with
   success flags that match the model's own predictions (the engine's contract check);
2. is deterministic under a seeded generator;
3. gives the same result at different batch sizes (success rate and mean distortion within tolerance);
4. gives the same result on CUDA as on the CPU, when a CUDA device is visible;
5. computes no gradients of the model's weights.

In a plugin's own tests::

    from rbench.testing import check_attack

    def test_conformance():
        check_attack("mifgsm", {"eps": 0.1})

or with the fixtures of the pytest plugin: ``rbench_reference_model`` (a small MLP trained on 2000 real MNIST
images) and ``rbench_reference_data`` (128 MNIST test images and labels). The MNIST files come from
``RBENCH_DATA``, the cache, or a checksummed download (see :mod:`rbench.data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from rbench.data import load_split
from rbench.jobs import check_attack_output
from rbench.manager import get_plugin


@cache
def reference_model() -> torch.nn.Module:
    """A small ReLU MLP (784-64-10) trained for two epochs on 2000 MNIST training images (seeded; CPU)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        images, labels = load_split("mnist", "train")
        x = torch.tensor(images[:2000].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
        y = torch.tensor(labels[:2000])
        plugin = get_plugin("model", "mlp")
        model = plugin.build(plugin.Params(widths=[64]))
        opt = torch.optim.Adam(model.parameters(), 3e-3)
        for _ in range(2):
            for i in range(0, len(x), 50):
                opt.zero_grad()
                F.cross_entropy(model(x[i:i + 50]), y[i:i + 50]).backward()
                opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval().requires_grad_(False)


@cache
def reference_data(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` MNIST test images (float32 (n, 1, 28, 28) in [0, 1]) and labels."""
    images, labels = load_split("mnist", "test")
    return torch.tensor(images[:n].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255, torch.tensor(labels[:n])


@dataclass
class Report:
    """What :func:`check_attack` measured (returned for the author's own assertions)."""

    success_rate: float
    mean_l2: float
    by_batch_size: dict[int, tuple[float, float]]
    by_device: dict[str, tuple[float, float]]


def _run(attack: Any, params: Any, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
         device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The attack over ``x`` in batches, as the engine runs it (one seeded generator for the whole set)."""
    model = model.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    budget = attack.budget(params)
    adv, success = [], []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        out = attack.run(model, xb, yb, params, generator=generator)
        check_attack_output(attack.name, out, xb, budget, model, yb, start)
        adv.append(out.x_adv.detach().cpu())
        success.append(out.success.detach().cpu().bool())
    model.to("cpu")
    return torch.cat(adv), torch.cat(success)


def _summary(x: torch.Tensor, x_adv: torch.Tensor, success: torch.Tensor) -> tuple[float, float]:
    return float(success.float().mean()), float((x_adv - x).flatten(1).norm(dim=1).mean())


def check_attack(name: str, params: dict[str, Any] | Any, *, model: torch.nn.Module | None = None,
                 x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                 batch_sizes: tuple[int, ...] = (128, 32, 7), seed: int = 0, rate_tol: float = 0.05,
                 distortion_rtol: float = 0.05) -> Report:
    """Assert the conformance of the installed attack plugin ``name`` with ``params`` (a dict or its Params).

    ``model``/``x``/``y`` default to :func:`reference_model` and :func:`reference_data`. Batch sizes and devices
    must agree within ``rate_tol`` (absolute, on the success rate) and ``distortion_rtol`` (relative, on the
    mean L2 distortion). Raises ``AssertionError`` (or the engine's ``PluginContractError``) naming the problem.
    """
    attack = get_plugin("attack", name)
    params = params if not isinstance(params, dict) else attack.Params.model_validate(params, strict=True)
    model = model if model is not None else reference_model()
    if x is None or y is None:
        x, y = reference_data()
    model.eval().requires_grad_(False)
    first_adv, first_success = _run(attack, params, model, x, y, batch_sizes[0], "cpu", seed)
    again_adv, again_success = _run(attack, params, model, x, y, batch_sizes[0], "cpu", seed)
    assert torch.equal(first_adv, again_adv) and torch.equal(first_success, again_success), (
        f"attack {name!r} is not deterministic under a seeded generator")
    assert all(p.grad is None for p in model.parameters()), f"attack {name!r} computed weight gradients"
    base = _summary(x, first_adv, first_success)
    by_batch = {batch_sizes[0]: base}
    for bs in batch_sizes[1:]:
        by_batch[bs] = _summary(x, *_run(attack, params, model, x, y, bs, "cpu", seed))
        _agree(name, f"batch size {bs} vs {batch_sizes[0]}", base, by_batch[bs], rate_tol, distortion_rtol)
    by_device = {"cpu": base}
    if torch.cuda.is_available():
        by_device["cuda"] = _summary(x, *_run(attack, params, model, x, y, batch_sizes[0], "cuda", seed))
        _agree(name, "cuda vs cpu", base, by_device["cuda"], rate_tol, distortion_rtol)
    return Report(base[0], base[1], by_batch, by_device)


def _agree(name: str, what: str, a: tuple[float, float], b: tuple[float, float], rate_tol: float,
           distortion_rtol: float) -> None:
    assert abs(a[0] - b[0]) <= rate_tol, (
        f"attack {name!r}: success rate differs with {what}: {b[0]:.3f} vs {a[0]:.3f} (tolerance {rate_tol})")
    assert abs(a[1] - b[1]) <= distortion_rtol * max(a[1], 1e-12), (
        f"attack {name!r}: mean L2 distortion differs with {what}: {b[1]:.4g} vs {a[1]:.4g}")


# -- pytest plugin -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def rbench_reference_model() -> torch.nn.Module:
    """A small MLP trained on real MNIST, in eval mode with frozen parameters (as attacks receive models)."""
    return reference_model()


@pytest.fixture(scope="session")
def rbench_reference_data() -> tuple[torch.Tensor, torch.Tensor]:
    """128 MNIST test images (float32 (N, 1, 28, 28) in [0, 1]) and their labels."""
    return reference_data()
