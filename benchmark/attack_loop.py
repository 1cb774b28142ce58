"""The one batched attack loop: the engine's attack and generator jobs and the conformance kit
(:func:`rbench.testing.check_attack`) all run a plugin through :func:`attack_in_batches`, so what the kit checks
is what a suite runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rbench.attack import AttackOutput
from rbench.model import Progress, no_progress
from rbench.plan import Job
from rbench.provenance import job_meta


@dataclass
class Collected:
    """The checked outputs of every batch, concatenated on the CPU."""

    x_adv: torch.Tensor
    success: torch.Tensor
    extras: dict[str, torch.Tensor]


def attack_in_batches(n: int, step: int, one_batch: Callable[[int, int], AttackOutput],
                      progress: Progress = no_progress, unit: str = "batches") -> Collected:
    """Call ``one_batch(start, stop)`` for consecutive slices of ``n`` inputs, ``step`` at a time (it runs the
    plugin on that slice and checks the output against the contract), and collect the outputs in order."""
    adv: list[torch.Tensor] = []
    success: list[torch.Tensor] = []
    extras: dict[str, list[torch.Tensor]] = {}
    for start in range(0, n, step):
        stop = min(start + step, n)
        out = one_batch(start, stop)
        adv.append(out.x_adv.detach().cpu())
        success.append(out.success.detach().cpu().bool())
        for k, v in out.extras.items():
            extras.setdefault(k, []).append(v.detach().cpu())
        progress(stop, n, unit)
    return Collected(torch.cat(adv).contiguous(), torch.cat(success), {k: torch.cat(v) for k, v in extras.items()})


def attack_meta(job: Job, device: torch.device, started: float, attack: Any, params: Any,
                budget: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`job_meta` of an attack job, with its budget and, for an adapter of another library, that
    library's name and version."""
    meta = job_meta(job, device, started, budget=budget)
    library = getattr(attack, "provenance", None)
    if callable(library):
        meta["provenance"]["library"] = library(params)
    return meta
