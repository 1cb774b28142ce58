"""Box-constrained L-BFGS (Szegedy et al. 2013, "Intriguing properties of neural networks").

For each input ``x`` with a target label ``l`` (never the true label), minimize over ``x'`` in the box [0, 1]^m

    c * ||x' - x||_2^2 + CE(f(x'), l)

and search over ``c > 0`` for the smallest distortion that still makes the model predict ``l``. The distortion
term is the *squared* L2 norm (as foolbox 1's ``LBFGSAttack``), which is smooth at ``x' = x``.

The c-search (:func:`minimal_adversarial`) is written once for any inner solver ``inner(x, target, c, x0)``:

- :func:`batched_inner`: a batched projected L-BFGS on the model's device; every sample has its own ``c``, its
  own history (``S``, ``Y`` shaped (m, B, D)), two-loop recursion (per-sample dot products), backtracking
  Armijo line search, active set at the box bounds, restarts and convergence flag. No loop over samples;
- :func:`scipy_inner`: ``scipy.optimize.minimize(method="L-BFGS-B")`` sample by sample, the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from rbench.attack import AttackOutput, MinimizationAttack

#: ``inner(x, target, c, x0) -> x_adv``: approximately minimizes ``c * ||x' - x||^2 + CE(f(x'), target)`` over
#: the box, per sample, starting at ``x0``. Batched tensors: x, x0 (B, C, H, W), target int64 (B,), c (B,).
Inner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

ARMIJO = 1e-4  # sufficient-decrease constant of the line search
MAX_LINE_SEARCH = 20  # backtracking halvings before a sample's line search gives up
FTOL = 2.2e-9  # relative objective decrease below which a sample has converged (scipy's L-BFGS-B default)


class LbfgsParams(BaseModel):
    """``targets``: ``"random"`` (a uniformly random wrong label per sample, drawn from the generator) or
    ``"each"`` (every wrong label; the smallest successful distortion is kept; 9x the work on MNIST).

    The c-search starts at ``c_init``, multiplies c by 10 while the attack succeeds (at most ``c_search_steps``
    times) or divides it by 10 while it fails (idem), then bisects ``bisection_steps`` times (geometric mean)
    between the largest succeeding and the smallest failing c. Each c runs ``max_iter`` L-BFGS iterations with
    ``history`` correction pairs, stopping early where the projected gradient's largest entry is below ``tol``.

    Defaults, chosen by experiment on MLPs trained on MNIST (sigmoid 100-100 after 2 and 10 epochs, ReLU
    100-100; 64 test images, random targets; mean L2 of the minimal adversarials, all found): the
    success/failure boundary in c lies mostly within 0.1-10 (geometric means 0.45-1.3), so ``c_init = 1``
    brackets it within one or two rounds (c_init in 0.01-10 gives the same distortions, only more rounds), and
    5 decades each way reach c = 1e-5 (practically pure cross-entropy) and 1e5. After 8 bisections the bracket
    is 10^(1/256) wide: 8 -> 12 bisections lowers the mean distortion by < 0.1%, 4 bisections costs 1.5-2%.
    ``max_iter = 30``: the mean distortion of 50 iterations (within 0.2%) and within 0.15% of fully converged
    runs (500 iterations, 12 bisections), 20-30% faster than 50 (20 costs up to 0.3%). ``history`` 5, 10 or 20
    and ``tol`` 0 to 1e-3 change it by < 0.05%.
    """

    model_config = ConfigDict(extra="forbid")
    targets: Literal["random", "each"] = "random"
    c_init: Annotated[float, Field(gt=0)] = 1.0
    c_search_steps: Annotated[int, Field(ge=0, le=1000)] = 5
    bisection_steps: Annotated[int, Field(ge=0, le=1000)] = 8
    max_iter: Annotated[int, Field(ge=1, le=100_000)] = 30
    history: Annotated[int, Field(ge=1)] = 10
    tol: Annotated[float, Field(ge=0)] = 1e-5


# ------------------------------------------------------------------------------------------ inner solvers


def _objective(model: torch.nn.Module, z: torch.Tensor, x: torch.Tensor, target: torch.Tensor, c: torch.Tensor,
               shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample objective (B,) and its gradient (B, D) w.r.t. the flat inputs ``z`` only."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        ce = F.cross_entropy(model(z.view(len(z), *shape)), target, reduction="none")
        f = c * (z - x).square().sum(1) + ce
        (g,) = torch.autograd.grad(f.sum(), z)
    return f.detach(), g


def _rows(t: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return t if idx is None else t[idx]


def lbfgs_box(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, c: torch.Tensor, x0: torch.Tensor,
              max_iter: int, history: int, tol: float) -> torch.Tensor:
    """Batched projected L-BFGS for ``c * ||x' - x||^2 + CE(model(x'), target)`` over [0, 1], from ``x0``.

    Per sample: the gradient is projected (entries at a bound that point outward are zeroed: the active set),
    the two-loop recursion turns it into a direction (entries leaving the box at a bound are zeroed; a
    non-descent direction falls back to the scaled projected gradient), and a backtracking Armijo search on
    the projected path ``clip(x' + a d)`` picks the step, all samples evaluated in one batch per trial (a sample
    whose condition holds freezes its step). A pair with ``s.y <= eps * y.y`` restarts that sample's history, as
    does a failed line search (a second failure, without history, stops the sample). Samples whose projected
    gradient has no entry above ``tol``, or whose objective no longer decreases, stop moving.
    """
    shape = tuple(x.shape[1:])
    xf = x.detach().flatten(1)
    c = c.to(xf)
    z = x0.detach().flatten(1).clamp(0, 1).clone()
    out = z.clone()  # the final iterates; rows leave the working set below once they stop
    B, D = z.shape
    m = history
    eps = torch.finfo(z.dtype).eps
    noise = 4 * eps
    S = z.new_zeros(m, B, D)
    Y = z.new_zeros(m, B, D)
    rho = z.new_zeros(m, B)  # 1 / s.y, 0 for an empty or discarded slot: it then drops out of the recursion
    gamma = z.new_ones(B)  # s.y / y.y of the newest pair: the initial inverse Hessian scale
    filled = [False] * m  # slots written at least once (for any sample): empty ones are skipped
    ptr = 0
    rows = torch.arange(B, device=z.device)  # the working set: rows of the batch still moving
    f, g = _objective(model, z, xf, target, c, shape)
    active = torch.ones(B, dtype=torch.bool, device=z.device)
    for _ in range(max_iter):
        fixed = (z - g).clamp_(0, 1) == z  # at a bound with the gradient pointing outward (or g = 0)
        pg = g.masked_fill(fixed, 0)
        active &= pg.abs().amax(1) > tol
        n_active = int(active.sum())
        if n_active == 0:
            break
        if n_active <= 0.8 * len(z):  # shrink the working set to the samples still moving
            out[rows] = z
            keep = active.nonzero().squeeze(1)
            rows, z, f, g, pg, fixed = rows[keep], z[keep], f[keep], g[keep], pg[keep], fixed[keep]
            xf, target, c, gamma = xf[keep], target[keep], c[keep], gamma[keep]
            S, Y, rho = S[:, keep], Y[:, keep], rho[:, keep]
            active = active[keep]
        n = len(z)
        # two-loop recursion, every sample at once (rho = 0 masks slots a sample does not own)
        has_history = (rho != 0).any(0)
        scale = torch.where(has_history, gamma, 1 / pg.norm(dim=1).clamp_min(1e-12))
        q = pg.clone()
        slots = [(ptr - 1 - k) % m for k in range(m) if filled[(ptr - 1 - k) % m]]  # newest first
        alphas = []
        for k in slots:
            a = rho[k] * torch.linalg.vecdot(S[k], q)
            q.addcmul_(Y[k], a[:, None], value=-1)
            alphas.append(a)
        q.mul_(scale[:, None])
        for k, a in zip(reversed(slots), reversed(alphas), strict=True):
            q.addcmul_(S[k], (a - rho[k] * torch.linalg.vecdot(Y[k], q))[:, None])
        d = q.neg_()
        d.masked_fill_(fixed | ((z + d).clamp_(0, 1) == z), 0)  # also entries leaving the box at a bound
        uphill = torch.linalg.vecdot(d, pg) >= 0
        if bool(uphill.any()):  # not a descent direction: scaled projected gradient, forget the history
            d = torch.where(uphill[:, None], -pg / pg.norm(dim=1, keepdim=True).clamp_min(1e-12), d)
            rho[:, uphill] = 0
            has_history &= ~uphill
        # backtracking Armijo line search on the projected path, batched over the samples still searching
        step = z.new_ones(n)
        z_new, f_new, g_new = z.clone(), f.clone(), g.clone()
        searching = active.clone()
        accepted = torch.zeros_like(active)
        for _ls in range(MAX_LINE_SEARCH):
            idx = searching.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            sub = None if len(idx) == n else idx
            zr, fr, gr = _rows(z, sub), _rows(f, sub), _rows(g, sub)
            zt = (zr + _rows(step, sub)[:, None] * _rows(d, sub)).clamp_(0, 1)
            ft, gt = _objective(model, zt, _rows(xf, sub), _rows(target, sub), _rows(c, sub), shape)
            # sufficient decrease, up to the objective's rounding (a step at the noise floor ends the sample)
            a = _rows(step, sub)
            slope = torch.linalg.vecdot(gr, zt - zr)  # a * (directional derivative along the projected path)
            ok = (ft <= fr + ARMIJO * slope + noise * fr.abs()) & torch.isfinite(ft)
            good = idx[ok]
            z_new[good], f_new[good], g_new[good] = zt[ok], ft[ok], gt[ok]
            searching[good] = False
            accepted[good] = True
            # next trial: the minimizer of the quadratic through f(0), f'(0) and f(a), kept within [a/10, a/2]
            curv = torch.nan_to_num(ft - fr - slope, nan=math.inf).clamp_min(1e-30)
            nxt = (-slope * a / (2 * curv)).clamp(0.1 * a, 0.5 * a)
            step[idx[~ok]] = nxt[~ok]
        failed = active & ~accepted
        active &= ~(failed & ~has_history)  # steepest descent found no decrease either: stuck
        rho[:, failed] = 0  # retry from steepest descent
        # curvature pairs
        s = z_new - z
        yv = g_new - g
        sy = torch.linalg.vecdot(s, yv)
        yy = torch.linalg.vecdot(yv, yv)
        curved = accepted & (sy > eps * yy)
        rho[:, accepted & ~curved] = 0  # curvature condition fails: restart
        S[ptr] = s
        Y[ptr] = yv
        rho[ptr] = torch.where(curved, 1 / sy.clamp_min(1e-30), 0)
        gamma = torch.where(curved, sy / yy.clamp_min(1e-30), gamma)
        filled[ptr] = True
        ptr = (ptr + 1) % m
        rel = (f - f_new) / torch.maximum(torch.maximum(f.abs(), f_new.abs()), torch.ones_like(f))
        active &= ~(accepted & (rel <= FTOL))
        z, f, g = z_new, f_new, g_new
    out[rows] = z
    return out.view_as(x)


def batched_inner(model: torch.nn.Module, params: LbfgsParams) -> Inner:
    """The batched projected L-BFGS (:func:`lbfgs_box`) as an inner solver."""

    def inner(x: torch.Tensor, target: torch.Tensor, c: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return lbfgs_box(model, x, target, c, x0, params.max_iter, params.history, params.tol)

    return inner


def scipy_inner(model: torch.nn.Module, params: LbfgsParams) -> Inner:
    """Reference inner solver: ``scipy.optimize.minimize(method="L-BFGS-B")`` one sample at a time, on a float64
    objective (the distortion term in numpy, the cross-entropy and its input gradient from torch)."""
    from scipy.optimize import minimize

    def inner(x: torch.Tensor, target: torch.Tensor, c: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape[1:])
        D = x[0].numel()
        bounds = [(0.0, 1.0)] * D
        out = torch.empty_like(x)
        for i in range(len(x)):
            xi = x[i].detach().flatten().double().cpu().numpy()
            ci, ti = float(c[i]), target[i:i + 1]

            def fun(z: np.ndarray, xi: np.ndarray = xi, ci: float = ci, ti: torch.Tensor = ti
                    ) -> tuple[float, np.ndarray]:
                zt = torch.from_numpy(z).to(x.device, torch.float32).view(1, *shape).requires_grad_(True)
                with torch.enable_grad():
                    ce = F.cross_entropy(model(zt), ti, reduction="sum")
                    (g,) = torch.autograd.grad(ce, zt)
                diff = z - xi
                grad = 2 * ci * diff + g.detach().flatten().double().cpu().numpy()
                return ci * float(diff @ diff) + float(ce.detach()), grad

            z0 = x0[i].detach().flatten().double().cpu().numpy()
            res = minimize(fun, z0, jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": params.max_iter, "maxcor": params.history, "gtol": params.tol})
            out[i] = torch.from_numpy(np.clip(res.x, 0, 1)).to(out).view(shape)
        return out

    return inner


# -------------------------------------------------------------------------------------------- the c-search


def random_targets(y: torch.Tensor, num_classes: int, generator: torch.Generator | None) -> torch.Tensor:
    """A uniformly random label other than ``y`` per sample, drawn from ``generator``."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
    return (y + shift) % num_classes


