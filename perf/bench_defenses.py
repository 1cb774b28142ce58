"""What attacking through a defense costs: white-box PGD through the low-pass filter against PGD on the undefended
LeNet (target: at most 1.3x, the filter is two small matrix products), and EOT over k draws of the noisy low-pass filter
against one draw (target: at most 1.1 * k). Both measured in one run, models and inputs exactly as the engine
hands them to attacks (``rbench.inputs``: eval mode, frozen, channels_last; the defended pipeline built from its
spec; ``rbench.defense.attack_view`` for EOT), the attack run in the engine's batches (``--batch-size``, default
``rbench.specs.ATTACK_BATCH`` = 250) with one generator per run and each randomized defense seeded before it, as an
attack job does. Each model gets one untimed warm-up run (which also gives its robust accuracy), then ``--repeats``
timed runs interleaved across the models, so that machine drift hits them alike; best and median recorded. The
targets are printed and recorded as met or NOT met with when, at which commit and on what CPU they were measured
(``common.write_report``). Writes ``bench/defenses.json``.

    python perf/bench_defenses.py [--n 500] [--steps 20] [--draws 8] [--repeats 3] [--batch-size 250]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import mnist, print_table, speed_ratios, summarize_times, sync, target, write_report

from rbench.defense import attack_view, seed_randomness
from rbench.inputs import build_model, memory_format
from rbench.plugins import get_plugin
from rbench.specs import ATTACK_BATCH, View

LOWPASS_TARGET = 1.3
EOT_TARGET = 1.1


def lenet() -> torch.nn.Module:
    """Caffe's LeNet (the Uličný suite's), trained briefly so the attack works on a real classifier."""
    torch.manual_seed(0)
    plugin = get_plugin("model", "lenet")
    model = plugin.build(plugin.Params(dropout=[0.0, 0.0, 0.0], init="xavier"))
    x, y = mnist("train", 4000, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for i in range(0, len(x), 64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
        opt.step()
    return model


def prepared(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return model.to(device, memory_format=memory_format(model)).eval().requires_grad_(False)


def defended(base: torch.nn.Module, lowpass: dict) -> torch.nn.Module:
    spec = {"defended": [{"plugin": "lowpass", "params": lowpass}],
            "members": [{"plugin": "lenet", "params": {"dropout": [0.0, 0.0, 0.0], "init": "xavier"}}]}
    model = build_model(spec)
    model.head.load_state_dict(base.state_dict())
    return model


def pgd_runner(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int,
               device: torch.device) -> Callable[[], torch.Tensor]:
    """One attack job's PGD over ``x``: randomized defenses seeded, one generator for the run, the inputs in
    batches of ``batch`` moved to ``device`` in the model's memory layout; returns the success flags."""
    attack = get_plugin("attack", "pgd")
    params = attack.Params(eps=0.1, steps=steps, random_start=False)
    layout = memory_format(model)

    def run() -> torch.Tensor:
        seed_randomness(model, 0)
        generator = torch.Generator(device=device).manual_seed(0)
        success = []
        for start in range(0, len(x), batch):
            xb = x[start:start + batch].to(device).contiguous(memory_format=layout)
            yb = y[start:start + batch].to(device)
            success.append(attack.run(model, xb, yb, params, generator=generator).success_on(model, yb))
        return torch.cat(success)

    return run


def time_runs(runs: dict[str, Callable[[], torch.Tensor]], repeats: int, device: torch.device) -> dict[str, dict]:
    """One untimed warm-up each (its robust accuracy recorded), then ``repeats`` timed runs, interleaved across
    the runs."""
    out: dict[str, dict] = {}
    for name, run in runs.items():
        success = run()  # warm-up (allocator, oneDNN primitives, lazy imports)
        sync(device)
        out[name] = {"seconds": [], "robust_accuracy": float((~success.bool()).float().mean())}
    for _ in range(repeats):
        for name, run in runs.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            out[name]["seconds"].append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=ATTACK_BATCH,
                    help=f"attack batch size (default {ATTACK_BATCH}, the engine's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=Path("bench/defenses.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    base = lenet()
    x, y = mnist("test", args.n, seed=0)
    models = {
        "undefended": prepared(base, device),
        "lowpass": prepared(defended(base, {"size": 5, "variance": 1.3}), device),
        "noisy_lowpass_1_draw": prepared(defended(base, {"size": 5, "variance": 1.3, "noise_sigma": 0.1}), device),
    }
    models[f"noisy_lowpass_eot_{args.draws}"] = attack_view(
        prepared(defended(base, {"size": 5, "variance": 1.3, "noise_sigma": 0.1}), device),
        View(bpda=False, eot=args.draws))
    runs = {name: pgd_runner(model, x, y, args.steps, args.batch_size, device) for name, model in models.items()}
    results = time_runs(runs, args.repeats, device)
    summarize_times(results, args.n)
    ratios = speed_ratios(results, "undefended", ("lowpass",))
    ratios.update(speed_ratios(results, "noisy_lowpass_1_draw", (f"noisy_lowpass_eot_{args.draws}",)))
    eot_per_draw = ratios[f"noisy_lowpass_1_draw/noisy_lowpass_eot_{args.draws}"] / args.draws
    report = {
        "setup": {"n": args.n, "pgd": {"eps": 0.1, "steps": args.steps, "random_start": False}, "draws": args.draws,
                  "repeats": args.repeats, "batch_size": args.batch_size, "device": str(device),
                  "threads": torch.get_num_threads(),
                  "machine": platform.processor() or platform.machine(), "torch": torch.__version__},
        "timing": "best of repeats (median also recorded); one untimed warm-up per model; repeats interleaved "
                  "across models",
        "results": results,
        "ratios": ratios,
        "targets": {
            "lowpass_over_undefended": target(ratios["undefended/lowpass"], LOWPASS_TARGET),
            "eot_over_k_draws": target(eot_per_draw, EOT_TARGET),
        },
    }
    print_table(f"PGD ({args.steps} steps) on {args.n} MNIST test images in batches of {args.batch_size}, {device}",
                [[k, f"{r['best_s']:.3f}", f"{r['median_s']:.3f}", f"{r['robust_accuracy']:.3f}"]
                 for k, r in results.items()], ["model", "best s", "median s", "robust accuracy"])
    write_report(report, args.out)


if __name__ == "__main__":
    main()
