"""PGD throughput and memory against the attack batch size: which batch a GPU attack job should use.

On a GPU the engine starts an attack job whose suite leaves ``batch_size`` unset with the whole set as one batch
and halves it on out-of-memory (:mod:`rbench.attack_loop`); this script measures what that choice gives. For the
quickstart's MLP and LeNet (trained as in ``bench_precision.py``), the ``pgd`` plugin (Linf, eps 0.1, 20 steps,
random start) attacks ``max(batch, --n)`` test images (the test set repeated past its 10000 images) at each
``--batches`` size: samples/s (best of ``--repeats``) and, on CUDA, the peak memory the batch allocated above the
model's, per sample, and the largest batch that would fit in the device's free memory at that rate
(an extrapolation, said so in the JSON; ``--verify`` runs that batch, or ``--verify-cap`` images if fewer,
once to check it).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from bench_precision import MODELS, attack_job, train
from common import add_setup_options, measured_on, mnist, print_table, setup, sync

#: share of the free memory an extrapolated batch may take (the allocator's fragmentation and the cuDNN
#: workspaces are not proportional to the batch)
HEADROOM = 0.8


def repeated(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` of ``x, y`` repeated end to end as often as needed."""
    reps = -(-n // len(x))
    return x.repeat(reps, 1, 1, 1)[:n], y.repeat(reps)[:n]


def timed_attack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, params: dict,
                 device: torch.device, seed: int) -> tuple[float, int | None]:
    """Seconds of one attack job over ``x`` in batches of ``batch``, and the peak bytes it allocated above what
    was allocated before it (CUDA only, else None)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    sync(device)
    t0 = time.perf_counter()
    attack_job(model, x, y, params, batch, "fp32", seed, device)
    sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) - before if device.type == "cuda" else None
    return seconds, peak


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="250,1000,2500,10000,40000", help="comma list of batch sizes")
    ap.add_argument("--n", type=int, default=10000, help="images attacked at least (default 10000: the test set)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--models", default="mlp,lenet")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n-train", type=int, default=10000)
    add_setup_options(ap, "cuda")
    ap.add_argument("--verify", action="store_true", help="run the extrapolated largest batch once (at most "
                    "--verify-cap images)")
    ap.add_argument("--verify-cap", type=int, default=1_000_000, help="images of the checked batch at most")
    ap.add_argument("--out", type=Path, default=Path("bench/batch.json"))
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = setup(args)
    if device is None:
        return 2
    batches = sorted({int(b) for b in args.batches.split(",") if b})
    x_train, y_train = mnist("train", args.n_train, args.seed)
    x_test, y_test = mnist("test", None, args.seed + 1)
    params = {"norm": "linf", "eps": 0.1, "steps": args.steps, "random_start": True}
    report: dict = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
                    "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
                    platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "pgd": params, "repeats": args.repeats, "timing": "best of repeats after one warm-up batch",
                    "models": {}}
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        model = train(name, x_train, y_train, device, 1, args.seed)
        attack_job(model, x_test[:250], y_test[:250], params, 250, "fp32", args.seed, device)  # warm-up
        entry: dict = {"params": MODELS[name], "batches": {}}
        for batch in batches:
            n = max(batch, args.n)
            x, y = repeated(x_test, y_test, n)
            try:
                runs = [timed_attack(model, x, y, batch, params, device, args.seed) for _ in range(args.repeats)]
            except torch.cuda.OutOfMemoryError:
                entry["batches"][str(batch)] = {"out_of_memory": True}
                rows.append([name, str(batch), str(n), "out of memory", "-", "-"])
                break
            best = min(s for s, _ in runs)
            peak = max(p for _, p in runs) if device.type == "cuda" else None
            entry["batches"][str(batch)] = {"n": n, "seconds": [s for s, _ in runs], "samples_per_s": n / best,
                                            "peak_bytes": peak,
                                            "bytes_per_sample": None if peak is None else peak / batch}
            rows.append([name, str(batch), str(n), f"{n / best:.0f}", "-" if peak is None else f"{peak / 2**20:.0f}",
                         "-" if peak is None else f"{peak / batch / 1024:.1f}"])
            print(f"[{name}] batch {batch}: {n / best:.0f} samples/s", flush=True)
        measured = [b for b in entry["batches"].values() if b.get("bytes_per_sample")]
        if device.type == "cuda" and measured:
            free, total = torch.cuda.mem_get_info(device)
            per_sample = measured[-1]["bytes_per_sample"]  # the largest batch: fixed costs weigh least there
            entry["largest_batch_estimate"] = {
                "batch": int(HEADROOM * free / per_sample), "free_bytes": free, "total_bytes": total,
                "how": f"{HEADROOM} x free memory / peak bytes per sample of the largest measured batch "
                       "(an extrapolation)"}
            if args.verify:
                b = min(entry["largest_batch_estimate"]["batch"], args.verify_cap)
                x, y = repeated(x_test, y_test, b)
                try:
                    seconds, peak = timed_attack(model, x, y, b, params, device, args.seed)
                    entry["largest_batch_estimate"]["verified"] = {"batch": b, "seconds": seconds,
                                                                   "peak_bytes": peak, "samples_per_s": b / seconds}
                except torch.cuda.OutOfMemoryError:
                    entry["largest_batch_estimate"]["verified"] = "out of memory"
                del x, y
        report["models"][name] = entry
    print_table(f"PGD ({args.steps} steps) by batch size on {report['device_name']}", rows,
                ["model", "batch", "images", "samples/s", "peak MiB", "KiB/sample"], left_columns=1)
    for name, entry in report["models"].items():
        if "largest_batch_estimate" in entry:
            est = entry["largest_batch_estimate"]
            print(f"[{name}] largest batch that fits (extrapolated): {est['batch']}"
                  + (f"; verified: {est['verified']}" if "verified" in est else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report["measured_on"] = measured_on()
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
