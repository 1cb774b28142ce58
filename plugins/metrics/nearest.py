"""Distance to the nearest reference image: how far a cell's inputs lie from anything a model was trained on.

``nearest_distance`` (params ``reference``: an evaluation of the suite whose clean inputs are the reference set,
e.g. the MNIST training split; ``norm`` l2 or linf; ``reduce``): for each of the cell's inputs -- the images of its
adversarial or generated set, or, on a clean cell, the evaluation's clean inputs -- the distance to the nearest
reference image, reduced over the inputs. On clean test images it is the typical test-to-training distance that
fooling images' distances are compared with (Nguyen et al. 2015 call their images unrecognizable; this measures
one necessary part of that: they are not near-copies of training images).

L2 neighbours are found by one matrix product per chunk (|a|^2 + |b|^2 - 2ab) and their distances recomputed
exactly; Linf is computed directly, chunk by chunk.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench.estimate import Estimate, reduced
from rbench.metric import CellData, Metric, Reference

#: queries per chunk (keeps the query x reference matrix near 100 MB for the 60000-image MNIST training set)
CHUNK = 256


def nearest(queries: torch.Tensor, reference: torch.Tensor, norm: str = "l2") -> torch.Tensor:
    """For each row of ``queries`` (Q, D), the distance (float64) to its nearest row of ``reference`` (R, D)."""
    q = queries.flatten(1).float()
    r = reference.flatten(1).float()
    out = []
    r_sq = (r * r).sum(1)
    for start in range(0, len(q), CHUNK):
        qc = q[start:start + CHUNK]
        if norm == "l2":
            score = r_sq[None, :] - 2.0 * qc @ r.T  # |q - r|^2 - |q|^2: the same argmin
            best = score.argmin(dim=1)
            out.append((qc.double() - r[best].double()).norm(dim=1))
        else:
            dist = torch.stack([(r - row).abs().amax(dim=1).min() for row in qc])
            out.append(dist.double())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


class NearestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: Annotated[str, Field(min_length=1)]
    norm: Literal["l2", "linf"] = "l2"
    reduce: Literal["median", "mean", "min", "max"] = "median"


class NearestDistance(Metric):
    """Distance from the cell's inputs to the nearest image of the ``reference`` evaluation's inputs."""

    name = "nearest_distance"
    Params = NearestParams
    label = "nearest-neighbour distance"
    unit = ""
    fmt = ".2f"

    def references(self, params: NearestParams) -> list[Reference]:
        """``reference``: an evaluation of the suite, checked before any work."""
        return [Reference("reference", "evaluation", params.reference)]

    def compute(self, cell: CellData, params: NearestParams) -> Estimate | float | None:
        x = cell.inputs[0] if cell.adv is None else torch.tensor(cell.adv.x_adv)
        if len(x) == 0:
            return None
        try:
            reference = cell.inputs_of(params.reference)[0]
        except KeyError:
            raise ValueError(f"reference {params.reference!r}: the suite has no such evaluation") from None
        return reduced(nearest(x, reference, params.norm).numpy(), params.reduce, bounds=(0.0, math.inf))
