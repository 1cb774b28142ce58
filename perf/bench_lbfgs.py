"""L-BFGS attack benchmark: rbench's batched projected L-BFGS vs scipy's L-BFGS-B run sample by sample.

On a sigmoid MLP 100-100 (like Szegedy et al.'s N100-100-10), trained for ``--epochs`` passes over
``--n-train`` real MNIST images, attacks the same N test images with the same target labels (random wrong
labels from a seeded generator, or every wrong label with ``--targets each``) through the SAME c-search
(:func:`rbench.plugins.attacks.lbfgs.minimal_adversarial`), once with each inner solver:

- ``batched``: :func:`~rbench.plugins.attacks.lbfgs.batched_inner`, the whole batch at once (as the plugin runs);
- ``scipy``: :func:`~rbench.plugins.attacks.lbfgs.scipy_inner`, ``scipy.optimize.minimize(method="L-BFGS-B")``
  per sample (float64 objective, torch gradients), the reference.

Reports each method's seconds (best of ``--repeats`` timed runs after one warm-up, repeats interleaved), the
time ratio scipy/batched (target >= 10), the mean-L2-distortion ratio batched/scipy over samples both attacks
fooled (target <= 1.05), success rates and how often the success flags agree. Writes JSON (``--out``, default
``bench/lbfgs.json``) and prints a summary.

    python perf/bench_lbfgs.py [--n 64] [--targets random|each] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import add_setup_options, fit, mnist, package_version, setup

from rbench.plugins import get_plugin
from rbench.plugins.attacks.lbfgs import LbfgsParams, batched_inner, minimal_adversarial, random_targets, scipy_inner

SPEED_TARGET = 10.0  # scipy seconds / batched seconds
DISTORTION_TARGET = 1.05  # batched mean L2 / scipy mean L2


def train(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int, lr: float) -> torch.nn.Module:
    """Sigmoid MLP 784-100-100-10, Adam, batches of 50; returned as the engine hands it to attacks."""
    torch.manual_seed(seed)
    plugin = get_plugin("model", "mlp")
    model = plugin.build(plugin.Params(widths=[100, 100], activation="sigmoid"))
    return fit(model, x, y, torch.device("cpu"), epochs=epochs, batch=50, lr=lr, seed=seed).requires_grad_(False)


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
            "mean_l2_successful": float(dist[name][ok].mean()) if ok.any() else None,
            "median_l2_successful": float(dist[name][ok].median()) if ok.any() else None,
        }
    both = outs["batched"].success & outs["scipy"].success
    time_ratio = methods["scipy"]["best_s"] / methods["batched"]["best_s"]
    dist_ratio = float(dist["batched"][both].mean() / dist["scipy"][both].mean()) if both.any() else float("nan")
    per_sample = (dist["batched"][both] / dist["scipy"][both].clamp_min(1e-12)).numpy()
    report = {
        "torch": torch.__version__, "scipy": package_version("scipy"), "python": platform.python_version(),
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "device": "cpu", "n": args.n, "targets": args.targets, "repeats": args.repeats,
        "model": "mlp widths=[100, 100] activation=sigmoid", "n_train": args.n_train, "epochs": args.epochs,
        "lr": args.lr, "train_s": train_s, "clean_accuracy": clean_acc, "params": params.model_dump(),
        "timing": "best of repeats (median also recorded); one untimed warm-up per method; repeats interleaved",
        "methods": methods,
        "time_ratio_scipy_over_batched": time_ratio,
        "time_ratio_median": methods["scipy"]["median_s"] / methods["batched"]["median_s"],
        "distortion_ratio_batched_over_scipy": dist_ratio,
        "per_sample_distortion_ratio": {"median": float(np.median(per_sample)), "min": float(per_sample.min()),
                                        "max": float(per_sample.max())} if len(per_sample) else None,
        "success_flags_agree": float((outs["batched"].success == outs["scipy"].success).float().mean()),
        "targets_met": {"speed >= 10x": time_ratio >= SPEED_TARGET,
                        "distortion <= 1.05x": dist_ratio <= DISTORTION_TARGET},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nL-BFGS attack, N={args.n}, targets={args.targets}, threads={report['threads']}, "
          f"torch {torch.__version__}, params {params.model_dump()}")
    for name, r in methods.items():
        print(f"  {name:8s} best {r['best_s']:7.3f}s  ({r['samples_per_s']:7.1f} samples/s)  success "
              f"{r['success_rate']:.3f}  mean L2 {r['mean_l2_successful']:.4f}")
    print(f"  speed ratio scipy/batched {time_ratio:.1f}x (target >= {SPEED_TARGET:g}x), mean-distortion ratio "
          f"batched/scipy {dist_ratio:.4f} (target <= {DISTORTION_TARGET}), success flags agree on "
          f"{100 * report['success_flags_agree']:.1f}%")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
