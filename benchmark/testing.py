"""The conformance kit for attack- and defense-plugin authors (also a pytest plugin, registered as
``pytest11: rbench``).

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

``check_defense(name, params)`` builds an installed defense plugin's module (see :mod:`rbench.defense`; an
aggregating defense is composed of two reference models, or of the given ``members``; a trained one is checked
untrained) and asserts, on the reference MNIST images, that

1. its output is float32, finite, of the input's shape and inside [0, 1] (an aggregating defense's: finite
   float32 logits, one row per input), and the input is left unchanged;
2. it is deterministic under a seed: :func:`rbench.defense.seed_randomness` twice with one seed gives the same
   output;
3. ``is_randomized(params)`` is truthful: a randomized defense's output changes with the seed, a deterministic
   one's does not (so every random number must come through :meth:`DefenseModule.normal` / ``uniform``);
4. ``is_differentiable(params)`` is truthful for a differentiable defense: a random projection of the output
   back-propagates finite, non-zero gradients to the input;
5. a non-differentiable defense's BPDA ``approximation(params)``, if it has one, maps inputs to outputs of their
   shape (finite float32) and passes finite, non-zero input gradients; and the defense under BPDA (a
   :class:`rbench.defense.Stage` with ``bpda`` on, as the engine attacks through it) gives its own output forward
   and finite, non-zero input gradients backward;
6. a trained defense has weights to train;
7. on CUDA (when a GPU is visible) the output equals the CPU's under the same seed (within 2e-3: cuDNN's
   default TF32 convolutions round to 10-bit mantissas), as the engine's seeding promises.

In a defense plugin's tests::

    from rbench.testing import check_defense

    def test_conformance():
        check_defense("random_resize_pad", {"max_size": 32})

``check_metric(name, params)`` computes a metric plugin on a clean and an attacked cell of the reference model
and asserts its values are ones a table can hold, it is a pure function of the cell, and it changes no output
(see :mod:`rbench.metric_kit`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from rbench.attack import attack_problem, is_generator, resolved_params
from rbench.attack_loop import attack_in_batches, slice_batches
from rbench.data import load_split
from rbench.defense import Defense, Stage, seed_randomness
from rbench.errors import PluginContractError
from rbench.inputs import memory_format
from rbench.manager import get_plugin
from rbench.metric_kit import MetricReport, check_metric
from rbench.suite_schema import validate_params

__all__ = ["DefenseReport", "MetricReport", "Report", "check_attack", "check_defense", "check_metric",
           "reference_data", "reference_model"]


@cache
def reference_model(seed: int = 0) -> torch.nn.Module:
    """A small ReLU MLP (784-64-10) trained for two epochs on 2000 MNIST training images (seeded by ``seed``;
    CPU)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
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


