"""Attack speed benchmark: rbench's PGD and FGSM plugins vs a hand-written torch loop vs foolbox 3.

For LeNet and the MLP (default params, briefly trained on real MNIST so gradients are realistic), times on the
same N test images:

- ``rbench``: the ``pgd`` / ``fgsm`` attack plugins, called as the engine calls them (model in eval mode with
  its parameters frozen, batches of ``--batch-size``);
- ``handwritten``: the loop most people write (parameters NOT frozen, ``loss.backward()``, ``x.grad.sign()``,
  ``model.zero_grad()``), same steps, step size and projection;
- ``foolbox``: ``fb.attacks.LinfPGD`` / ``fb.attacks.FGSM`` on ``fb.PyTorchModel(model, bounds=(0, 1))``
  (given the same frozen eval-mode model as rbench, its best case).

Reports samples/s (best of ``--repeats`` timed runs after one warm-up, repeats interleaved across methods),
the speed ratios rbench/handwritten and rbench/foolbox (> 1: rbench faster) and each method's robust
accuracy (without random start the three PGDs must agree within ~1 pp). Also: ``channels_last`` for LeNet,
and a batch-size sweep of rbench's PGD on LeNet. Writes JSON (``--out``, default ``bench/attacks.json``).

    python perf/bench_attacks.py [--n 1000] [--batch-size 250] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from common import (
    add_setup_options,
    fit,
    mnist,
    package_version,
    print_table,
    setup,
    speed_ratios,
    summarize_times,
    sync,
)

from rbench.inputs import memory_format
from rbench.plugins import get_plugin

EPS_DEFAULT = 0.1
AGREEMENT_PP = 1.0  # the three PGDs (no random start) must agree within this many percentage points


# --------------------------------------------------------------------------------------------------- data


def train(name: str, x: torch.Tensor, y: torch.Tensor, device: torch.device, epochs: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    plugin = get_plugin("model", name)
    model = plugin.build(plugin.Params()).to(device)
    return fit(model, x, y, device, epochs=epochs, batch=128, lr=1e-3, seed=seed)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    hits = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return hits / len(x)


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    """The model as the engine hands it to attacks: eval mode, parameters frozen."""
    return model.eval().requires_grad_(False)


def unfrozen(model: torch.nn.Module) -> torch.nn.Module:
    """The model as most hand-written attack loops use it: eval mode, parameters still requiring grad."""
    return model.eval().requires_grad_(True)


# ------------------------------------------------------------------------------------------------ attacks
# Each runner takes (model, x, y) for the full N images, attacks them in batches and returns the bool (N,)
# success flags (misclassified after the attack). The model's grad state is set inside, so runners can share it.


def batches(x: torch.Tensor, y: torch.Tensor, batch: int):
    for i in range(0, len(x), batch):
        yield x[i:i + batch], y[i:i + batch]


def rbench_runner(attack: str, params: dict, batch: int) -> Callable:
    plugin = get_plugin("attack", attack)
    p = plugin.Params(**params)

    prepared: dict[int, tuple[torch.nn.Module, torch.memory_format]] = {}

    def run(model, x, y):
        # exactly as the engine's attack job: frozen parameters, the engine's memory format for the model
        # (on a copy made once, outside the timing, so the other methods keep the model as they got it)
        if id(model) not in prepared:
            layout = memory_format(model)
            prepared[id(model)] = (frozen(copy.deepcopy(model)).to(memory_format=layout), layout)
        engine_model, layout = prepared[id(model)]
        return torch.cat([plugin.run(engine_model, xb.contiguous(memory_format=layout), yb, p).success
                          for xb, yb in batches(x, y, batch)])

    return run


def handwritten_pgd(eps: float, steps: int, step_size: float, batch: int) -> Callable:
    """PGD (Linf, no random start) the way most people write it: parameters not frozen, ``loss.backward()``."""

    def attack(model, x, y):
        x_adv = x.clone().detach()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            model.zero_grad()
            loss.backward()
            x_adv = x_adv.detach() + step_size * x_adv.grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
        with torch.no_grad():
            return model(x_adv).argmax(1) != y

    def run(model, x, y):
        model = unfrozen(model)
        return torch.cat([attack(model, xb, yb) for xb, yb in batches(x, y, batch)])

    return run


def handwritten_fgsm(eps: float, batch: int) -> Callable:
    def attack(model, x, y):
        x = x.clone().detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y)
        model.zero_grad()
        loss.backward()
        x_adv = (x.detach() + eps * x.grad.sign()).clamp(0, 1)
        with torch.no_grad():
            return model(x_adv).argmax(1) != y

    def run(model, x, y):
        model = unfrozen(model)
        return torch.cat([attack(model, xb, yb) for xb, yb in batches(x, y, batch)])

    return run


def foolbox_runner(kind: str, eps: float, steps: int, step_size: float, batch: int) -> Callable | None:
    try:
        import foolbox as fb
    except ImportError:
        return None
    if kind == "pgd":
        attack = fb.attacks.LinfPGD(abs_stepsize=step_size, steps=steps, random_start=False)
    else:
        attack = fb.attacks.FGSM()

    def run(model, x, y):
        fmodel = fb.PyTorchModel(frozen(model), bounds=(0, 1))
        return torch.cat([attack(fmodel, xb, yb, epsilons=eps)[2] for xb, yb in batches(x, y, batch)])

    return run


# ----------------------------------------------------------------------------------------------- timing


def time_methods(methods: dict[str, Callable], model, x, y, repeats: int, device: torch.device) -> dict[str, dict]:
    """One warm-up each, then ``repeats`` timed runs, interleaved across methods to spread machine drift."""
    out: dict[str, dict] = {}
    for name, fn in methods.items():
        success = fn(model, x, y)  # warm-up (allocator, oneDNN primitives, lazy imports)
        sync(device)
        out[name] = {"robust_accuracy": 1.0 - float(success.float().mean()), "seconds": []}
    for _ in range(repeats):
        for name, fn in methods.items():
            sync(device)
            t0 = time.perf_counter()
            fn(model, x, y)
            sync(device)
            out[name]["seconds"].append(time.perf_counter() - t0)
    summarize_times(out, len(x))
    return out


def agreement(res: dict[str, dict], tol_pp: float) -> dict:
    accs = [r["robust_accuracy"] for r in res.values()]
    spread = 100 * (max(accs) - min(accs))
    return {"spread_pp": spread, "ok": spread <= tol_pp + 1e-9}


# ---------------------------------------------------------------------------------------------- the run


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="test images attacked (default 1000)")
    ap.add_argument("--batch-size", type=int, default=250, help="attack batch size (default 250, as the engine)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per method, best is reported (default 3)")
    add_setup_options(ap, "cpu")
    ap.add_argument("--eps", type=float, default=EPS_DEFAULT)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--step-size", type=float, default=0.01)
    ap.add_argument("--n-train", type=int, default=10000, help="training images (default 10000)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--models", default="lenet,mlp")
    ap.add_argument("--sweep", default="100,250,500,1000", help="batch sizes for the LeNet PGD sweep ('' to skip)")
    ap.add_argument("--no-channels-last", action="store_true", help="skip the channels_last comparison")
    ap.add_argument("--out", default="bench/attacks.json")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = setup(args)
    if device is None:
        return 2
    warnings.filterwarnings("ignore", module="foolbox")

    x_train, y_train = mnist("train", args.n_train, args.seed)
    x_test, y_test = mnist("test", args.n, args.seed + 1)
    x_test, y_test = x_test.to(device), y_test.to(device)

    B = args.batch_size
    pgd_params = {"norm": "linf", "eps": args.eps, "steps": args.steps, "step_size": args.step_size,
                  "random_start": False}
    report: dict = {
        "torch": torch.__version__,
        "foolbox": package_version("foolbox"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "n": args.n, "batch_size": B, "repeats": args.repeats, "eps": args.eps, "steps": args.steps,
        "step_size": args.step_size, "n_train": args.n_train, "epochs": args.epochs,
        "timing": "best of repeats (median also recorded); one untimed warm-up per method; repeats interleaved",
        "foolbox_model": "frozen eval-mode model (same object rbench gets)",
        "models": {},
    }
    rows = []
    warnings_found = []
    for name in [m for m in args.models.split(",") if m]:
        t0 = time.perf_counter()
        model = train(name, x_train, y_train, device, args.epochs, args.seed)
        entry: dict = {"train_s": time.perf_counter() - t0, "clean_accuracy": accuracy(model, x_test, y_test)}
        print(f"[{name}] trained in {entry['train_s']:.1f}s, clean accuracy {entry['clean_accuracy']:.3f}",
              flush=True)
        suites = {
            "pgd": {"rbench": rbench_runner("pgd", pgd_params, B),
                    "handwritten": handwritten_pgd(args.eps, args.steps, args.step_size, B),
                    "foolbox": foolbox_runner("pgd", args.eps, args.steps, args.step_size, B)},
            "fgsm": {"rbench": rbench_runner("fgsm", {"eps": args.eps}, B),
                     "handwritten": handwritten_fgsm(args.eps, B),
                     "foolbox": foolbox_runner("fgsm", args.eps, 1, args.eps, B)},
        }
        for attack, methods in suites.items():
            methods = {k: v for k, v in methods.items() if v is not None}
            res = time_methods(methods, model, x_test, y_test, args.repeats, device)
            agree = agreement(res, AGREEMENT_PP)
            entry[attack] = {"methods": res, "ratios": speed_ratios(res, "rbench", ("handwritten", "foolbox")),
                             "agreement": agree}
            if not agree["ok"]:
                msg = (f"WARNING [{name} {attack}] robust accuracies disagree by {agree['spread_pp']:.2f} pp: "
                       + ", ".join(f"{k}={v['robust_accuracy']:.3f}" for k, v in res.items()))
                print(msg, flush=True)
                warnings_found.append(msg)
            for k, v in res.items():
                r = entry[attack]["ratios"]
                rows.append([name, attack, k, f"{v['samples_per_s']:.0f}", f"{v['best_s']:.3f}",
                             f"{v['robust_accuracy']:.3f}",
                             f"{r['rbench/handwritten']:.2f}" if k == "handwritten" else "",
                             f"{r['rbench/foolbox']:.2f}" if k == "foolbox" and "rbench/foolbox" in r else ""])
            print(f"[{name} {attack}] " + ", ".join(f"{k}: {v['samples_per_s']:.0f}/s" for k, v in res.items()),
                  flush=True)

        if name == "lenet" and not args.no_channels_last:
            entry["channels_last"] = channels_last(model, x_test, y_test, pgd_params, B, args.repeats, device)
            cl = entry["channels_last"]
            print(f"[lenet channels_last] rbench PGD {cl['channels_last_samples_per_s']:.0f}/s vs contiguous "
                  f"{cl['contiguous_samples_per_s']:.0f}/s (speedup {cl['speedup']:.2f}, helps: {cl['helps']})",
                  flush=True)
        if name == "lenet" and args.sweep:
            sizes = [int(s) for s in args.sweep.split(",") if s]
            methods = {f"B={b}": rbench_runner("pgd", pgd_params, b) for b in sizes}
            res = time_methods(methods, model, x_test, y_test, args.repeats, device)
            best = max(res, key=lambda k: res[k]["samples_per_s"])
            entry["batch_sweep"] = {"results": {k: {"samples_per_s": v["samples_per_s"], "best_s": v["best_s"],
                                                    "median_s": v["median_s"]} for k, v in res.items()},
                                    "best": best}
            print("[lenet PGD batch sweep] " + ", ".join(f"{k}: {v['samples_per_s']:.0f}/s" for k, v in res.items())
                  + f" -> best {best}", flush=True)
        report["models"][name] = entry

    report["warnings"] = warnings_found
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(f"Attack speed: N={args.n}, B={B}, {args.steps} PGD steps, eps={args.eps}, device={device}, "
                f"threads={report['threads']}, torch {torch.__version__} (ratio > 1: rbench faster)",
                rows, ["model", "attack", "method", "samples/s", "best s", "robust acc", "rb/hand", "rb/foolbox"],
                left_columns=2)
    print(f"wrote {out}")
    return 0


def channels_last(model, x, y, pgd_params: dict, batch: int, repeats: int, device: torch.device) -> dict:
    """rbench PGD on LeNet with contiguous vs channels_last weights and inputs."""
    plugin = get_plugin("attack", "pgd")
    p = plugin.Params(**pgd_params)

    def run(m, layout):
        m = frozen(m).to(memory_format=layout)
        return torch.cat([plugin.run(m, xb.contiguous(memory_format=layout), yb, p).success
                          for xb, yb in batches(x, y, batch)])

    model_cl = copy.deepcopy(model)
    methods = {"contiguous": lambda _m, _x, _y: run(model, torch.contiguous_format),
               "channels_last": lambda _m, _x, _y: run(model_cl, torch.channels_last)}
    res = time_methods(methods, model, x, y, repeats, device)
    base, cl = res["contiguous"], res["channels_last"]
    speedup = base["best_s"] / cl["best_s"]
    return {"contiguous_samples_per_s": base["samples_per_s"], "channels_last_samples_per_s": cl["samples_per_s"],
            "contiguous_s": base["seconds"], "channels_last_s": cl["seconds"], "speedup": speedup,
            "helps": speedup > 1.05,
            "robust_accuracy": {"contiguous": base["robust_accuracy"], "channels_last": cl["robust_accuracy"]}}


if __name__ == "__main__":
    sys.exit(main())
