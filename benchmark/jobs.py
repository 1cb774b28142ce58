"""What each job kind computes. Runs in whichever process the executor chose; reads and writes the store.

Every function here is deterministic given the job (seeds derive from the job key), so re-running a job
reproduces its artifact up to floating-point nondeterminism of the device.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from rbench import gates
from rbench.artifacts import AdvSet, Predictions, distortions
from rbench.attack import AttackOutput, Budget
from rbench.defense import attack_view, randomized, seed_randomness
from rbench.gates import BUDGET_ATOL, BUDGET_RTOL, over_budget
from rbench.inputs import (
    PluginContractError,
    build_defense,
    build_model,
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
from rbench.provenance import provenance
from rbench.store import Store

__all__ = ["BUDGET_ATOL", "BUDGET_RTOL", "PluginContractError", "build_model", "check_attack_output", "load_model",
           "load_slice", "memory_format", "predicted_success", "run_job"]

_params = plugin_params


def _meta(job: Job, device: torch.device, started: float, **extra: Any) -> dict[str, Any]:
    return {"key": job.key, "label": job.label, "spec": job.spec,
            "provenance": provenance(device, job.seed, time.perf_counter() - started), **extra}


def run_train(job: Job, store: Store, device: torch.device, progress: Progress, weights_path: str | None = None
              ) -> None:
    """Train a model (from scratch, from its ``init`` model's weights, or from the user's weights file at
    ``weights_path``, whose bytes the spec names) or a trained defense component; or assemble a defended model from
    its trained parts (no trainer)."""
    started = time.perf_counter()
    torch.manual_seed(job.seed)
    model = build_defense(job.spec["defense"]).module if "defense" in job.spec else build_model(job.spec["model"])
    if weights_path is not None:
        plugin, params = _params("model", job.spec["model"])
        plugin.load_weights(model, params, weights_path)
    for member, key in zip(getattr(model, "members", []), job.spec.get("members", []), strict=True):
        member.load_state_dict(store.load_checkpoint(key)[0])  # the members' (or parts') trained weights
    lineage = job.spec.get("init", [])
    if lineage:
        model.load_state_dict(store.load_checkpoint(lineage[-1])[0])  # start from the init model's weights
    model.to(device)
    stats: dict[str, Any] = {}
    if "trainer" in job.spec:
        x, y, _ = load_slice(job.spec["data"])
        trainer, tparams = _params("trainer", job.spec["trainer"])
        generator = torch.Generator().manual_seed(job.seed)
        extra = {"lineage": [load_model(store, key, device) for key in lineage]} if getattr(
            trainer, "uses_lineage", False) else {}
        observed: list[dict[str, Any]] = []
        if "monitor" in job.spec:
            extra["observer"] = epoch_observer(job.spec["monitor"], device, job.seed, observed)
        stats = trainer.train(model, TrainData(x, y), tparams, generator=generator, device=device, progress=progress,
                              **extra)
        if "monitor" in job.spec:
            stats = {**stats, "observed": observed}
        model.eval()
        check_trained(model, trainer.name, x, device, component="defense" in job.spec)
    model.eval()
    store.save_checkpoint(job.key, model.state_dict(), _meta(job, device, started, stats=stats))


def epoch_observer(monitor: dict[str, Any], device: torch.device, seed: int, observed: list[dict[str, Any]]
                   ) -> EpochObserver:
    """The observer a monitored model's trainer calls after each epoch: every ``monitor["every"]`` epochs it runs
    the monitor's probes on its data slice and appends ``{"epoch": e, label: measurements, ...}`` to
    ``observed``. The probes draw from a generator of their own (seeded from the job), so monitoring leaves the
    trainer's random stream, hence the trained weights, as they would be without it."""
    x, y, _ = load_slice(monitor["data"])
    x, y = x.to(device), y.to(device)
    probes = {label: _params("probe", call) for label, call in monitor["probes"].items()}
    generator = torch.Generator(device=device).manual_seed(seed ^ 0x5EED)

    def observe(epoch: int, model: torch.nn.Module) -> None:
        if epoch % monitor["every"]:
            return
        entry: dict[str, Any] = {"epoch": epoch}
        for label, (probe, params) in probes.items():
            values = probe.measure(model, x, y, params, generator=generator)
            check_measurements(probe.name, label, values)
            entry[label] = values
        observed.append(entry)

    return observe


def check_measurements(probe: str, label: str, values: Any) -> None:
    """A probe returns a dict of finite numbers or lists of them, None marking an undefined one (else
    :class:`PluginContractError` naming the probe)."""
    if not isinstance(values, dict):
        raise PluginContractError(f"probe {probe!r} ({label}) returned {type(values).__name__}, not a dict")
    for key, value in values.items():
        items = value if isinstance(value, list) else [value]
        numbers = all(v is None or (isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v))
                      for v in items)
        if not isinstance(key, str) or not numbers:
            raise PluginContractError(f"probe {probe!r} ({label}) returned {key!r} = {value!r}: measurements "
                                      "must be finite numbers (or None) or lists of them")


