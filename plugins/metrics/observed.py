"""Per-epoch measurements of a monitored model, read back from its training job (no recomputation)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from rbench.estimate import Estimate
from rbench.metric import CellData, Metric, Reference
from rbench.probe import read_measurement


class ObservedParams(BaseModel):
    """``probe``: the probe's label in the model's ``monitor``; ``value``: one of its measurements (e.g.
    ``robustness@0.1``); ``epoch``: an observed epoch (counted from 1), or the first or last observed one;
    ``index``: the element of a list-valued measurement (e.g. a class)."""

    model_config = ConfigDict(extra="forbid")
    probe: str
    value: str
    epoch: Annotated[int, Field(ge=1)] | Literal["first", "last"] = "last"
    index: Annotated[int, Field(ge=0)] | None = None


def observations(cell: CellData) -> list[dict]:
    """The target's per-epoch observations, oldest first (a ValueError when the model was not monitored)."""
    observed = cell.training.get("observed")
    if not observed:
        raise ValueError(f"model {cell.target!r} was not monitored during training (give it a 'monitor')")
    return observed


def measurement(entry: dict, params: ObservedParams) -> float | Estimate | None:
    """One measurement of one observation (an :class:`Estimate` where the probe gave its interval); None where the
    probe found it undefined."""
    if params.probe not in entry:
        raise ValueError(f"no probe labelled {params.probe!r} in the monitor (has: "
                         f"{', '.join(k for k in entry if k != 'epoch')})")
    values = entry[params.probe]
    if params.value not in values:
        raise ValueError(f"probe {params.probe!r} measured no {params.value!r} (has: {', '.join(values)})")
    value = values[params.value]
    if isinstance(value, list) != (params.index is not None):
        what = "a list: give index" if isinstance(value, list) else "a number: index does not apply"
        raise ValueError(f"{params.probe}.{params.value} is {what}")
    if params.index is not None:
        if params.index >= len(value):
            raise ValueError(f"{params.probe}.{params.value} has {len(value)} elements, no index {params.index}")
        value = value[params.index]
    return read_measurement(value)


class Observed(Metric):
    """A measurement a probe took while the target model trained (``monitor`` in the suite), at one epoch, with
    the 95% interval the probe gave it (none for a plain number)."""

    name = "observed"
    Params = ObservedParams
    label = "observed"
    unit = ""
    fmt = ".3g"

    def references(self, params: ObservedParams) -> list[Reference]:
        """``probe``: a probe label in the monitor of every cell's target, checked before any work (``value`` is
        known only once the probe has measured)."""
        return [Reference("probe", "probe", params.probe)]

    def compute(self, cell: CellData, params: ObservedParams) -> float | Estimate | None:
        observed = observations(cell)
        entry: dict | None
        if params.epoch == "first":
            entry = observed[0]
        elif params.epoch == "last":
            entry = observed[-1]
        else:
            entry = next((e for e in observed if e["epoch"] == params.epoch), None)
            if entry is None:
                raise ValueError(f"epoch {params.epoch} was not observed (observed: {observed[0]['epoch']}.."
                                 f"{observed[-1]['epoch']})")
        return measurement(entry, params)
