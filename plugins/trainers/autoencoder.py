"""Sparse-autoencoder pretraining, then a softmax trained on the code (Szegedy et al.'s AE400-10)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from rbench.model import Progress, TrainData, Trainer, no_progress, param_groups

Positive = Annotated[float, Field(gt=0)]


class AePretrainParams(BaseModel):
    """Phase 1 (``ae_epochs``): the sparse autoencoder of Ng's lecture notes: squared reconstruction error
    summed over pixels (averaged over the batch) + ``sparsity_weight`` x sum over code units of
    KL(``sparsity`` || mean activation), Adam with ``ae_weight_decay``; phase 2 (``epochs``): cross-entropy
    of the softmax on the code, the encoder frozen unless ``finetune``."""

    model_config = ConfigDict(extra="forbid")
    ae_epochs: Annotated[int, Field(ge=1, le=10_000)] = 10
    ae_lr: Positive = 3e-3
    sparsity: Annotated[float, Field(gt=0, lt=1)] = 0.1
    sparsity_weight: Annotated[float, Field(ge=0)] = 0.1
    ae_weight_decay: Annotated[float, Field(ge=0)] = 1e-6
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 10
    lr: Positive = 1e-2
    batch_size: Annotated[int, Field(ge=1)] = 128
    finetune: bool = False


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator).to(device)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


class AutoencoderPretrain(Trainer):
    """Needs a model with ``encoder``, ``decoder`` and ``classifier`` submodules (plugin ``ae_softmax``)."""

    name = "autoencoder_pretrain"
    Params = AePretrainParams

    def train(self, model: torch.nn.Module, data: TrainData, params: AePretrainParams, *,
              generator: torch.Generator, device: torch.device, progress: Progress = no_progress
              ) -> dict[str, Any]:
        parts: dict[str, torch.nn.Module] = {}
        for part in ("encoder", "decoder", "classifier"):
            module = getattr(model, part, None)
            if not isinstance(module, torch.nn.Module):
                raise TypeError(f"trainer 'autoencoder_pretrain' needs a model with an {part!r} submodule "
                                "(e.g. model plugin 'ae_softmax')")
            parts[part] = module
        encoder, decoder = parts["encoder"], parts["decoder"]
        x, y = data.x.to(device), data.y.to(device)
        total = (params.ae_epochs + params.epochs) * -(-len(x) // params.batch_size)
        step = 0
        model.train()
        ae_params = [*encoder.parameters(), *decoder.parameters()]
        opt = torch.optim.Adam(ae_params, lr=params.ae_lr, weight_decay=params.ae_weight_decay)
        rho = torch.tensor(params.sparsity, device=device)
        ae_loss = torch.zeros((), device=device)
        for epoch in range(params.ae_epochs):
            for batch in _batches(len(x), params.batch_size, generator, device):
                code = encoder(x[batch])
                rho_hat = code.mean(0).clamp(1e-6, 1 - 1e-6)
                kl = (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
                recon = (decoder(code) - x[batch]).pow(2).flatten(1).sum(1).mean()
                ae_loss = recon + params.sparsity_weight * kl
                opt.zero_grad(set_to_none=True)
                ae_loss.backward()
                opt.step()
                step += 1
                if step % 20 == 0:
                    progress(step, total, f"autoencoder epoch {epoch + 1}/{params.ae_epochs}")
        encoder.requires_grad_(params.finetune)
        opt = torch.optim.Adam(param_groups(model), lr=params.lr)  # the encoder without decay where fine-tuned
        ce = torch.zeros((), device=device)
        for epoch in range(params.epochs):
            for batch in _batches(len(x), params.batch_size, generator, device):
                ce = F.cross_entropy(model(x[batch]), y[batch])
                opt.zero_grad(set_to_none=True)
                ce.backward()
                opt.step()
                step += 1
                if step % 20 == 0 or step == total:
                    progress(step, total, f"softmax epoch {epoch + 1}/{params.epochs}")
        model.requires_grad_(True)
        if not (torch.isfinite(ae_loss) and torch.isfinite(ce)):
            raise FloatingPointError("autoencoder pretraining diverged (non-finite loss)")
        return {"final_reconstruction_loss": float(ae_loss.detach()), "final_batch_loss": float(ce.detach()),
                "steps": step}
