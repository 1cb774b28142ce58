"""The job runners: what each job kind computes. Runs in whichever process the executor chose; reads and writes
the store. What a plugin's output must satisfy is :mod:`rbench.contract`; loading models and data slices is
:mod:`rbench.inputs`; the batched attack loop is :mod:`rbench.attack_loop`.

Every function here is deterministic given the job (seeds derive from the job key), so re-running a job
reproduces its artifact up to floating-point nondeterminism of the device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rbench import gates
from rbench.artifacts import AdvSet, Predictions, distortions
from rbench.attack_loop import attack_in_batches, attack_meta, first_batch, slice_batches
from rbench.contract import (
    GRADIENT_PROBE,
    MASKING_PROBE,
    ModelGuard,
    check_consistent,
    check_defense_gradients,
    check_eval_logits,
    check_input_gradients,
    check_measurements,
    check_reloadable,
    check_trained,
    check_transform_output,
    check_untrained,
)
from rbench.defense import attack_view, randomized, seed_randomness
from rbench.errors import PluginContractError
from rbench.inputs import (
    build_defense,
    build_model,
    check_content,
    finite_logits,
    load_model,
    load_slice,
    memory_format,
    model_name,
    plugin_params,
    predicted_success,
)
from rbench.model import EpochObserver, Progress, TrainData, no_progress
from rbench.plan import Job
from rbench.precision import autocast
from rbench.provenance import job_meta
from rbench.specs import ATTACK_BATCH, AttackSpec, EvalSpec, Monitoring, TrainSpec, TransformSpec
from rbench.store import Store


def run_train(job: Job, store: Store, device: torch.device, progress: Progress, weights_path: str | None = None
              ) -> None:
    """Train a model (from scratch, from its ``init`` model's weights, or from the user's weights file at
    ``weights_path``, whose bytes the spec names) or a trained defense component; or assemble a defended model from
    its trained parts (no trainer)."""
    started = time.perf_counter()
    spec = job.spec
    assert isinstance(spec, TrainSpec)
    torch.manual_seed(job.seed)
    model = _network(spec)
    if weights_path is not None:
        assert spec.model is not None  # a weights file is only named for a model plugin's spec
        plugin, params = plugin_params("model", spec.model)
        plugin.load_weights(model, params, weights_path)
    for member, key in zip(getattr(model, "members", []), spec.members, strict=True):
        member.load_state_dict(store.load_checkpoint(key)[0])  # the members' (or parts') trained weights
    lineage = spec.init
    if lineage:
        model.load_state_dict(store.load_checkpoint(lineage[-1])[0])  # start from the init model's weights
    model.to(device)
    stats: dict[str, Any] = {}
    if spec.trainer is not None:
        assert spec.data is not None
        trainer, tparams = plugin_params("trainer", spec.trainer)
        for dataset, split, content in spec.extra_content:  # what the trainer loads itself is what the key names
            check_content({"plugin": dataset, "params": {}}, split, content)
        if trainer.reads_data:
            x, y, _ = load_slice(spec.data)
            if spec.model is not None and len(x):  # a model plugin's bug named before its trainer trips on it
                dataset, _ = plugin_params("dataset", spec.data.dataset)
                check_untrained(model, x, int(dataset.num_classes), device)
        else:  # the model is used as it is: every eval job checks its outputs on the images it evaluates
            x, y = torch.empty(0), torch.empty(0, dtype=torch.long)
        generator = torch.Generator().manual_seed(job.seed)
        extra: dict[str, Any] = {"lineage": [load_model(store, key, device) for key in lineage]} if getattr(
            trainer, "uses_lineage", False) else {}
        observed: list[dict[str, Any]] = []
        called: list[int] = []
        if spec.monitor is not None:
            extra["observer"] = epoch_observer(spec.monitor, device, job.seed, observed, called)
        stats = trainer.train(model, TrainData(x, y), tparams, generator=generator, device=device, progress=progress,
                              **extra)
        if spec.monitor is not None:
            if not called:  # its cells read "not monitored during training (give it a 'monitor')", as if unasked
                raise PluginContractError(f"trainer {trainer.name!r} declares that it calls the observer after each "
                                          "epoch (observes = True) but called it after none: the model's monitor "
                                          "measured nothing", plugin=f"trainer {trainer.name!r}")
            stats = {**stats, "observed": observed}
        model.eval()
        seen, component = (x if trainer.reads_data else None), spec.defense is not None
        check_trained(model, trainer.name, seen, device, component=component)
        with torch.random.fork_rng(devices=[]):  # building draws initial weights (on the CPU): the job's stream is
            # left as it was; where no outputs are compared (a trainer reading no data: load, compose, a pruning; a
            # defense component) one network is built, for its keys
            compared = seen is not None and not component
            fresh = (_network(spec), _network(spec)) if compared else (_network(spec),)
        check_reloadable(model, fresh, trainer.name, seen, device, component=component)
    model.eval()
    store.save_checkpoint(job.key, model.state_dict(), job_meta(job, store, device, started, stats=stats))


def _network(spec: TrainSpec) -> torch.nn.Module:
    """The untrained network a train job's spec names: a defense component's module, or the model's."""
    if spec.defense is not None:
        return build_defense(spec.defense.to_dict()).module
    assert spec.model is not None
    return build_model(spec.model)


