"""Real-coded evolutionary operators on whole populations at once (torch, batched): simulated binary crossover
(SBX, Deb & Agrawal 1995) and polynomial mutation (Deb & Goyal 1996), in the bounded forms of Deb's NSGA-II code
(as pymoo has them); Nguyen et al. 2015 evolved their fooling images with these two operators (in sferes2).

Written here rather than taken from a library: none of the packages this project keeps applies them to a torch
population in one batched call drawing from a given ``torch.Generator`` (pymoo and DEAP work on numpy arrays or
one individual at a time; EvoTorch's operators draw from their Problem object's own generator and need one). Every
random number comes from ``generator``; genes live in [low, high].
"""

from __future__ import annotations

import torch

#: pairs of genes closer than this are not crossed (Deb's EPS): their children would be the parents
_EPS = 1e-14


def _uniform(n: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)


def sbx(p1: torch.Tensor, p2: torch.Tensor, *, eta: float, rate: float, low: float = 0.0, high: float = 1.0,
        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounded SBX of the parent pairs ``(p1[i], p2[i])`` (each (P, D)): a pair is crossed with probability
    ``rate``; in a crossed pair each gene with probability 0.5 (when the parents differ there), spread by the
    distribution index ``eta``; children are clipped to [low, high] and swapped with probability 0.5 per gene.
    Genes not crossed are copied. Returns two (P, D) children tensors."""
    c1, c2 = p1.clone(), p2.clone()
    crossed = _uniform(len(p1), p1, generator) < rate
    genes = _uniform(p1.numel(), p1, generator).view_as(p1) < 0.5
    active = genes & crossed[:, None] & ((p1 - p2).abs() > _EPS)
    if not bool(active.any()):
        return c1, c2
    a, b = p1[active], p2[active]
    y1, y2 = torch.minimum(a, b), torch.maximum(a, b)
    u = _uniform(len(a), a, generator)
    span = y2 - y1
    power = 1.0 / (eta + 1.0)

    def spread(beta: torch.Tensor) -> torch.Tensor:
        alpha = 2.0 - beta.pow(-(eta + 1.0))
        ua = u * alpha
        return torch.where(u <= 1.0 / alpha, ua.pow(power), (1.0 / (2.0 - ua)).pow(power))

    lower = 0.5 * ((y1 + y2) - spread(1.0 + 2.0 * (y1 - low) / span) * span)
    upper = 0.5 * ((y1 + y2) + spread(1.0 + 2.0 * (high - y2) / span) * span)
    lower, upper = lower.clamp(low, high), upper.clamp(low, high)
    swap = _uniform(len(a), a, generator) < 0.5
    c1[active] = torch.where(swap, upper, lower)
    c2[active] = torch.where(swap, lower, upper)
    return c1, c2


def polynomial_mutation(x: torch.Tensor, *, eta: float, rate: float, low: float = 0.0, high: float = 1.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Bounded polynomial mutation: each gene of ``x`` ((P, D)) is mutated with probability ``rate``, by a step
    whose distribution index is ``eta`` (larger: smaller steps), scaled to the distance to the nearer bound's side
    it moves towards, and clipped to [low, high]. Returns a new tensor."""
    out = x.clone()
    chosen = _uniform(x.numel(), x, generator).view_as(x) < rate
    if not bool(chosen.any()):
        return out
    y = x[chosen]
    u = _uniform(len(y), y, generator)
    width = high - low
    power = 1.0 / (eta + 1.0)
    down = 2.0 * u + (1.0 - 2.0 * u) * (1.0 - (y - low) / width).pow(eta + 1.0)
    up = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * (1.0 - (high - y) / width).pow(eta + 1.0)
    delta = torch.where(u <= 0.5, down.pow(power) - 1.0, 1.0 - up.pow(power))
    out[chosen] = (y + delta * width).clamp(low, high)
    return out
