"""The probe contract: a measurement of a model on data, taken while the model trains.

A suite monitors a model with ``monitor = { dataset = "...", split = "test", n = 1000, probes = [...] }``; its
trainer then calls an observer after every epoch (``every`` epochs), which runs each probe on that data slice.
The measurements are part of the training job's result: stored in the checkpoint's sidecar under
``stats["observed"]`` (one entry per observed epoch: ``{"epoch": e, "<probe label>": {...}}``), read back by
metrics through ``CellData.training``. Monitoring never changes the trained weights: probes draw their randomness
from a generator of their own, never from the trainer's.

``measure(model, x, y, params, *, generator) -> dict[str, Measurement | list[Measurement]]``

- ``model``: the model being trained, in eval mode, on the training device. A probe may differentiate it with
  respect to its input (``torch.autograd.grad``) but must not touch parameter gradients or weights;
- ``x``, ``y``: the monitor's data slice on the same device (float32 in [0, 1], int64 labels);
- the result: JSON-able, every number finite, None where a measurement is undefined (e.g. a correlation of
  constant values); the engine checks and fails the job naming the probe otherwise. A measurement over samples
  should carry its 95% interval: :func:`measured` turns an :class:`rbench.estimate.Estimate` (``rate``, ``mean``,
  ``median``, ``correlation``, ...) into the JSON form ``{"value", "n", "low", "high", "interval"}`` that the
  ``observed`` metric turns back into a cell with that interval (:func:`read_measurement`); a plain number is a
  measurement without one (a threshold, a p-value).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from rbench.dataset import NoParams
from rbench.estimate import Estimate

#: what a probe returns per key: a number, a measurement with its interval (:func:`measured`), or None (undefined)
Measurement = float | dict[str, Any] | None
#: the keys of a measurement with its interval
MEASURED_KEYS = frozenset({"value", "n", "low", "high", "interval"})


def measured(estimate: Estimate | None) -> dict[str, Any] | None:
    """``estimate`` as a probe returns it: ``{"value", "n", "low", "high", "interval"}`` (JSON-able; ``low`` and
    ``high`` None and ``interval`` "" where it has no interval); None stays None (undefined)."""
    if estimate is None:
        return None
    return {"value": float(estimate.value), "n": int(estimate.n),
            "low": None if estimate.low is None else float(estimate.low),
            "high": None if estimate.high is None else float(estimate.high), "interval": estimate.method}


def read_measurement(value: Measurement) -> float | Estimate | None:
    """A stored measurement back: a number as it is, a measurement with its interval as an
    :class:`~rbench.estimate.Estimate` (its form checked when the probe returned it, :func:`check_measurements`)."""
    if isinstance(value, dict):
        return Estimate(float(value["value"]), int(value["n"]), value["low"], value["high"], str(value["interval"]))
    return None if value is None else float(value)


class Probe:
    """Base of every probe plugin."""

    name: ClassVar[str]
    #: the pydantic params model; methods get a validated instance (typed Any here: each plugin annotates its own)
    Params: ClassVar[type[BaseModel]] = NoParams
    #: Enters the keys of the checkpoints of monitored models; bump it when a change alters the measurements.
    version: ClassVar[str | None] = None

    def measure(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: Any, *,
                generator: torch.Generator) -> dict[str, Measurement | list[Measurement]]:
        raise NotImplementedError
