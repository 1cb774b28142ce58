"""Staged adversarial training (Uličný, Lundström & Byttner 2016, sections 3.3 and 4.1): ``adversarial_stages``.

The paper's proposed method: a LeNet trained on the natural training set X is trained further, stage after
stage, each stage starting from the previous stage's snapshot and training on X joined with the two-stage
adversarial examples of X made by *every* earlier snapshot (the pool grows by ``len(X)`` per stage); the
snapshots together form the "committee of models trained on adversarial examples" (an ``ensemble`` of them).

In a suite each stage is a model of its own that starts from the previous one (``init = "lenet_adv1"``); the
engine hands this trainer (``uses_lineage = True``) ``lineage``: the trained snapshots of that ``init`` chain,
oldest first, the last being the one the model starts from. The training pool is

    X  +  for every snapshot m in lineage:  clip(X_R + c * grad_X L(m, X_R, y), 0, 1),
          X_R = clip(X + eps * sign(grad_X L(m, X, y)), 0, 1)

with the labels y (the paper's equations 1 and 3; ``L`` is the per-sample cross-entropy, so the gradient of one
image does not depend on the batch it is computed in). ``X_R`` is the gradient sign image as the benchmark's
``fgsm`` makes it (clipped to [0, 1], as every image the paper shows is); the paper's equation 3 does not say
whether it clips ``X + R`` before taking the second gradient, and clipping only at the end would move pixels
the first stage left at the edge by ``eps + c*g`` before the clip instead of ``c*g``. The examples are made
once per stage, before training, by frozen snapshots (eval mode), so the pool is fixed during the stage.

Minibatches of ``batch_size`` are drawn from the pool with the job's generator, one pass over a random
permutation after another (the paper's solver counts iterations, not epochs), for ``iterations`` SGD steps with
``momentum`` and L2 ``weight_decay`` (a model with its own optimizer groups, e.g. ``lenet``'s per-layer decay,
keeps them: set ``weight_decay`` on the model there). The loop is not :class:`StandardTrainer`'s: that loop is
epoch-based (a whole permutation per epoch, ``epochs * ceil(N / batch_size)`` steps), and a stage is a number of
iterations that does not divide into passes over a pool whose size changes from stage to stage.

With an empty lineage (a model without ``init``) the pool is X alone: plain SGD for ``iterations`` steps, the
paper's base LeNet (10000 iterations).

Defaults. ``iterations = 5000``, ``batch_size = 64``, ``lr = 0.01``, ``momentum = 0.9``, ``weight_decay = 5e-4``:
the paper's 5000 iterations per stage; the rest are Caffe's MNIST LeNet solver (``lenet_solver.prototxt``:
batch 64, base_lr 0.01, momentum 0.9, weight_decay 0.0005, 10000 iterations), which the paper's setup matches
(Xavier init, SGD with momentum and L2, 10000 iterations for the base model) but does not name; its learning
rate decay ("inv", x0.74 after 5000 iterations) is left out.

The paper gives neither ``eps`` nor ``c``. ``eps = 0.25`` is Goodfellow et al.'s (2015) MNIST value for
adversarial training with the gradient sign method, the work the paper takes its adversarial noise from; it lies
inside the paper's evaluation range (its Table 2's dist = 0.1 and 0.2 are FGSM at eps of about 0.2 and 0.37 on
MNIST). ``c = 0.25`` makes the second stage a correction of about a tenth of ``eps``: measured with
:func:`gradient_scale` on Caffe's LeNet (``lenet`` with ``dropout = 0``, ``init = "xavier"``,
``weight_decay = 5e-4``) trained on the 60000 real MNIST training images with this trainer's defaults (empty
lineage), on 10000 training images at eps 0.25, the per-sample cross-entropy gradient at the gradient sign
images ``X_R`` has a mean absolute value per pixel of 0.063 after 500 iterations (96.7% test accuracy) and 0.088
after 2000 (98.3%; 99th percentile over pixels 0.67), against 0.002-0.003 at the clean images (the paper's
reason for taking the gradient at ``X_R``). With ``c = 0.25`` the second stage moves a pixel by 0.016-0.022 on
average (6-9% of ``eps``) and by about 0.17 (0.67 ``eps``) at the 1% of pixels where the gradient is largest: it
re-weights the sign step by the pixels' importance without replacing it. One stage of 1000 iterations from the
2000-iteration model (2000 test images; the base model: clean 98.3%, own FGSM accuracy 76.5% at eps 0.1 and
29.4% at eps 0.2), for ``c`` = 0, 0.05, 0.2, 0.25, 1: clean accuracy 97.2, 97.1, 96.2, 96.3, 96.2%; accuracy on
the base model's FGSM at eps 0.2 (transfer) 97.4, 97.0, 96.5, 97.0, 85.5%; on its own FGSM at eps 0.1 57.6,
55.0, 42.3, 38.9, 52.0%; the two-model committee (base + stage, mean softmax) on its own FGSM at eps 0.2 67.1%
for c = 0, 62.9% for c = 0.25, 55.8% for c = 1. So a larger ``c`` does not help on the paper's gradient sign
tests, and ``c`` is kept at a small fraction of ``eps``; ``c = 0`` trains on plain FGSM examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field

from rbench.model import Progress, TrainData, Trainer, no_progress
from rbench.plugins.attacks.gradients import loss_gradient
from rbench.plugins.trainers.standard import OptimizerParams, make_optimizer

#: examples crafted, and pool examples scored, per forward pass
CRAFT_BATCH = 500


class AdversarialStagesParams(OptimizerParams):
    """``iterations``: SGD steps of the stage (the paper: 5000); ``eps``: the gradient sign step (eq. 1);
    ``c``: the scale of the gradient added at the gradient sign image (eq. 3). The other optimiser settings are
    :class:`OptimizerParams`' (SGD with momentum by default here, Caffe's LeNet solver's values)."""

    model_config = ConfigDict(extra="forbid")
    iterations: Annotated[int, Field(ge=1, le=10_000_000)] = 5000
    batch_size: Annotated[int, Field(ge=1)] = 64
    optimizer: Literal["adam", "sgd"] = "sgd"
    lr: Annotated[float, Field(gt=0)] = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    eps: Annotated[float, Field(gt=0, le=1)] = 0.25
    c: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.25


