"""Outlier exposure (Hendrycks, Mazeika and Dietterich 2019): cross-entropy on the training data plus a term
pushing the softmax on auxiliary outlier images towards the uniform distribution."""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from rbench.inputs import checked_split
from rbench.model import TrainData
from rbench.plugins.trainers.standard import StandardParams, StandardTrainer


def _dataset_plugin(name: str) -> Any:
    from rbench.manager import get_registry

    return get_registry().get("dataset", name).obj  # a clear PluginError (with close matches) when unknown


class OutlierExposureParams(StandardParams):
    """The ``standard`` trainer's params, plus: ``coef`` (lambda, 0.5 for vision in Hendrycks et al.);
    ``outliers``: the dataset *plugin* (not a suite dataset) whose ``outlier_split`` supplies the outliers, loaded
    with its default params; ``n_outliers``: use only that many of them (a seeded subset; all when unset);
    ``outlier_batch_size``: outliers per step (default: ``batch_size``)."""

    coef: Annotated[float, Field(ge=0)] = 0.5
    outliers: Annotated[str, Field(min_length=1)] = "fashion-mnist"
    outlier_split: Annotated[str, Field(min_length=1)] = "train"
    n_outliers: Annotated[int, Field(ge=1)] | None = None
    outlier_batch_size: Annotated[int, Field(ge=1)] | None = None

    @field_validator("outliers")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from rbench.manager import PluginError

        try:
            _dataset_plugin(name)
        except PluginError as exc:
            raise ValueError(str(exc)) from None
        return name

    @model_validator(mode="after")
    def _known_split(self) -> OutlierExposureParams:
        splits = _dataset_plugin(self.outliers).splits
        if self.outlier_split not in splits:
            raise ValueError(f"outlier_split: dataset {self.outliers!r} has no split {self.outlier_split!r} "
                             f"(splits: {', '.join(splits)})")
        return self


def load_outliers(params: OutlierExposureParams, generator: torch.Generator) -> torch.Tensor:
    """The outlier images (float32 (M, C, H, W) in [0, 1], on the CPU): the ``outlier_split`` of the dataset
    plugin ``outliers``, cut to ``n_outliers`` images chosen with ``generator`` when set."""
    plugin = _dataset_plugin(params.outliers)
    images, _ = checked_split(plugin, params.outlier_split, plugin.Params())
    x = torch.from_numpy(images)
    if params.n_outliers is not None and params.n_outliers < len(x):
        x = x[torch.randperm(len(x), generator=generator)[:params.n_outliers].sort().values]
    return x


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the cross entropy from the uniform distribution to the softmax:
    ``-mean_k log softmax(logits)_k`` (its minimum, log K, is reached at the uniform softmax)."""
    return -F.log_softmax(logits, dim=1).mean(dim=1).mean()


class OutlierStream:
    """Batches of outlier images, reshuffled (with the job's generator) at every pass over them."""

    def __init__(self, outliers: torch.Tensor, batch_size: int, generator: torch.Generator):
        self.outliers, self.batch_size, self.generator = outliers, batch_size, generator
        self.order, self.pos = torch.randperm(len(outliers), generator=generator), 0

    def next(self) -> torch.Tensor:
        take: list[torch.Tensor] = []
        while sum(len(t) for t in take) < self.batch_size:
            if self.pos == len(self.outliers):
                self.order, self.pos = torch.randperm(len(self.outliers), generator=self.generator), 0
            part = self.order[self.pos:self.pos + self.batch_size - sum(len(t) for t in take)]
            take.append(part)
            self.pos += len(part)
        return self.outliers[torch.cat(take).to(self.outliers.device)]


class OutlierExposure(StandardTrainer):
    """Minibatch training on ``CE(f(x_in), y) + coef * uniform_cross_entropy(f(x_out))``.

    Each step pairs a batch of the (reshuffled every epoch) training data with a batch of outliers (reshuffled
    at every pass over them) in one forward pass, as in the authors' code. All shuffling and the outlier subset
    come from the job's generator. The outliers should not be the evaluation's out-of-distribution set: with
    the default ``fashion-mnist`` train split, test OOD detection on Fashion-MNIST's test split (disjoint) or on
    another dataset (``notmnist``). The minibatch loop is :class:`StandardTrainer`'s.
    """

    name = "outlier_exposure"
    Params = OutlierExposureParams

    def extra_data(self, params: OutlierExposureParams) -> list[tuple[str, str]]:
        return [(params.outliers, params.outlier_split)]

    def begin(self, data: TrainData, params: OutlierExposureParams, *, generator: torch.Generator,
              device: torch.device) -> OutlierStream:
        outliers = load_outliers(params, generator)
        if not len(outliers):
            raise ValueError(f"split {params.outlier_split!r} of dataset {params.outliers!r} holds no outlier images")
        if outliers.shape[1:] != data.x.shape[1:]:
            raise ValueError(f"outlier images of dataset {params.outliers!r} have shape {tuple(outliers.shape[1:])}, "
                             f"the training images {tuple(data.x.shape[1:])}")
        return OutlierStream(outliers.to(device), params.outlier_batch_size or params.batch_size, generator)

    def batch_loss(self, model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor, params: OutlierExposureParams, *,
                   generator: torch.Generator, epoch: int, tally: dict[str, Any], state: OutlierStream | None = None
                   ) -> torch.Tensor:
        assert state is not None, "batch_loss needs the OutlierStream begin() returned"
        logits = model(torch.cat([xb, state.next()]))
        ce = F.cross_entropy(logits[:len(xb)], yb)
        oe = uniform_cross_entropy(logits[len(xb):])
        tally["ce"] = tally.get("ce", 0) + ce.detach() * len(xb)
        tally["oe"] = tally.get("oe", 0) + oe.detach() * len(xb)
        tally["n"] = tally.get("n", 0) + len(xb)
        return ce + params.coef * oe

    def summary(self, params: OutlierExposureParams, stats: dict[str, Any], epoch_losses: list[float],
                tally: dict[str, Any], state: OutlierStream | None = None) -> dict[str, Any]:
        assert state is not None, "summary needs the OutlierStream begin() returned"
        n = max(tally["n"], 1)
        return {**stats, "final_epoch_ce": float(tally["ce"]) / n, "final_epoch_outlier_loss": float(tally["oe"]) / n,
                "n_outliers": len(state.outliers)}
