"""Input gradients and norm-ball geometry shared by the gradient attacks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TINY = 1e-12


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample margin (Carlini & Wagner 2017): the largest wrong logit minus the true one (positive once the
    sample is misclassified). Unlike the cross-entropy it does not flatten where the softmax saturates."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    wrong = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return wrong - true


def loss_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Gradient w.r.t. ``x`` only (the model's parameters stay frozen) of the summed cross-entropy (``"ce"``) or
    of the summed :func:`margin_loss` (``"margin"``)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        value = F.cross_entropy(logits, y, reduction="sum") if loss == "ce" else margin_loss(logits, y).sum()
        (grad,) = torch.autograd.grad(value, x)
    return grad


def l2_normalize(g: torch.Tensor) -> torch.Tensor:
    """``g / ||g||_2`` per sample, 0 where ``g`` is 0. A sample whose norm is below :data:`TINY` is divided by its
    largest entry first: dividing by ``TINY`` instead (as before) shrank a saturated softmax's tiny but meaningful
    gradient to a step of almost nothing, and its squares may underflow float32 (1e-25 squared is 0), so its norm
    cannot be taken directly. Samples above it are divided as before, to the bit."""
    flat = g.flatten(1)
    norms = flat.norm(dim=1, keepdim=True)
    peak = flat.abs().amax(dim=1, keepdim=True)
    scaled = flat / torch.where(peak > 0, peak, torch.ones_like(peak))
    rescaled = scaled / scaled.norm(dim=1, keepdim=True).clamp_min(1.0)  # its norm is at least 1 where peak > 0
    # "> 0" too: in float16 TINY itself rounds to 0, and a zero gradient would divide 0 by 0; finite: a norm that
    # overflowed (float16 gradients of a few thousand) would divide to 0, rescaled it is a unit step
    direct = (norms >= TINY) & (norms > 0) & torch.isfinite(norms)
    return torch.where(direct, flat / norms.clamp_min(TINY), rescaled).view_as(g)


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Project perturbations onto the ``norm`` ball of radius ``eps``."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    norms = delta.flatten(1).norm(dim=1).clamp_min(TINY)
    factor = (eps / norms).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.dim() - 1)))


def random_in_ball(like: torch.Tensor, norm: str, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform samples from the ``norm`` ball of radius ``eps`` (shape of ``like``)."""
    if norm == "linf":
        u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return (2 * u - 1) * eps
    n = like[0].numel()
    direction = l2_normalize(torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype))
    radius = torch.rand(len(like), generator=generator, device=like.device, dtype=like.dtype) ** (1.0 / n)
    return direction * (eps * radius).view(-1, *([1] * (like.dim() - 1)))
