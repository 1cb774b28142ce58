"""What each job kind computes. Runs in whichever process the executor chose; reads and writes the store.

Every function here is deterministic given the job (seeds derive from the job key), so re-running a job
reproduces its artifact up to floating-point nondeterminism of the device.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from rbench.artifacts import AdvSet, Predictions, distortions
from rbench.attack import AttackOutput, Budget
from rbench.data import disjoint_splits, subset_indices
from rbench.manager import get_plugin
from rbench.model import Progress, TrainData, no_progress
from rbench.plan import Job, canonical
from rbench.provenance import provenance
from rbench.store import Store

#: Float tolerance on a declared budget (the ball's radius may be hit exactly, up to float32 rounding).
BUDGET_RTOL, BUDGET_ATOL = 1e-5, 1e-5


class PluginContractError(Exception):
    """A plugin returned something that breaks its contract (wrong dtype, out of the box, over budget)."""


def _params(kind: str, spec: dict[str, Any]) -> tuple[Any, Any]:
    plugin = get_plugin(kind, spec["plugin"])
    return plugin, plugin.Params.model_validate(spec["params"], strict=True)


@lru_cache(maxsize=4)
def _load_split(dataset_spec: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A whole split, cached per process (keyed by the canonical JSON of the dataset's spec)."""
    spec = json.loads(dataset_spec)
    plugin, params = _params("dataset", spec)
    x, y = plugin.load(split, params)
    return np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)


