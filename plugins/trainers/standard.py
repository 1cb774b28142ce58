"""Standard empirical-risk minimisation: cross-entropy, mini-batches, Adam or SGD."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from rbench.model import Progress, TrainData, Trainer, no_progress, param_groups


class StandardParams(BaseModel):
    """``weight_decay`` applies where the model does not set its own per-layer decay (``param_groups``)."""

    model_config = ConfigDict(extra="forbid")
    epochs: Annotated[int, Field(ge=1)] = 1
    batch_size: Annotated[int, Field(ge=1)] = 128
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"


def make_optimizer(model: torch.nn.Module, p: StandardParams) -> torch.optim.Optimizer:
    groups = param_groups(model, p.weight_decay)
    if p.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=p.lr, momentum=p.momentum)
    # Adam with L2-style decay (torch's Adam adds wd * w to the gradient), matching the classic papers.
    return torch.optim.Adam(groups, lr=p.lr)


class StandardTrainer(Trainer):
    """Minibatch training with cross-entropy loss; the data are reshuffled every epoch from the job's seed."""

    name = "standard"
    Params = StandardParams

    def train(self, model: torch.nn.Module, data: TrainData, params: StandardParams, *,
              generator: torch.Generator, device: torch.device, progress: Progress = no_progress
              ) -> dict[str, Any]:
        x, y = data.x.to(device), data.y.to(device)
        opt = make_optimizer(model, params)
        steps_per_epoch = -(-len(x) // params.batch_size)
        total = params.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total) if params.lr_schedule == "cosine" else None
        model.train()
        step, loss_sum, seen = 0, torch.zeros(()), 0
        for epoch in range(params.epochs):
            order = torch.randperm(len(x), generator=generator).to(device)
            loss_sum, seen = torch.zeros((), device=device), 0
            for start in range(0, len(x), params.batch_size):
                batch = order[start:start + params.batch_size]
                loss = F.cross_entropy(model(x[batch]), y[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                loss_sum += loss.detach() * len(batch)
                seen += len(batch)
                step += 1
                if step % 20 == 0 or step == total:
                    progress(step, total, f"epoch {epoch + 1}/{params.epochs}")
            if not torch.isfinite(loss_sum):
                raise FloatingPointError(f"training loss is not finite in epoch {epoch + 1}")
        return {"epochs": params.epochs, "final_epoch_loss": float(loss_sum) / max(seen, 1), "steps": step}
