"""Attack speed benchmark: rbench's PGD and FGSM against a tight hand-written torch loop, torchattacks and foolbox 3.

For LeNet and the MLP (default params, briefly trained on real MNIST so gradients are realistic), times on the
same N test images, every method given the same model prepared as the engine prepares it (eval mode, parameters
frozen, the engine's memory format: channels_last for LeNet) and the same batches of ``--batch-size``:

- ``rbench``: what an attack job does once its data and model are in memory: the gradient-masking probe, then the
  engine's own per-batch path (:func:`rbench.attack_loop.slice_batches` and ``attack_in_batches``: the plugin,
  the model guard, the output contract, the success flags re-predicted); store writes are left to bench_suite;
- ``strong_loop``: the tight loop an expert writes for the same work (``torch.autograd.grad`` on the input only,
  the same steps, step size and projection), nothing checked;
- ``torchattacks``: ``torchattacks.PGD`` / ``FGSM`` (installed ``--no-deps`` by ``make bench``; skipped if absent);
- ``foolbox``: ``fb.attacks.LinfPGD`` / ``fb.attacks.FGSM`` on ``fb.PyTorchModel(model, bounds=(0, 1))``;
- ``naive_loop`` (a reference, no target): the loop most people write (parameters not frozen,
  ``loss.backward()``, contiguous memory).

Reports samples/s (best of ``--repeats`` timed runs after one warm-up, repeats interleaved across methods), the
speed ratios rbench/other (> 1: rbench faster), each method's robust accuracy (without random start every PGD
computes the same iterates, so they must agree within 1 pp, else the script fails), and the targets met or not.
Also: ``channels_last`` for LeNet, and a batch-size sweep of rbench's PGD on LeNet. Writes JSON (``--out``,
default ``bench/attacks.json``) with the date, commit and CPU it was measured on.

    python perf/bench_attacks.py [--n 1000] [--batch-size 250] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    target,
    write_report,
)

from rbench.inputs import memory_format
from rbench.plugins import get_plugin

EPS_DEFAULT = 0.1
AGREEMENT_PP = 1.0  # the PGDs (no random start) must agree within this many percentage points
#: rbench's speed over each baseline's (time of the baseline / rbench's), at least. rbench does more than a loop:
#: the masking probe (64 inputs, forward and backward, once per job) and the output checks per batch (box, budget,
#: the model untouched); its flags are one forward pass per batch, as the loop's. Next to FGSM's one step that is
#: a larger share than next to PGD's 20, hence the lower FGSM bar
TARGETS = {"pgd": {"strong_loop": 0.95, "torchattacks": 0.95, "foolbox": 1.0},
           "fgsm": {"strong_loop": 0.75, "torchattacks": 0.75, "foolbox": 1.0}}


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


def engine_ready(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` as the engine hands it to an attack job: eval mode, frozen, the engine's memory format."""
    return frozen(copy.deepcopy(model)).to(memory_format=memory_format(model))


def rbench_runner(attack: str, params: dict, batch: int) -> Callable:
    """An attack job's work on data in memory: the masking probe, then the engine's per-batch path."""
    from rbench.attack_loop import attack_in_batches, slice_batches
    from rbench.contract import MASKING_PROBE, check_input_gradients

    plugin = get_plugin("attack", attack)
    p = plugin.Params(**params)

    def run(model, x, y):
        check_input_gradients(model, x[:MASKING_PROBE], y[:MASKING_PROBE], "bench", plugin.gradient_loss(p))
        generator = torch.Generator(device=x.device).manual_seed(0)
        one_batch = slice_batches(plugin, p, model, model, x, y, device=x.device, generator=generator)
        return attack_in_batches(len(x), batch, one_batch, generator=generator).success

    return run


def in_model_layout(attack: Callable, batch: int) -> Callable:
    """``attack(model, xb, yb) -> flags`` run over batches of ``batch`` inputs in the model's memory format."""
    layout: dict[int, torch.memory_format] = {}

    def run(model, x, y):
        fmt = layout.setdefault(id(model), memory_format(model))
        return torch.cat([attack(model, xb.contiguous(memory_format=fmt), yb) for xb, yb in batches(x, y, batch)])

    return run


