"""Precision benchmark: PGD in fp32 against bf16 (and fp16) autocast, as ``rbench run --precision`` runs it.

For the quickstart's MLP (256-256, ReLU) and LeNet (20-50 channels, 500 hidden), built through the model
plugins and trained briefly on real MNIST in fp32 (training is always fp32), the engine's ``pgd`` plugin attacks
the same N test images (Linf, eps ``--eps``, ``--steps`` steps, random start from the same seeded generator) the
way an attack job does: the engine's loop (:func:`rbench.attack_loop.slice_batches` and ``attack_in_batches``),
each batch in the model's memory format, run and checked by :func:`rbench.contract.check_attack_output`
(float32, box, budget, the success flags), inside :func:`rbench.precision.autocast`.

Reported per model and precision: samples/s (best of ``--repeats`` timed runs after a one-batch warm-up, repeats
interleaved across precisions), the speed ratio ``fp32 time / precision time`` (> 1: faster than fp32), the
robust accuracy as rbench reports it (the adversarials evaluated in the same precision) and as an fp32 model sees
the same adversarials, and their differences from fp32 in percentage points. Also: the CPU's bf16/AMX flags and a
512x512 matrix multiply in each dtype (what the reduced types buy on this CPU at all). Writes
``bench/precision.json`` (``--out``).

    python perf/bench_precision.py [--n 500] [--batch-size 250] [--repeats 3] [--precisions fp32,bf16,fp16]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
from common import add_setup_options, fit, measured_on, mnist, print_table, setup, summarize_times, sync

from rbench.attack_loop import attack_in_batches, slice_batches
from rbench.inputs import memory_format
from rbench.plugins import get_plugin
from rbench.precision import PRECISIONS, autocast

#: the quickstart's models (suites/quickstart.toml)
MODELS = {"mlp": {"widths": [256, 256], "activation": "relu"},
          "lenet": {"channels": [20, 50], "hidden": 500, "dropout": [0.0, 0.0, 0.5]}}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_flags() -> list[str]:
    """The CPU's reduced-precision flags (/proc/cpuinfo): AVX-512 BF16/FP16, AMX."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in set(flags) if f.startswith(("avx512", "amx")) or f in ("avx2", "fma", "f16c"))


