"""L-BFGS attack benchmark: rbench's batched projected L-BFGS vs scipy's L-BFGS-B run sample by sample.

On a sigmoid MLP 100-100 (like Szegedy et al.'s N100-100-10), trained for ``--epochs`` passes over
``--n-train`` real MNIST images, attacks the same N test images with the same target labels (random wrong
labels from a seeded generator, or every wrong label with ``--targets each``) through the SAME c-search
(:func:`rbench.plugins.attacks.lbfgs.minimal_adversarial`), once with each inner solver:

- ``batched``: :func:`~rbench.plugins.attacks.lbfgs.batched_inner`, the whole batch at once (as the plugin runs);
- ``scipy``: :func:`~rbench.plugins.attacks.lbfgs.scipy_inner`, ``scipy.optimize.minimize(method="L-BFGS-B")``
  per sample (float64 objective, torch gradients), the reference.

Reports each method's seconds (best of ``--repeats`` timed runs after one warm-up, repeats interleaved), success
rates and how often the success flags agree, and three targets, each printed and recorded as met or NOT met
(``common.write_report``, which also records when, at which commit and on what CPU it was measured):

- ``speed_scipy_over_batched``: scipy's best time over the batched solver's, at least 10;
- ``distortion_batched_over_scipy``: the mean L2 distortion of the batched solver over scipy's, on the samples
  both fooled, at most 1.05;
- ``success_gap_samples``: how many more samples one method fooled than the other, at most 1 (of N).

Stopping rules. Both solvers get the same budget and tolerances from :class:`LbfgsParams`, and the benchmark
checks (``stopping`` in the JSON) that scipy's defaults for what ``scipy_inner`` does not pass match the batched
solver's constants: ``max_iter`` -> ``maxiter``, ``history`` -> ``maxcor``, ``tol`` -> ``gtol`` (passed by
``scipy_inner``); the relative-decrease tolerance ``FTOL`` = 2.2e-9 -> ``ftol`` and ``MAX_LINE_SEARCH`` = 20 ->
``maxls``, not passed by ``scipy_inner`` (it lives in the plugin, which the benchmark does not change, and takes no
options), so scipy's defaults apply: ``ftol`` = 2.220446e-9 (machine epsilon * 1e7, 0.9% above ``FTOL``) and
``maxls`` = 20. What still differs, by construction: scipy's projected gradient is ``x - P(x - g)`` (an entry's
gradient capped at its distance to the bound it moves towards), the batched solver's is ``g`` with the entries at
a bound pointing outward zeroed, so near a bound the batched test is the stricter; scipy's line search is
Moré-Thuente (strong Wolfe), the batched one backtracking Armijo (``ARMIJO`` = 1e-4) with a float32 rounding slack
and a stop after a failed search without history; scipy's objective is float64, the batched one float32.

Exit status 1 when the two methods' results disagree (the distortion or the success-gap target NOT met), else 0
(a missed speed target is printed and recorded, not an error). Writes JSON (``--out``, default
``bench/lbfgs.json``) and prints a summary.

    python perf/bench_lbfgs.py [--n 64] [--targets random|each] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import add_setup_options, fit, mnist, package_version, setup, target, write_report

from rbench.plugins import get_plugin
from rbench.plugins.attacks import lbfgs
from rbench.plugins.attacks.lbfgs import LbfgsParams, batched_inner, minimal_adversarial, random_targets, scipy_inner

SPEED_TARGET = 10.0  # scipy seconds / batched seconds, at least
DISTORTION_TARGET = 1.05  # batched mean L2 / scipy mean L2, at most
SUCCESS_GAP_TARGET = 1  # |samples fooled by batched - samples fooled by scipy|, at most
FTOL_MATCH = 0.01  # scipy's default ftol and the batched solver's FTOL agree within this relative difference


def train(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int, lr: float) -> torch.nn.Module:
    """Sigmoid MLP 784-100-100-10, Adam, batches of 50; returned as the engine hands it to attacks."""
    torch.manual_seed(seed)
    plugin = get_plugin("model", "mlp")
    model = plugin.build(plugin.Params(widths=[100, 100], activation="sigmoid"))
    return fit(model, x, y, torch.device("cpu"), epochs=epochs, batch=50, lr=lr, seed=seed).requires_grad_(False)


def scipy_defaults() -> dict:
    """scipy's L-BFGS-B defaults (``ftol``, ``maxls``, ...), read from its signature; {} if scipy hides them."""
    try:
        from scipy.optimize._lbfgsb_py import _minimize_lbfgsb
    except ImportError:
        return {}
    return {k: p.default for k, p in inspect.signature(_minimize_lbfgsb).parameters.items()
            if isinstance(p.default, int | float) and not isinstance(p.default, bool)}


