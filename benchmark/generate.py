"""Generated sets: what a generator attack's job computes, and what its stored set must be.

A generator attack (:class:`rbench.attack.GeneratorAttack`) makes inputs for target classes from nothing (Nguyen
et al. 2015's fooling images). Its job spec holds ``generate`` (:func:`rbench.plan.generation_spec`: the number of
classes, inputs per class and the input shape) instead of a data slice. The engine decides the targets
(:func:`generated_targets`), calls the plugin on batches of whole rounds of classes, checks every batch as it
checks any attack's output (:func:`rbench.contract.check_attack_output`: float32, finite, in [0, 1], success flags
re-predicted by the source model) and stores an :class:`~rbench.artifacts.AdvSet` with those targets, labels and
indices -1 and no distortions. The validity gate checks that layout whenever the set is loaded
(:func:`rbench.gates.gate_advset`).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace

import numpy as np
import torch

from rbench import gates
from rbench.artifacts import AdvSet
from rbench.attack import AttackOutput
from rbench.attack_loop import attack_in_batches, attack_meta, first_batch
from rbench.contract import ModelGuard, check_attack_output, no_gradients_declared
from rbench.defense import attack_view, randomized, seed_randomness
from rbench.inputs import PluginContractError, load_model, plugin_params, predicted_success
from rbench.model import Progress
from rbench.plan import NO_CLASS, Job, generated_targets
from rbench.precision import autocast
from rbench.specs import ATTACK_BATCH, AttackSpec
from rbench.store import Store


def batch_rounds(batch_size: int, classes: int) -> int:
    """Inputs per call to the plugin: whole rounds of classes, as many as ``batch_size`` holds (at least one)."""
    return max(1, batch_size // classes) * classes


def run_generate(job: Job, store: Store, device: torch.device, progress: Progress, batch_size: int = ATTACK_BATCH,
                 fit_gpu_batch: bool = False) -> None:
    """Compute a generator attack's job (called by :func:`rbench.jobs.run_attack` for specs with ``generate``)."""
    started = time.perf_counter()
    spec = job.spec
    assert isinstance(spec, AttackSpec) and spec.generate is not None
    generate = spec.generate
    shape = generate.shape
    targets = torch.from_numpy(generated_targets(generate))
    n = len(targets)
    model = load_model(store, spec.source, device)
    seed_randomness(model, job.seed)
    target = attack_view(model, spec.view)
    drawn = randomized(model)
    attack, params = plugin_params("attack", spec.attack)
    generator = torch.Generator(device=device).manual_seed(job.seed)
    guard = ModelGuard(model)
    gradient_free = not attack.uses_gradients(params)

    def one_batch(start: int, stop: int) -> AttackOutput:
        tb = targets[start:stop].to(device)
        with autocast(spec.precision, device):
            with no_gradients_declared(model, f"attack {attack.name!r}") if gradient_free else nullcontext():
                # a copy, as an attack's inputs are (slice_batches): the targets it returns are checked against tb
                out = attack.run(target, tb.clone(), params, shape=shape, generator=generator)
        guard.check(f"attack {attack.name!r}")
        given = out.extras.get("targets")
        if given is not None and (given.shape != tb.shape or not torch.equal(given.to(tb.device).long(), tb)):
            raise PluginContractError(f"attack {attack.name!r} returned extras['targets'] other than the targets "
                                      f"it was given (batch at sample {start})")
        out = replace(out, extras={k: v for k, v in out.extras.items() if k != "targets"})
        canvas = torch.empty((len(tb), *shape))  # the shape the inputs must have; nothing is perturbed
        with autocast(spec.precision, device):
            success = check_attack_output(attack.name, replace(out, extras={**out.extras, "targets": tb}), canvas,
                                          None, model, torch.full_like(tb, NO_CLASS), start, check_success=not drawn,
                                          seen_by=target)
        return replace(out, success=success)

    start = batch_rounds(first_batch(n, batch_size, fit_gpu_batch, device), generate.classes)
    done = attack_in_batches(n, start, one_batch, progress, "inputs",
                             granule=generate.classes, generator=generator, splittable=spec.batch_size is None)
    x_adv = done.x_adv.numpy()
    success = done.success
    if drawn:  # a randomized model's success is one seeded draw, decided here (and re-predicted the same way)
        seed_randomness(model, job.seed)
        with autocast(spec.precision, device):
            success = predicted_success(model, torch.from_numpy(x_adv).to(device),
                                        torch.full_like(targets, NO_CLASS), targets)
    meta = attack_meta(job, store, device, started, attack, params, None, done.batch)
    none = np.full(n, NO_CLASS, dtype=np.int64)
    store.save_advset(job.key, AdvSet(x_adv, success.numpy(), none, targets.numpy(), none.copy(), {},
                                      {k: v.numpy() for k, v in done.extras.items()}, meta))
    gates.record_pass(store, job)  # every batch passed check_attack_output
