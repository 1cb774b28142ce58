"""Standard empirical-risk minimisation: cross-entropy, mini-batches, Adam or SGD.

:class:`StandardTrainer` is also the loop the other minibatch trainers reuse (data augmentation, adversarial
training, outlier exposure): they override :meth:`StandardTrainer.batch_loss` (and, where needed, ``begin``,
``epochs`` and ``summary``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from rbench.model import EpochObserver, Progress, TrainData, Trainer, no_progress, param_groups


class OptimizerParams(BaseModel):
    """The minibatch and optimiser settings every trainer built on :class:`StandardTrainer` shares."""

    model_config = ConfigDict(extra="forbid")
    batch_size: Annotated[int, Field(ge=1)] = 128
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"


class StandardParams(OptimizerParams):
    """``weight_decay`` applies where the model does not set its own per-layer decay (``param_groups``)."""

    epochs: Annotated[int, Field(ge=1, le=10_000)] = 1


def make_optimizer(model: torch.nn.Module, p: OptimizerParams) -> torch.optim.Optimizer:
    groups = param_groups(model, p.weight_decay)
    if p.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=p.lr, momentum=p.momentum)
    # Adam with L2-style decay (torch's Adam adds wd * w to the gradient), matching the classic papers.
    return torch.optim.Adam(groups, lr=p.lr)


class StandardTrainer(Trainer):
    """Minibatch training with cross-entropy loss; the data are reshuffled every epoch from the job's seed.

    Subclasses change what one minibatch contributes by overriding :meth:`batch_loss`, the number of epochs
    by :meth:`epochs`, the returned statistics by :meth:`summary`, and prepare what a whole run needs (e.g. the
    outliers of outlier exposure) in :meth:`begin`; the loop itself (shuffling, optimiser, schedule, progress,
    the finite-loss check) is this one."""

    name = "standard"
    Params: ClassVar[type[BaseModel]] = StandardParams
    observes = True

    # The hooks below take ``params`` typed Any: an instance of the subclass's own Params.
    def epochs(self, params: Any) -> int:
        """How many passes over the data."""
        return params.epochs

    def begin(self, data: TrainData, params: Any, *, generator: torch.Generator, device: torch.device
              ) -> Any:
        """Called once before the first epoch (before any draw of the loop's own); what it returns is handed to
        every :meth:`batch_loss` and to :meth:`summary` as ``state``. Nothing by default."""
        return None

    def batch_loss(self, model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor, params: Any, *,
                   generator: torch.Generator, epoch: int, tally: dict[str, Any], state: Any = None
                   ) -> torch.Tensor:
        """The loss (mean over the batch) of one minibatch, to be back-propagated.

        ``xb``, ``yb`` are on the training device (a fresh copy: an override may modify them); the model is in
        train mode and must be left so. ``generator`` is the job's CPU generator: every random draw comes from
        it (draw on the CPU, then move to ``xb.device``), so runs are reproducible. ``epoch`` counts from 0.
        ``tally`` is a dict the override may accumulate per-epoch sums in (emptied at each epoch's start; the
        last epoch's is handed to :meth:`summary`)."""
        return F.cross_entropy(model(xb), yb)

    def summary(self, params: Any, stats: dict[str, Any], epoch_losses: list[float],
                tally: dict[str, Any], state: Any = None) -> dict[str, Any]:
        """The statistics :meth:`train` returns; ``stats`` holds the standard ones, ``epoch_losses`` the mean
        loss of every epoch and ``tally`` the last epoch's sums (see :meth:`batch_loss`)."""
        return stats

    def train(self, model: torch.nn.Module, data: TrainData, params: OptimizerParams, *,
              generator: torch.Generator, device: torch.device, progress: Progress = no_progress,
              observer: EpochObserver | None = None) -> dict[str, Any]:
        x, y = data.x.to(device), data.y.to(device)
        state = self.begin(data, params, generator=generator, device=device)
        opt = make_optimizer(model, params)
        epochs = self.epochs(params)
        steps_per_epoch = -(-len(x) // params.batch_size)
        total = epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total) if params.lr_schedule == "cosine" else None
        model.train()
        step, loss_sum, seen = 0, torch.zeros(()), 0
        epoch_losses: list[float] = []
        tally: dict[str, Any] = {}
        for epoch in range(epochs):
            order = torch.randperm(len(x), generator=generator).to(device)
            loss_sum, seen, tally = torch.zeros((), device=device), 0, {}
            for start in range(0, len(x), params.batch_size):
                batch = order[start:start + params.batch_size]
                loss = self.batch_loss(model, x[batch], y[batch], params, generator=generator, epoch=epoch,
                                       tally=tally, state=state)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                loss_sum += loss.detach() * len(batch)
                seen += len(batch)
                step += 1
                if step % 20 == 0 or step == total:
                    progress(step, total, f"epoch {epoch + 1}/{epochs}")
            if not torch.isfinite(loss_sum):
                raise FloatingPointError(f"training loss is not finite in epoch {epoch + 1}")
            epoch_losses.append(float(loss_sum) / max(seen, 1))
            if observer is not None:
                model.eval()
                observer(epoch + 1, model)
                model.train()
        stats = {"epochs": epochs, "final_epoch_loss": epoch_losses[-1], "steps": step}
        return self.summary(params, stats, epoch_losses, tally, state)