def reference_data(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` MNIST test images (float32 (n, 1, 28, 28) in [0, 1]) and labels: fresh copies each call, so
    that a plugin (or a test) writing into them changes no later check's inputs."""
    x, y = _reference_data(n)
    return x.clone(), y.clone()


@cache
def _reference_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    # torch's stubs lack Module.to's memory_format keyword, which torch accepts
    model = model.to(device, memory_format=memory_format(model))  # type: ignore[call-overload]
    generator = torch.Generator(device=device).manual_seed(seed)
    one_batch = slice_batches(attack, params, model, model, x, y, device=device, generator=generator)
    done = attack_in_batches(len(x), batch_size, one_batch, generator=generator)
    model.to("cpu")
    return done.x_adv, done.success


def _summary(x: torch.Tensor, x_adv: torch.Tensor, success: torch.Tensor) -> tuple[float, float]:
    return float(success.float().mean()), float((x_adv - x).flatten(1).norm(dim=1).mean())


def check_attack(name: str, params: dict[str, Any] | Any, *, model: torch.nn.Module | None = None,
                 x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                 batch_sizes: tuple[int, ...] = (128, 32, 7), seed: int = 0, rate_tol: float = 0.05,
                 distortion_rtol: float = 0.05) -> Report:
    """Assert the conformance of the installed attack plugin ``name`` with ``params`` (a dict or its Params).

    ``model``/``x``/``y`` default to :func:`reference_model` and :func:`reference_data`. Batch sizes and devices
    must agree within ``rate_tol`` (absolute, on the success rate) and ``distortion_rtol`` (relative, on the
    mean L2 distortion); an attack declaring ``batch_invariant`` (the default) must also give each sample the same
    output at every batch size, up to float rounding (:data:`BATCH_SAMPLE_RTOL`). What ``resolved_params`` says
    must be what the attack runs with: run with those values written in, it gives the same outputs. Raises
    ``AssertionError`` (or the engine's ``PluginContractError``) naming the problem.
    """
    attack = get_plugin("attack", name)
    if is_generator(attack):  # no clean inputs to perturb: the engine's own checks cover it (tests/test_nguyen.py)
        raise TypeError(f"attack {name!r} is a generator (rbench.GeneratorAttack): check_attack checks attacks on "
                        "data; run a generator through a suite, whose jobs check every output")
    params = params if not isinstance(params, dict) else validate_params(attack.Params, params, f"attack {name!r}")
    problem = attack_problem(attack, params)  # what a suite refuses before any work (rbench.suite), refused alike
    if problem is not None:
        raise PluginContractError(f"attack {name!r} {problem}")
    resolved = resolved_params(attack, params)
    # a copy: neither the cached reference model nor the caller's is changed by a plugin that fails a check
    model = copy.deepcopy(model if model is not None else reference_model())
    if x is None or y is None:
        x, y = reference_data()
    model.eval().requires_grad_(False)
    first_adv, first_success = _run(attack, params, model, x, y, batch_sizes[0], "cpu", seed)
    again_adv, again_success = _run(attack, params, model, x, y, batch_sizes[0], "cpu", seed)
    assert torch.equal(first_adv, again_adv) and torch.equal(first_success, again_success), (
        f"attack {name!r} is not deterministic under a seeded generator: draw every random number from the "
        "generator run() is given (not torch's global RNG, numpy's or Python's)")
    assert all(p.grad is None for p in model.parameters()), f"attack {name!r} computed weight gradients"
    if resolved:  # the values the reports print must be the ones the attack runs with
        written = _run(attack, params.model_copy(update=resolved), model, x, y, batch_sizes[0], "cpu", seed)
        assert torch.equal(first_adv, written[0]) and torch.equal(first_success, written[1]), (
            f"attack {name!r}: run with its resolved_params written in ({_brief(resolved)}) it gives other outputs "
            "than with them unset: the reports would print values it did not use")
    base = _summary(x, first_adv, first_success)
    by_batch = {batch_sizes[0]: base}
    invariant = getattr(attack, "batch_invariant", None)
    per_sample = not callable(invariant) or bool(invariant(params))
    for bs in batch_sizes[1:]:
        adv, success = _run(attack, params, model, x, y, bs, "cpu", seed)
        by_batch[bs] = _summary(x, adv, success)
        what = f"batch size {bs} vs {batch_sizes[0]}"
        _agree(name, what, base, by_batch[bs], rate_tol, distortion_rtol)
        if per_sample:
            _same_samples(name, what, x, first_adv, adv)
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


#: the largest median, over samples, of how far a sample moves at another batch size, relative to its perturbation,
#: that :func:`check_attack` takes for float rounding (iterated attacks amplify it: l-bfgs's median is 3e-7; random
#: draws that follow the batches move the median sample by a quarter of its perturbation, pgd's L2 start)
BATCH_SAMPLE_RTOL = 1e-3


def _same_samples(name: str, what: str, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """An attack declaring itself batch-invariant gives each sample the same output at another batch size (up to
    float rounding, :data:`BATCH_SAMPLE_RTOL`): else the store would serve a set made at one batch size to a suite
    asking for another, which computes other samples."""
    moved = (b - a).flatten(1).norm(dim=1) / (a - x).flatten(1).norm(dim=1).clamp_min(1e-12)
    median = float(moved.median())
    assert median <= BATCH_SAMPLE_RTOL, (
        f"attack {name!r} changes its samples with {what}: the median sample moves by {median:.3g} of its "
        "perturbation (float rounding: under 1e-3): its random draws follow the batches; draw them so that the "
        "batches do not matter, or declare batch_invariant(params) False (its batch size then enters its job key)")


def _brief(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


@dataclass
class DefenseReport:
    """What :func:`check_defense` measured (returned for the author's own assertions): the module's ``output`` on
    the inputs (first seed), and for an input transform the mean absolute change it makes to a pixel."""

    output: torch.Tensor
    mean_change: float | None
    randomized: bool
    differentiable: bool


def check_defense(name: str, params: dict[str, Any] | Any, *, members: list[torch.nn.Module] | None = None,
                  x: torch.Tensor | None = None, seeds: tuple[int, int] = (0, 1), cuda_atol: float = 2e-3
                  ) -> DefenseReport:
    """Assert the conformance of the installed defense plugin ``name`` with ``params`` (a dict or its Params).

    ``x`` defaults to the inputs of :func:`reference_data`. An aggregating defense is composed of ``members``
    (default: :func:`reference_model` and a second one trained from another seed; copies, so the cached models
    are never touched). ``seeds``: two different seeds for :func:`rbench.defense.seed_randomness`; ``cuda_atol``:
    the largest CUDA-vs-CPU difference allowed. Raises ``AssertionError`` naming the problem (see the module
    docstring for the checks).
    """
    defense = get_plugin("defense", name)
    assert isinstance(defense, Defense), f"defense {name!r} is not an rbench.defense.Defense"
    params = params if not isinstance(params, dict) else validate_params(defense.Params, params, f"defense {name!r}")
    what = f"defense {name!r}"
    randomized, differentiable = bool(defense.is_randomized(params)), bool(defense.is_differentiable(params))
    x = (x if x is not None else reference_data()[0]).detach()
    assert seeds[0] != seeds[1], "check_defense needs two different seeds"
    with torch.random.fork_rng():  # a trained defense's initial weights: the same at every check
        torch.manual_seed(seeds[0])
        if defense.aggregates:
            members = [copy.deepcopy(m) for m in (members if members is not None
                                                  else [reference_model(), reference_model(1)])]
            module = defense.compose(members, params)
        else:
            assert members is None, f"{what} does not aggregate: it takes no members"
            module = defense.build(params)
    assert isinstance(module, torch.nn.Module), f"{what}: build/compose returned {type(module).__name__}, not a module"
    if defense.trained:
        assert any(p.numel() for p in module.parameters()), f"{what} is declared trained but has no weights"
    module.eval().requires_grad_(False)

    def forward(seed: int, inputs: torch.Tensor = x) -> torch.Tensor:
        seed_randomness(module, seed)
        before = inputs.clone()
        with torch.no_grad():
            out = module(inputs)
        assert torch.equal(inputs, before), f"{what} modified its input in place"
        return out

    out = forward(seeds[0])
    _check_output(what, out, x, defense.aggregates)
    assert torch.equal(out, forward(seeds[0])), (
        f"{what} is not deterministic under a seed: draw every random number through DefenseModule.normal/uniform")
    other = forward(seeds[1])
    if randomized:
        assert not torch.equal(out, other), (
            f"{what} is declared randomized but its output does not change with the seed (or it draws without "
            "DefenseModule.normal/uniform)")
    else:
        assert torch.equal(out, other), f"{what} is declared deterministic (not randomized) but its output changes " \
            "with the seed: override is_randomized"
    if differentiable:
        seed_randomness(module, seeds[0])
        _check_gradients(f"{what} (declared differentiable)", module, x, seeds[0])
    else:
        approx = defense.approximation(params)
        if approx is not None:
            assert isinstance(approx, torch.nn.Module), f"{what}: approximation() returned {type(approx).__name__}"
            approx.eval()
            with torch.no_grad():
                stand_in = approx(x)
            assert stand_in.shape == x.shape and stand_in.dtype == torch.float32, (
                f"{what}: its BPDA approximation maps {tuple(x.shape)} to {tuple(stand_in.shape)} {stand_in.dtype}, "
                "not to float32 of the input's shape")
            assert torch.isfinite(stand_in).all(), f"{what}: its BPDA approximation gives non-finite values"
            _check_gradients(f"{what}'s BPDA approximation", approx, x, seeds[0])
        # as the engine attacks through it: forward the defense, backward the approximation (or the identity)
        stage = Stage(module, name=name, differentiable=False, randomized=randomized, trained=defense.trained,
                      approximation=approx)
        stage.bpda = True
        seed_randomness(stage, seeds[0])
        _check_gradients(f"{what} under BPDA", stage, x, seeds[0])
        seed_randomness(stage, seeds[0])
        with torch.no_grad():
            assert torch.allclose(stage(x), out, atol=1e-6), f"{what}: its output under BPDA is not its output"
    if torch.cuda.is_available():
        module.to("cuda")
        on_cuda = forward(seeds[0], x.to("cuda")).cpu()
        module.to("cpu")
        worst = float((on_cuda - out).abs().max())
        assert worst <= cuda_atol, (f"{what} gives other outputs on CUDA than on the CPU under one seed (max "
                                    f"difference {worst:.3g}): draw on the CPU (DefenseModule.normal/uniform)")
    change = None if defense.aggregates else float((out - x).abs().mean())
    return DefenseReport(out, change, randomized, differentiable)


def _check_output(what: str, out: Any, x: torch.Tensor, aggregates: bool) -> None:
    assert isinstance(out, torch.Tensor), f"{what} returned {type(out).__name__}, not a tensor"
    assert out.dtype == torch.float32, f"{what} returned {out.dtype}, not float32"
    assert torch.isfinite(out).all(), f"{what} returned non-finite values"
    if aggregates:
        assert out.dim() == 2 and len(out) == len(x), (
            f"{what} returned shape {tuple(out.shape)}, not logits (N, classes) for {len(x)} inputs")
        return
    assert out.shape == x.shape, f"{what} returned shape {tuple(out.shape)}, not the input's {tuple(x.shape)}"
    low, high = float(out.min()), float(out.max())
    assert low >= 0 and high <= 1, f"{what} left the [0, 1] box: outputs in [{low:.4g}, {high:.4g}]"


def _check_gradients(what: str, module: torch.nn.Module, x: torch.Tensor, seed: int) -> None:
    """A random projection of ``module(x)`` back-propagates finite, non-zero gradients to ``x``."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = module(x)
        assert out.requires_grad, f"{what}: its output does not depend on the input through autograd (detached?)"
        projection = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)
        (grad,) = torch.autograd.grad((out * projection).sum(), x, allow_unused=True)
    assert grad is not None, f"{what}: its output does not depend on the input through autograd (detached?)"
    assert torch.isfinite(grad).all(), f"{what}: non-finite input gradients"
    assert grad.abs().sum() > 0, f"{what}: the input gradients are all zero"


# -- pytest plugin -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def rbench_reference_model() -> torch.nn.Module:
    """A small MLP trained on real MNIST, in eval mode with frozen parameters (as attacks receive models)."""
    return reference_model()


@pytest.fixture(scope="session")
def rbench_reference_data() -> tuple[torch.Tensor, torch.Tensor]:
    """128 MNIST test images (float32 (N, 1, 28, 28) in [0, 1]) and their labels."""
    return reference_data()