def load_slice(data: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The data slice a job spec names: (x float32 (N, C, H, W), y int64, indices into the split)."""
    x, y = _load_split(canonical(data["dataset"]), data["split"])
    if data.get("parts"):
        part = disjoint_splits(len(x), data["parts"], data["subset_seed"])[data["part"]]
        idx = part[subset_indices(len(part), data["n"], data["subset_seed"])]
    else:
        idx = subset_indices(len(x), data["n"], data["subset_seed"])
    return torch.from_numpy(x[idx]), torch.from_numpy(y[idx]), idx


def build_model(spec: dict[str, Any]) -> torch.nn.Module:
    """A fresh network from a model spec; a composed model is composed of its freshly built members."""
    plugin, params = _params("model", spec)
    if "members" in spec:
        return plugin.compose([build_model(member) for member in spec["members"]], params)
    return plugin.build(params)


def memory_format(model: torch.nn.Module) -> torch.memory_format:
    """``channels_last`` for models with 2-D convolutions (``make bench``: PGD on LeNet 1.47x faster on a
    2-core CPU), the default layout otherwise. Inputs are converted to the model's format batch by batch."""
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return torch.channels_last if has_conv else torch.contiguous_format


def load_model(store: Store, key: str, device: torch.device) -> torch.nn.Module:
    """The trained model stored under ``key``: on ``device`` in its :func:`memory_format`, in eval mode,
    parameters frozen."""
    state, meta = store.load_checkpoint(key)
    model = build_model(meta["spec"]["model"])
    model.load_state_dict(state)
    model.to(device, memory_format=memory_format(model)).eval().requires_grad_(False)
    return model


def _meta(job: Job, device: torch.device, started: float, **extra: Any) -> dict[str, Any]:
    return {"key": job.key, "label": job.label, "spec": job.spec,
            "provenance": provenance(device, job.seed, time.perf_counter() - started), **extra}


def run_train(job: Job, store: Store, device: torch.device, progress: Progress) -> None:
    started = time.perf_counter()
    x, y, _ = load_slice(job.spec["data"])
    torch.manual_seed(job.seed)
    model = build_model(job.spec["model"])
    for member, key in zip(getattr(model, "members", []), job.spec.get("members", []), strict=True):
        member.load_state_dict(store.load_checkpoint(key)[0])  # the members' trained weights
    model.to(device)
    trainer, tparams = _params("trainer", job.spec["trainer"])
    generator = torch.Generator().manual_seed(job.seed)
    stats = trainer.train(model, TrainData(x, y), tparams, generator=generator, device=device, progress=progress)
    model.eval()
    store.save_checkpoint(job.key, model.state_dict(), _meta(job, device, started, stats=stats))


def check_attack_output(name: str, out: AttackOutput, x: torch.Tensor, budget: Budget | None,
                        model: torch.nn.Module, y: torch.Tensor, offset: int) -> None:
    """Raise :class:`PluginContractError` naming ``name`` and the worst sample if ``out`` breaks the contract."""
    xa = out.x_adv
    if not isinstance(xa, torch.Tensor) or xa.dtype != torch.float32 or xa.shape != x.shape:
        got = f"{getattr(xa, 'dtype', type(xa).__name__)} {tuple(getattr(xa, 'shape', ()))}"
        raise PluginContractError(f"attack {name!r} returned x_adv {got}; expected float32 {tuple(x.shape)}")
    if not torch.isfinite(xa).all() or xa.min() < 0 or xa.max() > 1:
        worst = int(torch.nan_to_num((xa - xa.clamp(0, 1)).abs(), nan=np.inf).flatten(1).amax(1).argmax())
        raise PluginContractError(f"attack {name!r}: x_adv leaves the [0, 1] box (worst sample {offset + worst})")
    if budget is not None:
        d = (xa - x).flatten(1)
        size = d.abs().amax(1) if budget.norm == "linf" else d.norm(dim=1)
        limit = budget.eps * (1 + BUDGET_RTOL) + BUDGET_ATOL
        if size.max() > limit:
            worst = int(size.argmax())
            raise PluginContractError(
                f"attack {name!r} exceeds its declared {budget.norm} budget {budget.eps}: sample "
                f"{offset + worst} has {budget.norm} distortion {float(size[worst]):.6g}")
    success = out.success.to(torch.bool)
    if success.shape != (len(x),):
        raise PluginContractError(f"attack {name!r} returned success of shape {tuple(success.shape)}")
    targets = out.extras.get("targets", torch.full_like(y, -1))
    fooled = predicted_success(model, xa, y, targets)
    mismatch = (success.cpu() != fooled).nonzero().flatten()
    if len(mismatch):
        raise PluginContractError(
            f"attack {name!r}: {len(mismatch)} success flags disagree with the model's prediction "
            f"(first: sample {offset + int(mismatch[0])})")


def run_attack(job: Job, store: Store, device: torch.device, progress: Progress, batch_size: int = 250) -> None:
    started = time.perf_counter()
    x, y, idx = load_slice(job.spec["data"])
    model = load_model(store, job.spec["source"], device)
    attack, params = _params("attack", job.spec["attack"])
    budget = attack.budget(params)
    generator = torch.Generator(device=device).manual_seed(job.seed)
    layout = memory_format(model)
    adv, success, extras = [], [], {}
    n = len(x)
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size].to(device).contiguous(memory_format=layout)
        yb = y[start:start + batch_size].to(device)
        out = attack.run(model, xb, yb, params, generator=generator)
        check_attack_output(attack.name, out, xb, budget, model, yb, start)
        adv.append(out.x_adv.detach().cpu())
        success.append(out.success.detach().cpu().bool())
        for k, v in out.extras.items():
            extras.setdefault(k, []).append(v.detach().cpu())
        progress(min(start + batch_size, n), n, "batches")
    x_adv = torch.cat(adv).contiguous().numpy()
    extra_arrays = {k: torch.cat(v).numpy() for k, v in extras.items()}
    targets = extra_arrays.pop("targets", np.full(n, -1, dtype=np.int64)).astype(np.int64)
    meta = _meta(job, device, started, budget=None if budget is None else vars(budget))
    library = getattr(attack, "provenance", None)  # adapters of other libraries name the library and its version
    if callable(library):
        meta["provenance"]["library"] = library(params)
    store.save_advset(job.key, AdvSet(x_adv, torch.cat(success).numpy(), y.numpy(), targets, idx,
                                      distortions(x.numpy(), x_adv), extra_arrays, meta))
    store.write_gate_stamp(job.key, _gate_stamp(store, job))  # every batch passed check_attack_output


