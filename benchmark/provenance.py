"""Provenance: what produced an artifact (versions, device, host, time)."""

from __future__ import annotations

import datetime as _dt
import platform
import socket
import time
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING, Any

from rbench.precision import precision_of

if TYPE_CHECKING:
    from rbench.plan import Job
    from rbench.store import Store

PACKAGES = ("rbench", "torch", "numpy", "scipy", "h5py", "safetensors", "pydantic", "pluggy", "foolbox", "eagerpy",
            "adversarial-robustness-toolbox")


@cache
def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the packages that shape rbench's numbers, and of the ``extra`` distributions (the
    third-party plugins a suite uses)."""
    out = {"python": platform.python_version()}
    for name in (*PACKAGES, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def device_description(device: Any) -> str:
    """``cpu (N threads)`` or the CUDA device's name."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def provenance(device: Any, seed: int | None = None, seconds: float | None = None) -> dict[str, Any]:
    """The provenance record stored with every artifact."""
    record: dict[str, Any] = {
        "packages": package_versions(),
        "device": device_description(device),
        "host": socket.gethostname(),
        "created": now_iso(),
    }
    if seed is not None:
        record["seed"] = seed
    if seconds is not None:
        record["seconds"] = round(seconds, 3)
    return record


def job_meta(job: Job, store: Store, device: Any, started: float, **extra: Any) -> dict[str, Any]:
    """The metadata stored with a job's output: its key, label, spec, provenance (``started``: the job's
    ``time.perf_counter()`` at its start) and ``inputs``, the checksum of every entry it read (its ``deps``, as
    this process read them from ``store``), plus ``extra``. The provenance names the arithmetic precision the job
    computed in (:mod:`rbench.precision`; a training job's is always fp32). ``inputs`` binds the output to those
    very entries: one recomputed since (other bytes) makes the output stale (:func:`rbench.gates.check_inputs`)."""
    record = provenance(device, job.seed, time.perf_counter() - started)
    record["precision"] = precision_of(job.spec)
    inputs = {dep: store.read_checksum(dep) for dep in job.deps}
    return {"key": job.key, "label": job.label, "spec": job.record, "provenance": record, "inputs": inputs, **extra}
