"""Which devices to run on: every visible CUDA device, else the CPU."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from rbench.errors import RbenchError

#: the most workers a run may ask for (each is a process holding a model; more is a typo, not a machine)
MAX_WORKERS = 256


def visible_devices() -> list[str]:
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def resolve_devices(device: str | None, workers: int | None) -> tuple[list[str], int]:
    """The device of each worker, from ``--device`` (``cpu``, ``cuda``, ``cuda:1``, ``cuda:0,cuda:1``)
    and ``--workers`` (1 to :data:`MAX_WORKERS`). Default: one worker per visible CUDA device, else one CPU worker.
    A bad value raises a one-line :class:`RbenchError` naming the option."""
    if device in (None, "auto"):
        devices = visible_devices()
    elif device == "cuda":
        devices = [d for d in visible_devices() if d.startswith("cuda")]
        if not devices:
            raise RbenchError("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)")
    else:
        devices = [d.strip() for d in device.split(",") if d.strip()]
        if not devices:
            raise RbenchError(f"--device: {device!r} names no device (use cpu, cuda, cuda:N or a comma list "
                              "such as cuda:0,cuda:1)")
        for d in devices:
            try:
                parsed = torch.device(d)
            except RuntimeError:
                raise RbenchError(f"--device: {d!r} is not a device (use cpu, cuda or cuda:N)") from None
            if parsed.type == "cuda" and (not torch.cuda.is_available() or
                                          (parsed.index or 0) >= torch.cuda.device_count()):
                raise RbenchError(f"--device: {d!r} is not visible on this machine")
            if parsed.type not in ("cpu", "cuda"):
                raise RbenchError(f"--device: {d!r}: only cpu and cuda devices are supported")
    if workers is not None and workers < 1:
        raise RbenchError(f"--workers: must be at least 1 (got {workers})")
    if workers is not None and workers > MAX_WORKERS:
        raise RbenchError(f"--workers: must be at most {MAX_WORKERS} (got {workers})")
    n = workers or len(devices)
    return [devices[i % len(devices)] for i in range(n)], n


def cpu_threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes that share this one's CPUs: torch's thread count here
    (which follows OMP_NUM_THREADS, the CPUs this process may run on, as ``taskset`` or a batch scheduler's cpuset
    limit them, and ``torch.set_num_threads``) split between them, at least one each. ``os.cpu_count()`` counts
    every CPU of the machine: on 4 CPUs of a 64-core node, two workers would run 32 threads each."""
    return max(1, torch.get_num_threads() // workers)


#: cuBLAS's workspace setting under which its matrix products are deterministic (NVIDIA's cuBLAS guide,
#: "Results reproducibility"); read when a process first uses cuBLAS, so it is set before a job's first CUDA work
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"
CUBLAS_VARIABLE = "CUBLAS_WORKSPACE_CONFIG"


@contextlib.contextmanager
def reproducible_on(device: str) -> Iterator[None]:
    """A job on ``device`` inside the block: on a CUDA device under torch's deterministic algorithms (cuDNN's
    deterministic convolutions; cuBLAS with a fixed workspace unless ``CUBLAS_WORKSPACE_CONFIG`` says otherwise),
    so that one job computed twice on one GPU gives the same bits, as it does on a CPU. Without them a GPU's
    convolution gradients sum in an order that changes from run to run: the quickstart's cells differed by up to
    1.3 points between a local and a Ray run on one H200 (2026-12-04). An operation with no deterministic CUDA
    kernel warns and runs as before (``warn_only``) rather than failing the job. Torch's setting and the variable
    are put back as the block ends (``rbench.evaluate`` runs jobs in the caller's own process). A CPU job runs
    with the settings as they are (a worker's: torch's default, off). cuBLAS reads the variable when a process
    first uses it: in a process that used it before (a notebook that trained the model on the GPU), it keeps the
    workspace it had."""
    if torch.device(device).type != "cuda":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    variable = os.environ.get(CUBLAS_VARIABLE)
    if variable is None:
        os.environ[CUBLAS_VARIABLE] = CUBLAS_DETERMINISTIC_WORKSPACE
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        if variable is None:
            os.environ.pop(CUBLAS_VARIABLE, None)