def epoch_observer(monitor: Monitoring, device: torch.device, seed: int, observed: list[dict[str, Any]],
                   called: list[int]) -> EpochObserver:
    """The observer a monitored model's trainer calls after each epoch: every ``monitor.every`` epochs it runs
    the monitor's probes on its data slice, in eval mode, and appends ``{"epoch": e, label: measurements, ...}``
    to ``observed`` (and each epoch it is called after to ``called``). The probes draw from a generator of their
    own (seeded from the job), so monitoring leaves the trainer's random stream, hence the trained weights, as
    they would be without it."""
    x, y, _ = load_slice(monitor.data)
    x, y = x.to(device), y.to(device)
    probes = {label: plugin_params("probe", call) for label, call in monitor.probes.items()}
    generator = torch.Generator(device=device).manual_seed(seed ^ 0x5EED)

    def observe(epoch: int, model: torch.nn.Module) -> None:
        called.append(epoch)
        if epoch % monitor.every:
            return
        entry: dict[str, Any] = {"epoch": epoch}
        # measured in eval mode, whatever mode the trainer calls in (dropout would blur the measurements, batch
        # statistics would change the weights), and each module's mode put back as the trainer had it
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            for label, (probe, params) in probes.items():
                values = probe.measure(model, x, y, params, generator=generator)
                check_measurements(probe.name, label, values)
                entry[label] = values
        finally:
            for module, mode in modes:
                module.training = mode
        observed.append(entry)

    return observe


def run_attack(job: Job, store: Store, device: torch.device, progress: Progress, batch_size: int = ATTACK_BATCH,
               fit_gpu_batch: bool = False) -> None:
    spec = job.spec
    assert isinstance(spec, AttackSpec)
    if spec.generate is not None:  # a generator attack: inputs for target classes, made from nothing
        from rbench.generate import run_generate

        return run_generate(job, store, device, progress, batch_size, fit_gpu_batch)
    started = time.perf_counter()
    assert spec.data is not None
    x, y, idx = load_slice(spec.data)
    model = load_model(store, spec.source, device)
    check_consistent(model, x, device)
    seed_randomness(model, job.seed)
    target = attack_view(model, spec.view)  # what the attack sees: BPDA, EOT, or the model itself
    drawn = randomized(model)
    attack, params = plugin_params("attack", spec.attack)
    if attack.uses_gradients(params):  # a defense that cuts its gradients while declaring them would mask them
        check_defense_gradients(model, x[:GRADIENT_PROBE].to(device))
        # so would a network that rounds its input or saturates its softmax (checked on what the attack sees)
        check_input_gradients(target, x[:MASKING_PROBE].to(device), y, model_name(model),
                              attack.gradient_loss(params), spec.precision)
    budget = attack.budget(params)
    generator = torch.Generator(device=device).manual_seed(job.seed)
    one_batch = slice_batches(attack, params, target, model, x, y, device=device, generator=generator,
                              precision=spec.precision, check_success=not drawn)
    done = attack_in_batches(len(x), first_batch(len(x), batch_size, fit_gpu_batch, device), one_batch, progress,
                             generator=generator, splittable=spec.batch_size is None)
    x_adv = done.x_adv.numpy()
    extra_arrays = {k: v.numpy() for k, v in done.extras.items()}
    targets = extra_arrays.pop("targets", np.full(len(x), -1, dtype=np.int64)).astype(np.int64)
    success = done.success
    if drawn:  # a randomized model's success is one seeded draw, decided here (and re-predicted the same way)
        seed_randomness(model, job.seed)
        with autocast(spec.precision, device):
            success = predicted_success(model, torch.from_numpy(x_adv).to(device), y, torch.from_numpy(targets))
    meta = attack_meta(job, store, device, started, attack, params, None if budget is None else vars(budget),
                       done.batch)
    store.save_advset(job.key, AdvSet(x_adv, success.numpy(), y.numpy(), targets, idx,
                                      distortions(x.numpy(), x_adv), extra_arrays, meta))
    gates.record_pass(store, job)  # every batch passed check_attack_output