@torch.no_grad()
def _predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def _search(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, params: LbfgsParams,
            inner: Inner) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The c-search for fixed targets: (best x_adv, its L2 distortion (inf: none found), its c)."""
    n = len(x)
    dev = x.device
    best = x.detach().clone()
    best_dist = torch.full((n,), math.inf, device=dev)
    best_c = torch.zeros(n, device=dev)
    best_dist[_predict(model, x) == targets] = 0  # already the target: x itself, nothing can beat it
    c = torch.full((n,), float(params.c_init), dtype=torch.float64, device=dev)
    lo = torch.zeros(n, dtype=torch.float64, device=dev)  # largest succeeding c (0: none yet)
    hi = torch.full((n,), math.inf, dtype=torch.float64, device=dev)  # smallest failing c (inf: none yet)

    def attempt(idx: torch.Tensor, cs: torch.Tensor) -> torch.Tensor:
        xa = inner(x[idx], targets[idx], cs.float(), x[idx]).detach().clamp(0, 1)
        ok = _predict(model, xa) == targets[idx]
        dist = (xa - x[idx]).flatten(1).norm(dim=1)
        better = ok & (dist < best_dist[idx])
        win = idx[better]
        best[win], best_dist[win], best_c[win] = xa[better], dist[better], cs[better].float()
        return ok

    # exponential search: x10 while succeeding (find a failing c), /10 while failing (find a succeeding c)
    searching = best_dist > 0
    for step in range(params.c_search_steps + 1):
        idx = searching.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        ok = attempt(idx, c[idx])
        lo[idx[ok]] = c[idx[ok]]
        hi[idx[~ok]] = c[idx[~ok]]
        up = ok & torch.isinf(hi[idx])
        down = ~ok & (lo[idx] == 0)
        c[idx[up]] *= 10
        c[idx[down]] /= 10
        if step == params.c_search_steps:
            break
        searching[idx[~(up | down)]] = False
    # bisection (geometric) between the largest succeeding and the smallest failing c
    bracketed = (best_dist > 0) & (lo > 0) & torch.isfinite(hi)
    idx = bracketed.nonzero().squeeze(1)
    for _ in range(params.bisection_steps if len(idx) else 0):
        mid = torch.sqrt(lo[idx] * hi[idx])
        ok = attempt(idx, mid)
        lo[idx[ok]] = mid[ok]
        hi[idx[~ok]] = mid[~ok]
    return best, best_dist, best_c


def minimal_adversarial(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None,
                        params: LbfgsParams, inner: Inner | None = None) -> AttackOutput:
    """The L-BFGS attack with any inner solver (default :func:`batched_inner`).

    ``targets``: int64 (N,) target labels, or None to try every label other than ``y`` and keep the smallest
    successful distortion. Returns the minimal adversarial per sample (``x`` itself where nothing succeeded),
    ``success`` = the model predicts the target on it, and extras ``targets`` (int64, the returned adversarial's
    target) and ``c`` (float32, its c; 0 where nothing succeeded or ``x`` already had the target label).
    """
    inner = inner if inner is not None else batched_inner(model, params)
    x = x.detach()
    n = len(x)
    if targets is not None:
        best, dist, best_c = _search(model, x, targets, params, inner)
    else:
        with torch.no_grad():
            k = model(x[:1]).shape[1]
        wrong = (y[:, None] + torch.arange(1, k, device=x.device)) % k  # (N, K-1)
        rep = x.repeat_interleave(k - 1, dim=0)
        adv, dist, cs = _search(model, rep, wrong.flatten(), params, inner)
        dist = dist.view(n, k - 1)
        pick = dist.argmin(1)
        rows = torch.arange(n, device=x.device) * (k - 1) + pick
        targets = wrong[torch.arange(n, device=x.device), pick]
        best, dist, best_c = adv[rows], dist[torch.arange(n, device=x.device), pick], cs[rows]
    found = torch.isfinite(dist)
    best = torch.where(found.view(-1, *[1] * (x.dim() - 1)), best, x).to(torch.float32)
    success = _predict(model, best) == targets  # re-predicted on the returned batch, as the engine checks
    return AttackOutput(best, success, {"targets": targets.to(torch.int64),
                                        "c": torch.where(found, best_c, 0).to(torch.float32)})


class Lbfgs(MinimizationAttack):
    """Targeted box-constrained L-BFGS attack of Szegedy et al. (2013) with a search over c for the smallest L2
    distortion. Objective ``c * ||x' - x||_2^2 + CE(f(x'), target)`` (squared L2, smooth at x' = x, as foolbox
    1's LBFGSAttack), minimized by a batched projected L-BFGS on the device. ``extras["targets"]`` holds each
    sample's target label; ``success`` is True where the model predicts it."""

    name = "lbfgs"
    Params = LbfgsParams

    def targeted(self, params: LbfgsParams) -> bool:
        return True

    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: LbfgsParams, *,
            generator: torch.Generator | None = None) -> AttackOutput:
        targets = None
        if params.targets == "random":
            with torch.no_grad():
                k = model(x[:1]).shape[1]
            targets = random_targets(y, k, generator)
        return minimal_adversarial(model, x, y, targets, params)
