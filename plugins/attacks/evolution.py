"""Real-coded evolutionary operators on whole populations at once (torch, batched): simulated binary crossover
(SBX, Deb & Agrawal 1995) and polynomial mutation (Deb & Goyal 1996), in the bounded forms of Deb's NSGA-II code
(as pymoo has them); Nguyen et al. 2015 evolved their fooling images with these two operators (in sferes2).

Written here rather than taken from a library: none of the packages this project keeps applies them to a torch
population in one batched call drawing from a given ``torch.Generator`` (pymoo and DEAP work on numpy arrays or
one individual at a time; EvoTorch's operators draw from their Problem object's own generator and need one). Every
random number comes from ``generator``; genes live in [low, high].

Each mask is turned into flat indices once and the chosen genes are read and written through them (boolean-mask
indexing would search the mask again at every use), and where a gene takes one of two branches, the power is
taken of the chosen branch only (``pow`` dominates what is left). Both change the speed, not a bit of the result.
"""

from __future__ import annotations

import numpy as np
import torch

#: pairs of genes closer than this are not crossed (Deb's EPS): their children would be the parents
_EPS = 1e-14


def _uniform(n: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)


def _where_true(mask: torch.Tensor) -> torch.Tensor:
    """Flat int64 indices of the true entries of ``mask``, in order. On CPU through numpy: ``torch.nonzero`` takes
    several times as long for the tens of thousands of genes of one generation."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.flatten().nonzero().flatten()


def sbx(p1: torch.Tensor, p2: torch.Tensor, *, eta: float, rate: float, low: float = 0.0, high: float = 1.0,
        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounded SBX of the parent pairs ``(p1[i], p2[i])`` (each (P, D)): a pair is crossed with probability
    ``rate``; in a crossed pair each gene with probability 0.5 (when the parents differ there), spread by the
    distribution index ``eta``; children are clipped to [low, high] and swapped with probability 0.5 per gene.
    Genes not crossed are copied. Returns two (P, D) children tensors."""
    c1, c2 = p1.clone(memory_format=torch.contiguous_format), p2.clone(memory_format=torch.contiguous_format)
    crossed = _uniform(len(p1), p1, generator) < rate
    genes = _uniform(p1.numel(), p1, generator).view_as(p1) < 0.5
    active = _where_true(genes & crossed[:, None] & ((p1 - p2).abs() > _EPS))
    if not len(active):
        return c1, c2
    a, b = p1.reshape(-1)[active], p2.reshape(-1)[active]
    y1, y2 = torch.minimum(a, b), torch.maximum(a, b)
    u = _uniform(len(a), a, generator)
    span = y2 - y1
    power = 1.0 / (eta + 1.0)

    def spread(beta: torch.Tensor) -> torch.Tensor:
        alpha = 2.0 - beta.pow(-(eta + 1.0))
        ua = u * alpha
        return torch.where(u <= 1.0 / alpha, ua, 1.0 / (2.0 - ua)).pow(power)

    lower = 0.5 * ((y1 + y2) - spread(1.0 + 2.0 * (y1 - low) / span) * span)
    upper = 0.5 * ((y1 + y2) + spread(1.0 + 2.0 * (high - y2) / span) * span)
    lower, upper = lower.clamp(low, high), upper.clamp(low, high)
    swap = _uniform(len(a), a, generator) < 0.5
    c1.view(-1)[active] = torch.where(swap, upper, lower)
    c2.view(-1)[active] = torch.where(swap, lower, upper)
    return c1, c2


def polynomial_mutation(x: torch.Tensor, *, eta: float, rate: float, low: float = 0.0, high: float = 1.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Bounded polynomial mutation: each gene of ``x`` ((P, D)) is mutated with probability ``rate``, by a step
    whose distribution index is ``eta`` (larger: smaller steps), scaled to the distance to the nearer bound's side
    it moves towards, and clipped to [low, high]. Returns a new tensor."""
    out = x.clone(memory_format=torch.contiguous_format)
    chosen = _where_true(_uniform(x.numel(), x, generator) < rate)
    if not len(chosen):
        return out
    y = x.reshape(-1)[chosen]
    u = _uniform(len(y), y, generator)
    width = high - low
    power = 1.0 / (eta + 1.0)
    lower = u <= 0.5  # the step goes down; each gene's powers are taken of its own branch only
    base = torch.where(lower, 1.0 - (y - low) / width, 1.0 - (high - y) / width).pow(eta + 1.0)
    down = 2.0 * u + (1.0 - 2.0 * u) * base
    up = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * base
    root = torch.where(lower, down, up).pow(power)
    delta = torch.where(lower, root - 1.0, 1.0 - root)
    out.view(-1)[chosen] = (y + delta * width).clamp(low, high)
    return out