def run_transform(job: Job, store: Store, device: torch.device, progress: Progress) -> None:
    started = time.perf_counter()
    spec = job.spec
    assert isinstance(spec, TransformSpec)
    x, y, idx = load_slice(spec.data)
    base = store.load_advset(spec.input)
    if not np.array_equal(base.indices, idx):
        raise ValueError("the input adversarial set was made on other samples than this job's data slice")
    transform, params = plugin_params("transform", spec.transform)
    generator = torch.Generator().manual_seed(job.seed)
    x_adv = transform.apply(x, torch.tensor(base.x_adv), params, generator=generator)
    budget = gates.declared_budget(job)
    check_transform_output(transform.name, x_adv, x, budget)
    model = load_model(store, spec.source, device)
    seed_randomness(model, job.seed)
    targets = torch.tensor(base.targets)
    with autocast(spec.precision, device):
        success = predicted_success(model, x_adv.to(device), y, targets)
    progress(1, 1, "transformed")
    meta = job_meta(job, store, device, started, budget=None if budget is None else vars(budget))
    store.save_advset(job.key, AdvSet(x_adv.numpy(), success.numpy(), y.numpy(), base.targets, idx,
                                      distortions(x.numpy(), x_adv.numpy()), dict(base.extras), meta))
    gates.record_pass(store, job)  # success was re-predicted just above


def run_eval(job: Job, store: Store, device: torch.device, progress: Progress, batch_size: int = 1000) -> None:
    started = time.perf_counter()
    spec = job.spec
    assert isinstance(spec, EvalSpec)
    model = load_model(store, spec.model, device)
    if spec.advset is not None:
        adv = store.load_advset(spec.advset)
        x, labels, idx = torch.tensor(adv.x_adv), adv.labels, adv.indices
        what = "adversarial inputs"
    else:
        assert spec.clean is not None
        x, y, idx = load_slice(spec.clean)
        labels, what = y.numpy(), "clean inputs"
    check_consistent(model, x, device)
    logits: list[torch.Tensor] = []
    guard = ModelGuard(model)
    with torch.no_grad(), autocast(spec.precision, device):  # logits are stored as float32 whatever the precision
        layout = memory_format(model)
        # the width the checks before any work saw (on two inputs); an empty input has no batch to check
        classes = int(model(x[:2].to(device).contiguous(memory_format=layout)).shape[-1]) if len(x) else 0
        seed_randomness(model, job.seed)  # after that pass: the job's draws are as they always were
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            out = model(batch.to(device).contiguous(memory_format=layout)).float()
            check_eval_logits(model, out, len(batch), classes)
            logits.append(finite_logits(model, out, what, start).cpu())
            progress(min(start + batch_size, len(x)), len(x), "batches")
    guard.check_unchanged_by_itself()  # its predictions would be of a model that drifted from batch to batch
    store.save_predictions(job.key, Predictions(torch.cat(logits).numpy(), labels, idx,
                                                job_meta(job, store, device, started)))
    gates.record_pass(store, job)  # made from the very input the gate compares it with


RUNNERS: dict[str, Callable[..., None]] = {"train": run_train, "attack": run_attack, "transform": run_transform,
                                           "eval": run_eval}


def run_job(job: Job, store: Store, device: torch.device | str, progress: Progress = no_progress) -> None:
    """Compute ``job`` and store its output (the caller holds the job's lock and checked it is not stored)."""
    RUNNERS[job.kind](job, store, torch.device(device), progress, **job.options)