def predicted_success(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor, targets: torch.Tensor,
                      batch_size: int = 1000) -> torch.Tensor:
    """Success of each sample on ``model``: hits its target where one is set (>= 0), else misclassified."""
    out = []
    with torch.no_grad():
        for start in range(0, len(x_adv), batch_size):
            pred = model(x_adv[start:start + batch_size]).argmax(1)
            t = targets[start:start + batch_size].to(pred.device)
            yy = y[start:start + batch_size].to(pred.device)
            out.append(torch.where(t >= 0, pred == t, pred != yy).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def run_transform(job: Job, store: Store, device: torch.device, progress: Progress) -> None:
    started = time.perf_counter()
    x, y, idx = load_slice(job.spec["data"])
    base = store.load_advset(job.spec["input"])
    if not np.array_equal(base.indices, idx):
        raise ValueError("the input adversarial set was made on other samples than this job's data slice")
    transform, params = _params("transform", job.spec["transform"])
    generator = torch.Generator().manual_seed(job.seed)
    x_adv = transform.apply(x, torch.tensor(base.x_adv), params, generator=generator)
    if x_adv.dtype != torch.float32 or x_adv.shape != x.shape or x_adv.min() < 0 or x_adv.max() > 1:
        raise PluginContractError(f"transform {transform.name!r} returned {x_adv.dtype} {tuple(x_adv.shape)} "
                                  "outside float32 [0, 1] of the input's shape")
    model = load_model(store, job.spec["source"], device)
    targets = torch.tensor(base.targets)
    success = predicted_success(model, x_adv.to(device), y, targets)
    progress(1, 1, "transformed")
    store.save_advset(job.key, AdvSet(x_adv.numpy(), success.numpy(), y.numpy(), base.targets, idx,
                                      distortions(x.numpy(), x_adv.numpy()), dict(base.extras),
                                      _meta(job, device, started)))
    store.write_gate_stamp(job.key, _gate_stamp(store, job))  # success was re-predicted just above


def run_eval(job: Job, store: Store, device: torch.device, progress: Progress, batch_size: int = 1000) -> None:
    started = time.perf_counter()
    model = load_model(store, job.spec["model"], device)
    source = job.spec["input"]
    if "advset" in source:
        adv = store.load_advset(source["advset"])
        x, labels, idx = torch.tensor(adv.x_adv), adv.labels, adv.indices
    else:
        x, y, idx = load_slice(source["clean"])
        labels = y.numpy()
    logits = []
    with torch.no_grad():
        layout = memory_format(model)
        for start in range(0, len(x), batch_size):
            logits.append(model(x[start:start + batch_size].to(device).contiguous(memory_format=layout)).float().cpu())
            progress(min(start + batch_size, len(x)), len(x), "batches")
    store.save_predictions(job.key, Predictions(torch.cat(logits).numpy(), labels, idx,
                                                _meta(job, device, started)))


def gate_stored_advset(store: Store, job: Job) -> None:
    """The validity gate of a stored adversarial set (raises :class:`PluginContractError` with the reason).

    float32 (never quantized), finite and inside [0, 1], within the declared budget (by the distortions stored
    at creation, with the engine's tolerance), and success flags equal to a re-prediction by the source model
    (skipped when the source checkpoint is no longer stored). The re-prediction's verdict is a function of the
    set's bytes and the checkpoint's bytes, so it is memoized on their checksums (``gates/<key>.json``): a set
    or checkpoint that changed in any way is re-predicted.
    """
    adv = store.load_advset(job.key)
    x = adv.x_adv
    if x.dtype != np.float32:
        raise PluginContractError(f"stored set {job.key} is {x.dtype}, not float32")
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise PluginContractError(f"stored set {job.key} leaves the [0, 1] box")
    budget = adv.meta.get("budget")
    if budget:
        size = adv.distortion[budget["norm"]]
        if size.size and size.max() > budget["eps"] * (1 + BUDGET_RTOL) + BUDGET_ATOL:
            raise PluginContractError(f"stored set {job.key} exceeds its {budget['norm']} budget {budget['eps']} "
                                      f"(sample {int(size.argmax())}: {float(size.max()):.6g})")
    stamp = _gate_stamp(store, job)
    if store.has(job.spec["source"]) and store.gate_stamp(job.key) != stamp:
        model = load_model(store, job.spec["source"], torch.device("cpu"))
        fooled = predicted_success(model, torch.tensor(x), torch.tensor(adv.labels),
                                   torch.tensor(adv.targets)).numpy()
        mismatch = np.flatnonzero(fooled != adv.success)
        if len(mismatch):
            raise PluginContractError(f"stored set {job.key}: {len(mismatch)} success flags disagree with a "
                                      f"re-prediction by the source model (first: sample {int(mismatch[0])})")
        store.write_gate_stamp(job.key, stamp)


def _gate_stamp(store: Store, job: Job) -> dict[str, Any]:
    return {"set": store.checksum(job.key), "source": store.checksum(job.spec["source"]), "gate": 1}


RUNNERS = {"train": run_train, "attack": run_attack, "transform": run_transform, "eval": run_eval}


def run_job(job: Job, store: Store, device: torch.device | str, progress: Progress = no_progress) -> None:
    """Compute ``job`` and store its output (the caller holds the job's lock and checked it is not stored)."""
    RUNNERS[job.kind](job, store, torch.device(device), progress, **job.options)