def stopping_rules(params: LbfgsParams) -> dict:
    """Each solver's stopping rules side by side, and whether they match (see the module's docstring)."""
    d = scipy_defaults()
    ftol = d.get("ftol")
    ftol_diff = abs(ftol - lbfgs.FTOL) / lbfgs.FTOL if ftol is not None else None
    return {
        "batched": {"max_iter": params.max_iter, "history": params.history, "tol (max projected-gradient entry)":
                    params.tol, "FTOL (relative decrease)": lbfgs.FTOL, "MAX_LINE_SEARCH": lbfgs.MAX_LINE_SEARCH,
                    "ARMIJO": lbfgs.ARMIJO, "dtype": "float32"},
        "scipy": {"maxiter": params.max_iter, "maxcor": params.history, "gtol": params.tol,
                  "ftol (scipy default, not passed by scipy_inner)": ftol,
                  "maxls (scipy default, not passed by scipy_inner)": d.get("maxls"), "maxfun": d.get("maxfun"),
                  "dtype": "float64"},
        "ftol_relative_difference": ftol_diff,
        "match": bool(ftol_diff is not None and ftol_diff <= FTOL_MATCH and d.get("maxls") == lbfgs.MAX_LINE_SEARCH),
        "passed_by_scipy_inner": ["maxiter", "maxcor", "gtol"],
        "differences": [
            "projected gradient: scipy max|x - P(x - g)| (capped at the distance to the bound), batched max|g| over "
            "entries not held at a bound (never smaller, so the batched test is the stricter near a bound)",
            "line search: scipy Moré-Thuente (strong Wolfe), batched backtracking Armijo (1e-4) with a float32 "
            "rounding slack; a sample with no history whose search fails stops",
            "objective: scipy float64, batched float32",
        ],
    }


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="test images attacked (default 64)")
    ap.add_argument("--targets", choices=["random", "each"], default="random")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats per method, best is reported (default 2)")
    add_setup_options(ap, None)
    ap.add_argument("--n-train", type=int, default=10000, help="training images (default 10000)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--params", default="{}", help="LbfgsParams overrides as JSON (default: the plugin defaults)")
    ap.add_argument("--out", default="bench/lbfgs.json")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup(args)
    params = LbfgsParams(**json.loads(args.params))

    x_train, y_train = mnist("train", args.n_train, args.seed)
    x, y = mnist("test", args.n, args.seed + 1)
    t0 = time.perf_counter()
    model = train(x_train, y_train, args.epochs, args.seed, args.lr)
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        clean_acc = float((model(x).argmax(1) == y).float().mean())
    print(f"sigmoid MLP 100-100 trained in {train_s:.1f}s, clean accuracy {clean_acc:.3f} on the {args.n} images",
          flush=True)
    targets = None if args.targets == "each" else random_targets(y, 10, torch.Generator().manual_seed(args.seed))
    inners = {"batched": batched_inner(model, params), "scipy": scipy_inner(model, params)}

    outs, seconds = {}, {name: [] for name in inners}
    for name, inner in inners.items():  # warm-up (also the outputs compared below)
        outs[name] = minimal_adversarial(model, x, y, targets, params, inner)
    for _ in range(args.repeats):
        for name, inner in inners.items():
            t0 = time.perf_counter()
            minimal_adversarial(model, x, y, targets, params, inner)
            seconds[name].append(time.perf_counter() - t0)

    methods = {}
    dist = {}
    for name, out in outs.items():
        dist[name] = (out.x_adv - x).flatten(1).norm(dim=1)
        ok = out.success
        methods[name] = {
            "seconds": seconds[name], "best_s": min(seconds[name]), "median_s": statistics.median(seconds[name]),
            "samples_per_s": args.n / min(seconds[name]), "success_rate": float(ok.float().mean()),
            "successes": int(ok.sum()),
            "mean_l2_successful": float(dist[name][ok].mean()) if ok.any() else None,
            "median_l2_successful": float(dist[name][ok].median()) if ok.any() else None,
        }
    both = outs["batched"].success & outs["scipy"].success
    time_ratio = methods["scipy"]["best_s"] / methods["batched"]["best_s"]
    dist_ratio = float(dist["batched"][both].mean() / dist["scipy"][both].mean()) if both.any() else float("nan")
    per_sample = (dist["batched"][both] / dist["scipy"][both].clamp_min(1e-12)).numpy()
    gap = abs(methods["batched"]["successes"] - methods["scipy"]["successes"])
    stopping = stopping_rules(params)
    report = {
        "torch": torch.__version__, "scipy": package_version("scipy"), "python": platform.python_version(),
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "device": "cpu", "n": args.n, "target_labels": args.targets, "repeats": args.repeats,
        "model": "mlp widths=[100, 100] activation=sigmoid", "n_train": args.n_train, "epochs": args.epochs,
        "lr": args.lr, "train_s": train_s, "clean_accuracy": clean_acc, "params": params.model_dump(),
        "timing": "best of repeats (median also recorded); one untimed warm-up per method; repeats interleaved",
        "stopping": stopping,
        "methods": methods,
        "time_ratio_scipy_over_batched": time_ratio,
        "time_ratio_median": methods["scipy"]["median_s"] / methods["batched"]["median_s"],
        "distortion_ratio_batched_over_scipy": dist_ratio,
        "per_sample_distortion_ratio": {"median": float(np.median(per_sample)), "min": float(per_sample.min()),
                                        "max": float(per_sample.max())} if len(per_sample) else None,
        "success_flags_agree": float((outs["batched"].success == outs["scipy"].success).float().mean()),
        "success_flags_disagree_samples": int((outs["batched"].success != outs["scipy"].success).sum()),
        "targets": {
            "speed_scipy_over_batched": target(time_ratio, SPEED_TARGET, at_least=True),
            "distortion_batched_over_scipy": target(dist_ratio, DISTORTION_TARGET),
            "success_gap_samples": target(gap, SUCCESS_GAP_TARGET),
        },
    }

    print(f"\nL-BFGS attack, N={args.n}, targets={args.targets}, threads={report['threads']}, "
          f"torch {torch.__version__}, params {params.model_dump()}")
    for name, r in methods.items():
        l2 = r["mean_l2_successful"]
        print(f"  {name:8s} best {r['best_s']:7.3f}s  ({r['samples_per_s']:7.1f} samples/s)  success "
              f"{r['success_rate']:.3f} ({r['successes']}/{args.n})  mean L2 "
              f"{'-' if l2 is None else f'{l2:.4f}'}")
    print(f"  success flags agree on {100 * report['success_flags_agree']:.1f}% "
          f"({report['success_flags_disagree_samples']} samples differ)")
    diff = stopping["ftol_relative_difference"]
    print(f"  stopping rules: gtol = tol = {params.tol:g}, maxiter = {params.max_iter}, maxcor = {params.history} "
          f"(passed); scipy's default ftol {stopping['scipy']['ftol (scipy default, not passed by scipy_inner)']} vs "
          f"FTOL {lbfgs.FTOL:g} ({'?' if diff is None else f'{100 * diff:.1f}%'} apart), maxls "
          f"{stopping['scipy']['maxls (scipy default, not passed by scipy_inner)']} vs {lbfgs.MAX_LINE_SEARCH}: "
          f"{'match' if stopping['match'] else 'DIFFER'}")
    if not stopping["match"]:
        print("WARNING: scipy's defaults no longer match the batched solver's stopping rules", file=sys.stderr)
    write_report(report, Path(args.out))
    agree = all(report["targets"][k]["met"] for k in ("distortion_batched_over_scipy", "success_gap_samples"))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
