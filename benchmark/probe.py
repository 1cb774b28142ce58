"""The probe contract: a measurement of a model on data, taken while the model trains.

A suite monitors a model with ``monitor = { dataset = "...", split = "test", n = 1000, probes = [...] }``; its
trainer then calls an observer after every epoch (``every`` epochs), which runs each probe on that data slice.
The measurements are part of the training job's result: stored in the checkpoint's sidecar under
``stats["observed"]`` (one entry per observed epoch: ``{"epoch": e, "<probe label>": {...}}``), read back by
metrics through ``CellData.training``. Monitoring never changes the trained weights: probes draw their randomness
from a generator of their own, never from the trainer's.

``measure(model, x, y, params, *, generator) -> dict[str, float | list[float]]``

- ``model``: the model being trained, in eval mode, on the training device. A probe may differentiate it with
  respect to its input (``torch.autograd.grad``) but must not touch parameter gradients or weights;
- ``x``, ``y``: the monitor's data slice on the same device (float32 in [0, 1], int64 labels);
- the result: JSON-able, every number finite, None where a measurement is undefined (e.g. a correlation of
  constant values); the engine checks and fails the job naming the probe otherwise.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from rbench.dataset import NoParams


class Probe:
    """Base of every probe plugin."""

    name: ClassVar[str]
    #: the pydantic params model; methods get a validated instance (typed Any here: each plugin annotates its own)
    Params: ClassVar[type[BaseModel]] = NoParams
    #: Enters the keys of the checkpoints of monitored models; bump it when a change alters the measurements.
    version: ClassVar[str | None] = None

    def measure(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: Any, *,
                generator: torch.Generator) -> dict[str, float | list[float]]:
        raise NotImplementedError
