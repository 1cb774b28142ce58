"""The one batched attack loop: the engine's attack and generator jobs and the conformance kit
(:func:`rbench.testing.check_attack`) all run a plugin through :func:`attack_in_batches`, so what the kit checks
is what a suite runs."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from rbench.attack import AttackOutput
from rbench.model import Progress, no_progress
from rbench.plan import Job
from rbench.provenance import job_meta

if TYPE_CHECKING:
    from rbench.store import Store


@dataclass
class Collected:
    """The checked outputs of every batch, concatenated on the CPU; ``batch``: the batch size the last batches
    ran at (smaller than asked for when a batch did not fit in GPU memory)."""

    x_adv: torch.Tensor
    success: torch.Tensor
    extras: dict[str, torch.Tensor]
    batch: int


def first_batch(n: int, batch_size: int, fit_gpu_batch: bool, device: torch.device) -> int:
    """The batch an attack job of ``n`` inputs starts with: on a CUDA device, when the suite left the batch size
    at its default (``fit_gpu_batch``), all ``n`` at once, halved by :func:`attack_in_batches` until a batch
    fits, so the job runs the largest batch the device has room for; otherwise ``batch_size``."""
    return max(1, n) if fit_gpu_batch and device.type == "cuda" else batch_size


def slice_batches(attack: Any, params: Any, target: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor,
                  y: torch.Tensor, *, device: torch.device | str, generator: torch.Generator, precision: str = "fp32",
                  check_success: bool = True) -> Callable[[int, int], AttackOutput]:
    """``one_batch`` for :func:`attack_in_batches` over the data slice ``x``, ``y``, as an attack job runs it (and
    the conformance kit, :func:`rbench.testing.check_attack`): the slice on ``device`` in ``model``'s memory layout,
    the attack plugin on it as it sees ``target`` (the model itself, or its BPDA / EOT view) with the job's
    ``generator``, under ``precision``'s autocast (an attack declaring no gradients may not differentiate
    ``model``: :func:`rbench.contract.no_gradients_declared`), then the model's parameters checked untouched and
    the output checked against the contract (``check_success``: its success flags against a re-prediction by
    ``model``); flags the plugin left None are predicted by ``target`` (:func:`rbench.contract.check_attack_output`)."""
    from rbench.contract import ModelGuard, check_attack_output, no_gradients_declared
    from rbench.errors import PluginContractError
    from rbench.inputs import memory_format
    from rbench.precision import autocast

    budget = attack.budget(params)
    layout = memory_format(model)
    guard = ModelGuard(model)
    gradient_free = not attack.uses_gradients(params)
    targeted = bool(attack.targeted(params))

    def one_batch(start: int, stop: int) -> AttackOutput:
        xb = x[start:stop].to(device).contiguous(memory_format=layout)
        yb = y[start:stop].to(device)
        # the plugin gets copies: on the CPU the slice is a view of the job's data, so an attack writing into its
        # input changed the images its budget and the stored distortions were measured from (a step of 3 eps was
        # stored as distortion 0 within budget), and the conformance kit's cached reference images for later checks
        given, labels = xb.clone(memory_format=layout), yb.clone()
        with autocast(precision, device):  # the plugin's passes and the re-prediction of its flags
            with no_gradients_declared(model, f"attack {attack.name!r}") if gradient_free else nullcontext():
                out = attack.run(target, given, labels, params, generator=generator)
            guard.check(f"attack {attack.name!r}")
            if not isinstance(out, AttackOutput):
                raise PluginContractError(f"attack {attack.name!r} returned {type(out).__name__}, not an "
                                          "rbench.AttackOutput")
            if not (torch.equal(given, xb) and torch.equal(labels, yb)):
                raise PluginContractError(f"attack {attack.name!r} modified the inputs (or labels) it was given in "
                                          "place: an attack leaves them as they are and returns new tensors")
            success = check_attack_output(attack.name, out, xb, budget, model, yb, start,
                                          check_success=check_success, targeted=targeted, seen_by=target)
        return replace(out, success=success)

    return one_batch


class BatchTooLarge(RuntimeError):
    """A batch does not fit in GPU memory and may not be split (its draws follow the batches)."""


def attack_in_batches(n: int, step: int, one_batch: Callable[[int, int], AttackOutput],
                      progress: Progress = no_progress, unit: str = "batches", *, granule: int = 1,
                      generator: torch.Generator | None = None, splittable: bool = True) -> Collected:
    """Call ``one_batch(start, stop)`` for consecutive slices of ``n`` inputs, ``step`` at a time (it runs the
    plugin on that slice and checks the output against the contract), and collect the outputs in order.

    A batch that does not fit in GPU memory (``torch.cuda.OutOfMemoryError``) is run again at half the size, in
    whole multiples of ``granule``, with ``generator`` (the job's) back in the state it had before the batch, and
    the rest continues at the size that fit; so a job finds the largest batch up to ``step`` that the device has
    room for instead of failing. Where a randomized model's draws follow the batches (``splittable=False``), or a
    single granule does not fit, :class:`BatchTooLarge` says so."""
    adv: list[torch.Tensor] = []
    success: list[torch.Tensor] = []
    extras: dict[str, list[torch.Tensor]] = {}
    start = 0
    while start < n:
        stop = min(start + step, n)
        state = generator.get_state() if generator is not None else None
        try:
            out = one_batch(start, stop)
        except torch.cuda.OutOfMemoryError as exc:
            smaller = (stop - start) // 2 // granule * granule
            if not splittable or smaller < granule:
                why = "its draws (a randomized model's, or the attack's) follow the batches" if not splittable else \
                    f"it cannot be split below {granule}"
                raise BatchTooLarge(f"a batch of {stop - start} inputs does not fit in GPU memory and {why}: "
                                    "lower the evaluation's batch_size") from exc
            del exc  # its traceback holds the failed batch's tensors
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if generator is not None and state is not None:
                generator.set_state(state)
            step = smaller
            continue
        adv.append(out.x_adv.detach().cpu())
        assert out.success is not None, "one_batch returns the checked flags"
        success.append(out.success.detach().cpu().bool())
        for k, v in out.extras.items():
            extras.setdefault(k, []).append(v.detach().cpu())
        progress(stop, n, unit)
        start = stop
    return Collected(torch.cat(adv).contiguous(), torch.cat(success), {k: torch.cat(v) for k, v in extras.items()},
                     step)


def attack_meta(job: Job, store: Store, device: torch.device, started: float, attack: Any, params: Any,
                budget: dict[str, Any] | None, batch: int) -> dict[str, Any]:
    """:func:`job_meta` of an attack job, with its budget, the batch size it ran at and, for an adapter of another
    library, that library's name and version."""
    meta = job_meta(job, store, device, started, budget=budget)
    meta["provenance"]["batch_size"] = batch
    library = getattr(attack, "provenance", None)
    if callable(library):
        meta["provenance"]["library"] = library(params)
    return meta