def strong_pgd(eps: float, steps: int, step_size: float, batch: int) -> Callable:
    """PGD (Linf, no random start) as an expert writes it: the input's gradient only, no weight gradients."""

    def attack(model, x, y):
        x_adv = x.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
        with torch.no_grad():
            return model(x_adv).argmax(1) != y

    return in_model_layout(attack, batch)


def strong_fgsm(eps: float, batch: int) -> Callable:
    def attack(model, x, y):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
        x_adv = (x.detach() + eps * grad.sign()).clamp(0, 1)
        with torch.no_grad():
            return model(x_adv).argmax(1) != y

    return in_model_layout(attack, batch)


def torchattacks_runner(kind: str, eps: float, steps: int, step_size: float, batch: int) -> Callable | None:
    try:
        import torchattacks
    except ImportError:
        return None
    made: dict[int, Any] = {}

    def attack(model, x, y):
        if id(model) not in made:
            made[id(model)] = torchattacks.PGD(model, eps=eps, alpha=step_size, steps=steps, random_start=False) \
                if kind == "pgd" else torchattacks.FGSM(model, eps=eps)
        x_adv = made[id(model)](x, y)
        with torch.no_grad():
            return model(x_adv).argmax(1) != y

    return in_model_layout(attack, batch)


def naive_pgd(eps: float, steps: int, step_size: float, batch: int) -> Callable:
    """PGD (Linf, no random start) the way most people write it: parameters not frozen, ``loss.backward()``,
    the model in the default memory layout (a copy: the other methods keep theirs)."""
    copies: dict[int, torch.nn.Module] = {}

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
        if id(model) not in copies:
            copies[id(model)] = unfrozen(copy.deepcopy(model)).to(memory_format=torch.contiguous_format)
        model = copies[id(model)]
        return torch.cat([attack(model, xb.contiguous(), yb) for xb, yb in batches(x, y, batch)])

    return run