def check_trained(model: torch.nn.Module, trainer: str, x: torch.Tensor, device: torch.device,
                  probe: int = 256, component: bool = False) -> None:
    """Nothing non-finite is stored: the trained weights, and the outputs on the first ``probe`` training images
    (a model's logits; a defense component's images, which must also stay in [0, 1]), must be finite (else
    :class:`PluginContractError` naming the trainer and the plugin)."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise PluginContractError(f"trainer {trainer!r} left non-finite weights in {model_name(model)} "
                                  f"({len(bad)} tensors, first {bad[0]!r})")
    with torch.no_grad():
        out = model(x[:probe].to(device))
    if not component:
        finite_logits(model, out, "training images")
    elif not torch.isfinite(out).all() or out.min() < 0 or out.max() > 1 or out.shape != x[:probe].shape:
        raise PluginContractError(f"defense {model_name(model)} trained by {trainer!r} maps images to "
                                  "non-finite values or outside [0, 1] or another shape")


def check_attack_output(name: str, out: AttackOutput, x: torch.Tensor, budget: Budget | None,
                        model: torch.nn.Module, y: torch.Tensor, offset: int, check_success: bool = True) -> None:
    """Raise :class:`PluginContractError` naming ``name`` and the worst sample if ``out`` breaks the contract.
    ``check_success=False``: the success flags are not compared with a re-prediction (the engine decides them
    itself, for a randomized model)."""
    xa = out.x_adv
    if not isinstance(xa, torch.Tensor) or xa.dtype != torch.float32 or xa.shape != x.shape:
        got = f"{getattr(xa, 'dtype', type(xa).__name__)} {tuple(getattr(xa, 'shape', ()))}"
        raise PluginContractError(f"attack {name!r} returned x_adv {got}; expected float32 {tuple(x.shape)}")
    if not torch.isfinite(xa).all():
        worst = int((~torch.isfinite(xa)).flatten(1).any(1).nonzero()[0])
        raise PluginContractError(f"attack {name!r} returned non-finite x_adv (first: sample {offset + worst})")
    if xa.min() < 0 or xa.max() > 1:
        worst = int((xa - xa.clamp(0, 1)).abs().flatten(1).amax(1).argmax())
        raise PluginContractError(f"attack {name!r}: x_adv leaves the [0, 1] box (worst sample {offset + worst})")
    if budget is not None:
        d = (xa - x).flatten(1)
        size = d.abs().amax(1) if budget.norm == "linf" else d.norm(dim=1)
        worst = over_budget(size, budget)
        if worst is not None:
            raise PluginContractError(
                f"attack {name!r} exceeds its declared {budget.norm} budget {budget.eps}: sample "
                f"{offset + worst} has {budget.norm} distortion {float(size[worst]):.6g}")
    success = out.success.to(torch.bool)
    if success.shape != (len(x),):
        raise PluginContractError(f"attack {name!r} returned success of shape {tuple(success.shape)}")
    for key, value in out.extras.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise PluginContractError(f"attack {name!r} returned non-finite extras[{key!r}]")
    if not check_success:
        return
    targets = out.extras.get("targets", torch.full_like(y, -1))
    fooled = predicted_success(model, xa, y, targets)
    mismatch = (success.cpu() != fooled).nonzero().flatten()
    if len(mismatch):
        raise PluginContractError(
            f"attack {name!r}: {len(mismatch)} success flags disagree with the model's prediction "
            f"(first: sample {offset + int(mismatch[0])})")


def run_attack(job: Job, store: Store, device: torch.device, progress: Progress, batch_size: int = 250) -> None:
    if "generate" in job.spec:  # a generator attack: inputs for target classes, made from nothing
        from rbench.generate import run_generate

        return run_generate(job, store, device, progress, batch_size)
    started = time.perf_counter()
    x, y, idx = load_slice(job.spec["data"])
    model = load_model(store, job.spec["source"], device)
    seed_randomness(model, job.seed)
    target = attack_view(model, job.spec.get("view"))  # what the attack sees: BPDA, EOT, or the model itself
    drawn = randomized(model)
    attack, params = _params("attack", job.spec["attack"])
    budget = attack.budget(params)
    generator = torch.Generator(device=device).manual_seed(job.seed)
    layout = memory_format(model)
    adv, success, extras = [], [], {}
    n = len(x)
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size].to(device).contiguous(memory_format=layout)
        yb = y[start:start + batch_size].to(device)
        out = attack.run(target, xb, yb, params, generator=generator)
        check_attack_output(attack.name, out, xb, budget, model, yb, start, check_success=not drawn)
        adv.append(out.x_adv.detach().cpu())
        success.append(out.success.detach().cpu().bool())
        for k, v in out.extras.items():
            extras.setdefault(k, []).append(v.detach().cpu())
        progress(min(start + batch_size, n), n, "batches")
    x_adv = torch.cat(adv).contiguous().numpy()
    extra_arrays = {k: torch.cat(v).numpy() for k, v in extras.items()}
    targets = extra_arrays.pop("targets", np.full(n, -1, dtype=np.int64)).astype(np.int64)
    if drawn:  # a randomized model's success is one seeded draw, decided here (and re-predicted the same way)
        seed_randomness(model, job.seed)
        success = [predicted_success(model, torch.from_numpy(x_adv).to(device), y, torch.from_numpy(targets))]
    meta = _meta(job, device, started, budget=None if budget is None else vars(budget))
    library = getattr(attack, "provenance", None)  # adapters of other libraries name the library and its version
    if callable(library):
        meta["provenance"]["library"] = library(params)
    store.save_advset(job.key, AdvSet(x_adv, torch.cat(success).numpy(), y.numpy(), targets, idx,
                                      distortions(x.numpy(), x_adv), extra_arrays, meta))
    gates.record_pass(store, job)  # every batch passed check_attack_output


def run_transform(job: Job, store: Store, device: torch.device, progress: Progress) -> None:
    started = time.perf_counter()
    x, y, idx = load_slice(job.spec["data"])
    base = store.load_advset(job.spec["input"])
    if not np.array_equal(base.indices, idx):
        raise ValueError("the input adversarial set was made on other samples than this job's data slice")
    transform, params = _params("transform", job.spec["transform"])
    generator = torch.Generator().manual_seed(job.seed)
    x_adv = transform.apply(x, torch.tensor(base.x_adv), params, generator=generator)
    if (not isinstance(x_adv, torch.Tensor) or x_adv.dtype != torch.float32 or x_adv.shape != x.shape
            or not torch.isfinite(x_adv).all() or x_adv.min() < 0 or x_adv.max() > 1):
        got = f"{getattr(x_adv, 'dtype', type(x_adv).__name__)} {tuple(getattr(x_adv, 'shape', ()))}"
        raise PluginContractError(f"transform {transform.name!r} returned {got}, not finite float32 in [0, 1] of "
                                  "the input's shape")
    budget = gates.declared_budget(job)
    if budget is not None:
        d = (x_adv - x).flatten(1)
        worst = over_budget(d.abs().amax(1) if budget.norm == "linf" else d.norm(dim=1), budget)
        if worst is not None:
            raise PluginContractError(f"transform {transform.name!r} exceeds its declared {budget.norm} budget "
                                      f"{budget.eps} (sample {worst})")
    model = load_model(store, job.spec["source"], device)
    seed_randomness(model, job.seed)
    targets = torch.tensor(base.targets)
    success = predicted_success(model, x_adv.to(device), y, targets)
    progress(1, 1, "transformed")
    meta = _meta(job, device, started, budget=None if budget is None else vars(budget))
    store.save_advset(job.key, AdvSet(x_adv.numpy(), success.numpy(), y.numpy(), base.targets, idx,
                                      distortions(x.numpy(), x_adv.numpy()), dict(base.extras), meta))
    gates.record_pass(store, job)  # success was re-predicted just above


def run_eval(job: Job, store: Store, device: torch.device, progress: Progress, batch_size: int = 1000) -> None:
    started = time.perf_counter()
    model = load_model(store, job.spec["model"], device)
    seed_randomness(model, job.seed)
    source = job.spec["input"]
    if "advset" in source:
        adv = store.load_advset(source["advset"])
        x, labels, idx = torch.tensor(adv.x_adv), adv.labels, adv.indices
        what = "adversarial inputs"
    else:
        x, y, idx = load_slice(source["clean"])
        labels, what = y.numpy(), "clean inputs"
    logits = []
    with torch.no_grad():
        layout = memory_format(model)
        for start in range(0, len(x), batch_size):
            out = model(x[start:start + batch_size].to(device).contiguous(memory_format=layout)).float()
            logits.append(finite_logits(model, out, what, start).cpu())
            progress(min(start + batch_size, len(x)), len(x), "batches")
    store.save_predictions(job.key, Predictions(torch.cat(logits).numpy(), labels, idx,
                                                _meta(job, device, started)))
    gates.record_pass(store, job)  # made from the very input the gate compares it with


RUNNERS = {"train": run_train, "attack": run_attack, "transform": run_transform, "eval": run_eval}


def run_job(job: Job, store: Store, device: torch.device | str, progress: Progress = no_progress) -> None:
    """Compute ``job`` and store its output (the caller holds the job's lock and checked it is not stored)."""
    RUNNERS[job.kind](job, store, torch.device(device), progress, **job.options)
