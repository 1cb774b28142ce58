"""What ``rbench.evaluate`` costs over doing the same evaluation by hand, and what its cache saves.

One LeNet trained briefly (outside rbench, as a user would), the default attack set on N MNIST test images
(FGSM and PGD Linf at 0.1 and 0.3, PGD with 40 steps and random start on the cross-entropy and on the logit
margin, Gaussian noise of the same L2 size, clean):

- ``handwritten``: the tight loop a user writes for the same work -- batches of 250, the model in eval mode with
  frozen parameters and the channels_last layout (rbench's, which is faster for convolutions on CPU),
  ``torch.autograd.grad`` on the input, the same PGD step and projection, one forward per batch for the accuracy
  -- and nothing stored;
- ``evaluate_cold``: ``rbench.evaluate(model, n=N)`` on an empty store (every job computed, checked, stored);
- ``evaluate_warm``: the same call again (everything read back from the store and re-checked).

Targets (ratios of best times, measured in one run): cold at most 1.25x the hand-written loop (the price of the
store, the checks and the provenance); warm at most 0.1x (a re-run is nearly free). The two methods' accuracies
must agree, row by row: exactly (to one image) for clean and FGSM, within three standard errors of a difference
of two rates for the random-start PGDs and the noise, whose draws differ; else the script fails. Writes
``bench/eval.json``.

    python perf/bench_eval.py [--n 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import print_table, speed_ratios, summarize_times, target, write_report

import rbench
from rbench.data import load_split, subset_indices
from rbench.plugins import get_plugin

COLD_TARGET, WARM_TARGET = 1.25, 0.1
EPS = (0.1, 0.3)
STEPS, BATCH = 40, 250


def user_lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    plugin = get_plugin("model", "lenet")
    model = plugin.build(plugin.Params())
    images, labels = load_split("mnist", "train")
    x = torch.tensor(images[:4000].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    y = torch.tensor(labels[:4000], dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for i in range(0, len(x), 64):
        opt.zero_grad()
        F.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
        opt.step()
    return model.eval()


def handwritten(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy (%) clean and under each attack of the default set, by the usual tight loop."""
    # a copy (the user's model stays as it was for rbench.evaluate), in rbench's layout, as fast for convolutions
    model = copy.deepcopy(model).to(memory_format=torch.channels_last).eval().requires_grad_(False)
    x = x.contiguous(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    correct: dict[str, int] = {}

    def grad_sign(xb: torch.Tensor, yb: torch.Tensor, margin: bool = False) -> torch.Tensor:
        xb = xb.detach().requires_grad_(True)
        logits = model(xb)
        if margin:  # the largest wrong logit minus the true one
            true = logits.gather(1, yb[:, None])[:, 0]
            loss = (logits.scatter(1, yb[:, None], float("-inf")).amax(1) - true).sum()
        else:
            loss = F.cross_entropy(logits, yb, reduction="sum")
        (g,) = torch.autograd.grad(loss, xb)
        return g.sign()

    for i in range(0, len(x), BATCH):
        xb, yb = x[i:i + BATCH], y[i:i + BATCH]
        with torch.no_grad():
            correct["clean"] = correct.get("clean", 0) + int((model(xb).argmax(1) == yb).sum())
        for eps in EPS:
            adv = {"fgsm": (xb + eps * grad_sign(xb, yb)).clamp(0, 1)}
            for name, margin in (("pgd", False), ("pgd_margin", True)):
                p = (xb + torch.empty_like(xb).uniform_(-eps, eps, generator=gen)).clamp(0, 1)
                for _ in range(STEPS):
                    step = 2.5 * eps / STEPS * grad_sign(p, yb, margin)
                    p = torch.min(torch.max(p + step, xb - eps), xb + eps).clamp(0, 1)
                adv[name] = p
            noise = torch.randn(xb.shape, generator=gen)
            size = eps * math.sqrt(xb[0].numel())
            adv["noise"] = (xb + noise * (size / noise.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)).clamp(0, 1)
            with torch.no_grad():
                for name, a in adv.items():
                    key = f"{name}({eps})"
                    correct[key] = correct.get(key, 0) + int((model(a).argmax(1) == yb).sum())
    return {k: 100 * v / len(x) for k, v in correct.items()}


def agreement(hand: dict[str, float], ours: dict[str, float], n: int) -> dict[str, dict]:
    """Each row of the hand loop beside rbench's (labels matched: ``fgsm(0.1)`` is ``fgsm(eps=0.1)``, the noise of
    Linf-level 0.1 is rbench's L2 label of the same size, in eps order), with the difference and its tolerance:
    one image for the deterministic rows, three standard errors of a difference of two rates (plus one image)
    for the drawn ones."""
    noise = sorted((k for k in ours if k.startswith("noise(")), key=lambda k: float(k.split("=")[1].rstrip(")")))
    out = {}
    for label, value in hand.items():
        name, _, eps = label.partition("(")
        theirs = label if name == "clean" else noise[EPS.index(float(eps.rstrip(")")))] if name == "noise" \
            else f"{name}(eps={eps}"
        if theirs not in ours:
            out[label] = {"rbench_row": theirs, "ok": False, "why": "no such row in rbench's results"}
            continue
        p = (value + ours[theirs]) / 200
        drawn = name in ("pgd", "pgd_margin", "noise")
        tolerance = 100 / n + (300 * math.sqrt(2 * p * (1 - p) / n) if drawn else 0.0)
        diff = value - ours[theirs]
        out[label] = {"rbench_row": theirs, "hand": value, "rbench": ours[theirs], "difference_pp": diff,
                      "tolerance_pp": tolerance, "ok": abs(diff) <= tolerance + 1e-9}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/eval.json"))
    args = ap.parse_args()
    model = user_lenet()
    images, labels = load_split("mnist", "test")
    idx = subset_indices(len(images), args.n, 0)  # the images rbench.evaluate picks (seed 0)
    x = torch.tensor(images[idx].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    y = torch.tensor(labels[idx], dtype=torch.long)
    results: dict[str, dict] = {k: {"seconds": []} for k in ("handwritten", "evaluate_cold", "evaluate_warm")}
    handwritten(model, x[:BATCH], y[:BATCH])  # warm-up (allocator, kernels)
    for _ in range(args.repeats):  # interleaved, so machine drift hits every method alike
        start = time.perf_counter()
        hand = handwritten(model, x, y)
        results["handwritten"]["seconds"].append(time.perf_counter() - start)
        store = Path(tempfile.mkdtemp(prefix="bench-eval-"))
        try:
            for kind in ("evaluate_cold", "evaluate_warm"):
                start = time.perf_counter()
                out = rbench.evaluate(model, n=args.n, store=store, device="cpu")
                results[kind]["seconds"].append(time.perf_counter() - start)
                assert not out.errors, out.errors
        finally:
            shutil.rmtree(store, ignore_errors=True)
    results["handwritten"]["accuracy"] = hand
    results["evaluate_cold"]["accuracy"] = {r["row"]: r["value"] for r in out.records()}
    summarize_times(results, args.n)
    ratios = speed_ratios(results, "handwritten", ("evaluate_cold", "evaluate_warm"))
    report = {
        "setup": {"n": args.n, "eps": EPS, "pgd_steps": STEPS, "batch": BATCH, "repeats": args.repeats,
                  "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
                  "torch": torch.__version__},
        "results": results,
        "ratios": ratios,
        "targets": {
            "cold_over_handwritten": target(ratios["handwritten/evaluate_cold"], COLD_TARGET),
            "warm_over_handwritten": target(ratios["handwritten/evaluate_warm"], WARM_TARGET),
        },
    }
    print_table(f"The default attack set on {args.n} MNIST test images (LeNet, CPU)",
                [[k, f"{r['best_s']:.2f}", f"{r['median_s']:.2f}"] for k, r in results.items()],
                ["method", "best s", "median s"])
    print("accuracy (%), hand-written:", {k: round(v, 1) for k, v in hand.items()})
    print("accuracy (%), rbench.evaluate:", results["evaluate_cold"]["accuracy"])
    report["agreement"] = agreement(hand, results["evaluate_cold"]["accuracy"], args.n)
    bad = {k: v for k, v in report["agreement"].items() if not v["ok"]}
    for label, row in bad.items():
        print(f"DISAGREE {label} vs {row['rbench_row']}: {row.get('why') or row}")
    write_report(report, args.out)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