def two_stage_examples(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, c: float,
                       batch_size: int = CRAFT_BATCH) -> torch.Tensor:
    """``clip(X_R + c * grad_X L(model, X_R, y), 0, 1)`` with ``X_R = clip(x + eps * sign(grad_X L(model, x, y)),
    0, 1)`` (per-sample cross-entropy gradients, taken with respect to the inputs only), in batches, on ``x``'s
    device. The model is used as it is (a snapshot: eval mode, frozen)."""
    out = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        x_r = (xb + eps * loss_gradient(model, xb, yb).sign()).clamp(0, 1)
        step = c * loss_gradient(model, x_r, yb) if c > 0 else torch.zeros_like(x_r)
        out.append((x_r + step).clamp(0, 1).detach())
    return torch.cat(out) if out else x.clone()


def gradient_scale(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                   batch_size: int = CRAFT_BATCH) -> dict[str, float]:
    """How large the second stage's gradient is: the mean absolute per-pixel input gradient of the per-sample
    cross-entropy at the gradient sign images ``X_R`` (and at the clean images), the median over images of the
    per-image mean, and the 99th percentile over pixels (a sample of at most 2^24 pixels) -- what ``c`` scales."""
    at_r, at_x, per_image = [], [], []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        g = loss_gradient(model, xb, yb)
        g_r = loss_gradient(model, (xb + eps * g.sign()).clamp(0, 1), yb).abs()
        at_r.append(g_r.flatten().cpu())
        at_x.append(g.abs().flatten().cpu())
        per_image.append(g_r.flatten(1).mean(1).cpu())
    pixels = torch.cat(at_r)
    sample = pixels[:: -(-len(pixels) // 2**24)]  # torch.quantile takes at most 2^24 values
    return {"mean_abs_grad_at_sign_image": float(pixels.mean()),
            "mean_abs_grad_at_clean": float(torch.cat(at_x).mean()),
            "median_image_mean_abs_grad": float(torch.cat(per_image).median()),
            "p99_abs_grad": float(sample.quantile(0.99))}


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches into a pool of ``n`` (``min(batch_size, n)`` each): consecutive slices of one random
    permutation after another, drawn from ``generator``; a batch may span two permutations."""
    batch_size = min(batch_size, n)
    perm, pos = torch.randperm(n, generator=generator), 0
    while True:
        if pos + batch_size <= n:
            yield perm[pos:pos + batch_size]
            pos += batch_size
        else:
            rest = perm[pos:]
            perm, pos = torch.randperm(n, generator=generator), batch_size - len(rest)
            yield torch.cat([rest, perm[:pos]])


class AdversarialStages(Trainer):
    """One stage of Uličný et al.'s staged adversarial training (see the module docstring): ``iterations`` SGD
    steps on the natural data joined with every lineage snapshot's two-stage adversarial examples of it.

    Returns ``final_loss`` (mean training loss over the last ``min(100, iterations)`` steps), ``steps``,
    ``pool_size`` (``(1 + len(lineage)) * len(X)``), ``lineage`` (its length), and the trained model's accuracy
    (eval mode) on the pool's adversarial part, overall (``adv_pool_accuracy``, None without lineage) and per
    snapshot (``adv_pool_accuracy_per_snapshot``, oldest first)."""

    name = "adversarial_stages"
    Params = AdversarialStagesParams
    uses_lineage = True

    def train(self, model: torch.nn.Module, data: TrainData, params: AdversarialStagesParams, *,
              generator: torch.Generator, device: torch.device, progress: Progress = no_progress,
              lineage: list[torch.nn.Module] | None = None) -> dict[str, Any]:
        lineage = list(lineage or [])
        x, y = data.x.to(device), data.y.to(device)
        parts = [x]
        for i, snapshot in enumerate(lineage):
            progress(0, params.iterations, f"crafting with snapshot {i + 1}/{len(lineage)}")
            parts.append(two_stage_examples(snapshot, x, y, params.eps, params.c))
        pool_x, pool_y = torch.cat(parts), y.repeat(len(parts))
        opt = make_optimizer(model, params)
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, params.iterations)
                 if params.lr_schedule == "cosine" else None)
        window = min(100, params.iterations)
        recent = torch.zeros(window, device=device)
        batches = minibatches(len(pool_x), params.batch_size, generator)
        model.train()
        for step in range(params.iterations):
            batch = next(batches).to(device)
            loss = F.cross_entropy(model(pool_x[batch]), pool_y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            recent[step % window] = loss.detach()
            if (step + 1) % 100 == 0 or step + 1 == params.iterations:
                if not torch.isfinite(recent).all():
                    raise FloatingPointError(f"training loss is not finite by iteration {step + 1}")
                progress(step + 1, params.iterations, f"stage with {len(lineage)} earlier snapshots")
        model.eval()
        per_snapshot = [self._accuracy(model, part, y) for part in parts[1:]]
        return {"final_loss": float(recent.mean()), "steps": params.iterations, "pool_size": len(pool_x),
                "lineage": len(lineage),
                "adv_pool_accuracy": sum(per_snapshot) / len(per_snapshot) if per_snapshot else None,
                "adv_pool_accuracy_per_snapshot": per_snapshot}

    @staticmethod
    def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        correct = 0
        with torch.no_grad():
            for start in range(0, len(x), CRAFT_BATCH):
                correct += int((model(x[start:start + CRAFT_BATCH]).argmax(1) == y[start:start + CRAFT_BATCH]).sum())
        return correct / max(len(x), 1)
