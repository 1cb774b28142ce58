"""Denoising-autoencoder training (Vincent et al. 2008; Uličný et al. 2016's DAE defense): reconstruct each clean
input from a copy with randomly dropped pixels. Labels are ignored.

It has its own small loop rather than :class:`StandardTrainer`'s: that loop's optimiser (``make_optimizer``:
Adam, or SGD without Nesterov) is not a hook, and it counts only whole epochs, while this trainer takes
Nesterov momentum and a number of ``iterations``. Shuffling (a fresh permutation from the job's generator at
every pass), progress and the finite-loss check follow :class:`StandardTrainer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rbench.model import Progress, TrainData, Trainer, no_progress, param_groups


class DenoisingParams(BaseModel):
    """``input_dropout``: the probability of zeroing each input pixel (no rescaling of the others); ``loss``:
    binary cross-entropy (``bce``) or squared error (``mse``), summed over the pixels of an image and averaged
    over the batch; SGD with ``lr``, ``momentum``, ``nesterov``, ``weight_decay`` (or ``optimizer = "adam"``: the
    paper-size sigmoid autoencoder does not get past the mean image within a CPU budget with SGD, see
    CONTRIBUTING); ``epochs`` passes over the
    data, or, when ``iterations`` is given, that many minibatch steps instead (reshuffled at each pass)."""

    model_config = ConfigDict(extra="forbid")
    input_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    loss: Literal["bce", "mse"] = "bce"
    #: "sgd" (with ``momentum`` and ``nesterov``: the paper's) or "adam" (``momentum``/``nesterov`` unused)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    batch_size: Annotated[int, Field(ge=1)] = 100
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 1
    iterations: Annotated[int, Field(ge=1, le=10_000_000)] | None = None

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> DenoisingParams:
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs a momentum > 0")
        return self


def reconstruction_loss(out: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """The per-image reconstruction loss (summed over pixels), averaged over the batch."""
    if loss == "bce":
        per_pixel = F.binary_cross_entropy(out, target, reduction="none")
    else:
        per_pixel = (out - target).pow(2)
    return per_pixel.flatten(1).sum(1).mean()


class DenoisingTrainer(Trainer):
    """Trains a model mapping inputs to inputs of the same shape (e.g. the defense ``dae``; for ``bce`` the
    outputs must lie in [0, 1]) to reconstruct the clean input ``x`` from ``x * mask``, each pixel of ``mask``
    zero with probability ``input_dropout`` (drawn from the job's generator). Returns ``final_reconstruction_loss``
    (the mean loss of the last pass, on corrupted inputs), ``clean_reconstruction_loss`` (the trained model's loss
    on the clean training inputs), ``passes`` and ``steps``, and
    ``mean_image_loss`` (always answering the mean training image): a model that does no better fails the job
    (training diverged or collapsed)."""

    name = "denoising"
    Params = DenoisingParams

    def train(self, model: torch.nn.Module, data: TrainData, params: DenoisingParams, *,
              generator: torch.Generator, device: torch.device, progress: Progress = no_progress
              ) -> dict[str, Any]:
        x = data.x.to(device)
        n, bs = len(x), params.batch_size
        steps_per_pass = -(-n // bs)
        total = params.iterations if params.iterations is not None else params.epochs * steps_per_pass
        passes = -(-total // steps_per_pass)
        groups = param_groups(model, params.weight_decay)
        opt = torch.optim.Adam(groups, lr=params.lr) if params.optimizer == "adam" else torch.optim.SGD(
            groups, lr=params.lr, momentum=params.momentum, nesterov=params.nesterov)
        model.train()
        step, last_pass = 0, 0.0
        for epoch in range(passes):
            order = torch.randperm(n, generator=generator).to(device)
            loss_sum, seen = torch.zeros((), device=device), 0
            for start in range(0, n, bs):
                if step == total:
                    break
                xb = x[order[start:start + bs]]
                corrupted = xb
                if params.input_dropout > 0:
                    keep = torch.rand(xb.shape, generator=generator) >= params.input_dropout
                    corrupted = xb * keep.to(device=device, dtype=xb.dtype)
                out = model(corrupted)
                if out.shape != xb.shape:
                    raise TypeError(f"trainer 'denoising' needs a model whose output has its input's shape "
                                    f"(e.g. the defense 'dae'); got {tuple(out.shape)} for {tuple(xb.shape)}")
                loss = reconstruction_loss(out, xb, params.loss)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(xb)
                seen += len(xb)
                step += 1
                if step % 20 == 0 or step == total:
                    progress(step, total, f"pass {epoch + 1}/{passes}")
            if not torch.isfinite(loss_sum):
                raise FloatingPointError(f"reconstruction loss is not finite in pass {epoch + 1}")
            last_pass = float(loss_sum) / max(seen, 1)
        clean = self.evaluate(model, x, params.loss, bs)
        if not torch.isfinite(torch.tensor(clean)):
            raise FloatingPointError("reconstruction loss on the clean inputs is not finite")
        mean_image = self.evaluate(lambda xb: x.mean(0, keepdim=True).expand_as(xb), x, params.loss, bs)
        if clean >= mean_image > 0:  # a collapsed or diverged autoencoder would pass for a defense that "works"
            raise ArithmeticError(f"the trained autoencoder reconstructs no better than the mean image (loss "
                                  f"{clean:.1f} >= {mean_image:.1f}): training diverged or collapsed; lower lr or "
                                  "change the optimizer")
        return {"final_reconstruction_loss": last_pass, "clean_reconstruction_loss": clean,
                "mean_image_loss": mean_image, "passes": passes, "steps": step}

    @staticmethod
    def evaluate(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, loss: str, batch_size: int = 500
                 ) -> float:
        """The mean per-image reconstruction loss of ``model`` on ``x`` (no corruption, no gradients)."""
        total = torch.zeros((), device=x.device)
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                xb = x[start:start + batch_size]
                total += reconstruction_loss(model(xb), xb, loss) * len(xb)
        return float(total) / max(len(x), 1)