def matmul_rates(device: torch.device, size: int = 512, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of a ``size``-square matrix multiply in each dtype (best of ``repeats``)."""
    out = {}
    for name, dtype in DTYPES.items():
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        a @ b
        best = float("inf")
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            a @ b
            sync(device)
            best = min(best, time.perf_counter() - t0)
        out[name] = 2 * size ** 3 / best / 1e9
    return out


def train(name: str, x: torch.Tensor, y: torch.Tensor, device: torch.device, epochs: int, seed: int
          ) -> torch.nn.Module:
    """The quickstart's model ``name``, trained ``epochs`` of Adam (lr 1e-3, batches of 128) in fp32, handed over
    as the engine hands models to attacks: eval mode, parameters frozen, in its memory format."""
    torch.manual_seed(seed)
    plugin = get_plugin("model", name)
    model = plugin.build(plugin.Params.model_validate(MODELS[name])).to(device)
    fit(model, x, y, device, epochs=epochs, batch=128, lr=1e-3, seed=seed)
    return model.eval().requires_grad_(False).to(memory_format=memory_format(model))


def attack_job(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: dict, batch: int,
               precision: str, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """What an attack job computes (:func:`rbench.jobs.run_attack`, without the store): (x_adv, success)."""
    attack = get_plugin("attack", "pgd")
    p = attack.Params.model_validate(params, strict=True)
    generator = torch.Generator(device=device).manual_seed(seed)
    one_batch = slice_batches(attack, p, model, model, x, y, device=device, generator=generator,
                              precision=precision)
    done = attack_in_batches(len(x), batch, one_batch, generator=generator)
    return done.x_adv, done.success


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str, device: torch.device,
             batch: int = 1000) -> float:
    """Accuracy as an eval job computes it (:func:`rbench.jobs.run_eval`): batches in ``precision``."""
    hits = 0
    layout = memory_format(model)
    with autocast(precision, device):
        for i in range(0, len(x), batch):
            logits = model(x[i:i + batch].to(device).contiguous(memory_format=layout)).float()
            hits += int((logits.argmax(1).cpu() == y[i:i + batch].cpu()).sum())
    return hits / len(x)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="test images attacked (default 500)")
    ap.add_argument("--batch-size", type=int, default=250, help="attack batch size (default 250, as the engine)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per precision, best reported (default 3)")
    ap.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list (default fp32,bf16,fp16)")
    ap.add_argument("--models", default="mlp,lenet")
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=1)
    add_setup_options(ap, "cpu")
    ap.add_argument("--out", type=Path, default=Path("bench/precision.json"))
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = setup(args)
    if device is None:
        return 2
    precisions = [p for p in args.precisions.split(",") if p]
    if "fp32" not in precisions or any(p not in PRECISIONS for p in precisions):
        print(f"--precisions: give fp32 and any of {', '.join(PRECISIONS)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    x_train, y_train = mnist("train", args.n_train, args.seed)
    x_test, y_test = mnist("test", args.n, args.seed + 1)
    params = {"norm": "linf", "eps": args.eps, "steps": args.steps, "random_start": True}
    report: dict = {
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "cpu_flags": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(device),
        "threads": torch.get_num_threads(), "n": args.n, "batch_size": args.batch_size, "repeats": args.repeats,
        "pgd": params, "n_train": args.n_train, "epochs": args.epochs,
        "load_before": os.getloadavg(),
        "timing": "best of repeats (median also recorded) after a one-batch warm-up per precision; repeats "
                  "interleaved across precisions",
        "matmul_gflops": matmul_rates(device),
        "models": {},
    }
    print("matmul 512x512 GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in report["matmul_gflops"].items()),
          flush=True)
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        t0 = time.perf_counter()
        model = train(name, x_train, y_train, device, args.epochs, args.seed)
        entry: dict = {"params": MODELS[name], "train_s": time.perf_counter() - t0,
                       "clean_accuracy": {p: accuracy(model, x_test, y_test, p, device) for p in precisions}}
        print(f"[{name}] trained in {entry['train_s']:.1f}s; clean accuracy {entry['clean_accuracy']}", flush=True)
        res: dict[str, dict] = {}
        for p in precisions:  # warm-up: one batch (oneDNN primitives, allocator)
            attack_job(model, x_test[:args.batch_size], y_test[:args.batch_size], params, args.batch_size, p,
                       args.seed, device)
            res[p] = {"seconds": []}
        for r in range(args.repeats):
            for p in precisions if r % 2 == 0 else precisions[::-1]:
                sync(device)
                t1 = time.perf_counter()
                x_adv, success = attack_job(model, x_test, y_test, params, args.batch_size, p, args.seed, device)
                sync(device)
                res[p]["seconds"].append(time.perf_counter() - t1)
                print(f"[{name}] {p}: {res[p]['seconds'][-1]:.1f}s", flush=True)
                if r == 0:
                    res[p]["robust_accuracy"] = accuracy(model, x_adv, y_test, p, device)
                    res[p]["robust_accuracy_fp32_eval"] = accuracy(model, x_adv, y_test, "fp32", device)
                    res[p]["success_rate"] = float(success.float().mean())
        summarize_times(res, args.n)
        base = res["fp32"]
        for p, r_ in res.items():
            r_["speed_vs_fp32"] = base["best_s"] / r_["best_s"]
            r_["speed_vs_fp32_median"] = base["median_s"] / r_["median_s"]
            r_["robust_accuracy_diff_pp"] = 100 * (r_["robust_accuracy"] - base["robust_accuracy"])
            r_["robust_accuracy_fp32_eval_diff_pp"] = 100 * (r_["robust_accuracy_fp32_eval"]
                                                             - base["robust_accuracy_fp32_eval"])
            rows.append([name, p, f"{r_['samples_per_s']:.1f}", f"{r_['speed_vs_fp32']:.2f}x",
                         f"{100 * r_['robust_accuracy']:.1f}", f"{r_['robust_accuracy_diff_pp']:+.1f}",
                         f"{r_['robust_accuracy_fp32_eval_diff_pp']:+.1f}"])
        entry["pgd"] = res
        report["models"][name] = entry
    report["load_after"] = os.getloadavg()
    report["total_s"] = time.perf_counter() - started
    print_table(f"PGD Linf eps {args.eps}, {args.steps} steps, {args.n} MNIST test images, {report['threads']} "
                f"threads on {device}", rows, ["model", "precision", "samples/s", "vs fp32", "robust acc %",
                                               "diff pp", "diff pp (fp32 eval)"], left_columns=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    import json

    report["measured_on"] = measured_on()
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