def naive_fgsm(eps: float, batch: int) -> Callable:
    copies: dict[int, torch.nn.Module] = {}

    def attack(model, x, y):
        x = x.clone().detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y)
        model.zero_grad()
        loss.backward()
        x_adv = (x.detach() + eps * x.grad.sign()).clamp(0, 1)
        with torch.no_grad():
            return model(x_adv).argmax(1) != y

    def run(model, x, y):
        if id(model) not in copies:
            copies[id(model)] = unfrozen(copy.deepcopy(model)).to(memory_format=torch.contiguous_format)
        model = copies[id(model)]
        return torch.cat([attack(model, xb.contiguous(), yb) for xb, yb in batches(x, y, batch)])

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
        fmodel = fb.PyTorchModel(model, bounds=(0, 1))
        layout = memory_format(model)
        return torch.cat([attack(fmodel, xb.contiguous(memory_format=layout), yb, epsilons=eps)[2]
                          for xb, yb in batches(x, y, batch)])

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
        "torchattacks": package_version("torchattacks"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "n": args.n, "batch_size": B, "repeats": args.repeats, "eps": args.eps, "steps": args.steps,
        "step_size": args.step_size, "n_train": args.n_train, "epochs": args.epochs,
        "timing": "best of repeats (median also recorded); one untimed warm-up per method; repeats interleaved",
        "model": "every method gets the same copy, prepared as the engine prepares it (eval, frozen, its memory "
                 "format); naive_loop its own unfrozen contiguous copy",
        "models": {},
        "targets": {},
    }
    rows = []
    warnings_found = []
    baselines = ("strong_loop", "torchattacks", "foolbox", "naive_loop")
    for name in [m for m in args.models.split(",") if m]:
        t0 = time.perf_counter()
        model = train(name, x_train, y_train, device, args.epochs, args.seed)
        entry: dict = {"train_s": time.perf_counter() - t0, "clean_accuracy": accuracy(model, x_test, y_test)}
        print(f"[{name}] trained in {entry['train_s']:.1f}s, clean accuracy {entry['clean_accuracy']:.3f}",
              flush=True)
        model = engine_ready(model)
        suites = {
            "pgd": {"rbench": rbench_runner("pgd", pgd_params, B),
                    "strong_loop": strong_pgd(args.eps, args.steps, args.step_size, B),
                    "torchattacks": torchattacks_runner("pgd", args.eps, args.steps, args.step_size, B),
                    "foolbox": foolbox_runner("pgd", args.eps, args.steps, args.step_size, B),
                    "naive_loop": naive_pgd(args.eps, args.steps, args.step_size, B)},
            "fgsm": {"rbench": rbench_runner("fgsm", {"eps": args.eps}, B),
                     "strong_loop": strong_fgsm(args.eps, B),
                     "torchattacks": torchattacks_runner("fgsm", args.eps, 1, args.eps, B),
                     "foolbox": foolbox_runner("fgsm", args.eps, 1, args.eps, B),
                     "naive_loop": naive_fgsm(args.eps, B)},
        }
        for attack, methods in suites.items():
            missing = [k for k, v in methods.items() if v is None]
            if missing:
                warnings_found.append(f"[{name} {attack}] not installed, not measured: {', '.join(missing)}")
            methods = {k: v for k, v in methods.items() if v is not None}
            res = time_methods(methods, model, x_test, y_test, args.repeats, device)
            agree = agreement(res, AGREEMENT_PP)
            entry[attack] = {"methods": res, "ratios": speed_ratios(res, "rbench", baselines), "agreement": agree}
            for other, goal in TARGETS[attack].items():
                if other in res:
                    ratio = entry[attack]["ratios"][f"rbench/{other}"]
                    report["targets"][f"{name}_{attack}_rbench/{other}"] = target(ratio, goal, at_least=True)
            if not agree["ok"]:
                msg = (f"WARNING [{name} {attack}] robust accuracies disagree by {agree['spread_pp']:.2f} pp: "
                       + ", ".join(f"{k}={v['robust_accuracy']:.3f}" for k, v in res.items()))
                print(msg, flush=True)
                warnings_found.append(msg)
            for k, v in res.items():
                r = entry[attack]["ratios"]
                rows.append([name, attack, k, f"{v['samples_per_s']:.0f}", f"{v['best_s']:.3f}",
                             f"{v['robust_accuracy']:.3f}", f"{r[f'rbench/{k}']:.2f}" if k != "rbench" else ""])
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
    print_table(f"Attack speed: N={args.n}, B={B}, {args.steps} PGD steps, eps={args.eps}, device={device}, "
                f"threads={report['threads']}, torch {torch.__version__} (ratio > 1: rbench faster)",
                rows, ["model", "attack", "method", "samples/s", "best s", "robust acc", "rbench/method"],
                left_columns=2)
    for line in warnings_found:
        print(line)
    write_report(report, Path(args.out))
    disagree = [w for w in warnings_found if "disagree" in w]
    return 1 if disagree else 0


def channels_last(model, x, y, pgd_params: dict, batch: int, repeats: int, device: torch.device) -> dict:
    """rbench PGD on LeNet with contiguous vs channels_last weights and inputs."""
    plugin = get_plugin("attack", "pgd")
    p = plugin.Params(**pgd_params)

    def run(m, layout):
        m = frozen(m).to(memory_format=layout)
        flags = []
        for xb, yb in batches(x, y, batch):
            x_adv = plugin.run(m, xb.contiguous(memory_format=layout), yb, p).x_adv
            with torch.no_grad():  # pgd leaves its flags to the engine's one prediction
                flags.append(m(x_adv).argmax(1) != yb)
        return torch.cat(flags)

    model_c, model_cl = copy.deepcopy(model), copy.deepcopy(model)  # the caller's model keeps its layout
    methods = {"contiguous": lambda _m, _x, _y: run(model_c, torch.contiguous_format),
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
