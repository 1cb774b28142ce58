"""Adapter benchmark: native PGD vs the foolbox and ART adapter plugins vs foolbox and ART called directly.

One Linf PGD (eps 0.1, ``--steps`` 10 steps of 0.01, no random start) on An et al.'s 3-CNN ensemble (members
``an2020_cnn`` with kernel 3, 5 and 7 at full depth, GELU activations as in the MLSS report, combined by mean
softmax through the ``ensemble`` plugin's ``compose``), on the same N MNIST test images in batches of
``--batch-size``. Each member is randomly initialised, then trained ``--train-steps`` steps of Adam on real MNIST
(``--untrained``: no training). Every method gets the same model object as the engine hands it to attacks
(``channels_last`` per ``rbench.inputs.memory_format``, eval mode, parameters frozen) and the same input batches
(in that memory format):

- ``native``: the ``pgd`` plugin, called as the engine calls it (validated params, a seeded generator);
- ``foolbox_adapter``: the ``foolbox`` plugin with ``attack = "LinfPGD"``, same call;
- ``foolbox_direct``: ``fb.attacks.LinfPGD(...)(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=eps)``;
- ``art_adapter``: the ``art`` plugin with ``attack = "ProjectedGradientDescent"``, same call;
- ``art_direct``: ``ProjectedGradientDescent(PyTorchClassifier(model, ...), ...).generate(x, y)`` plus the one
  forward pass that gives the success flags (the adapters return them too).

Reports samples/s (best of ``--repeats`` timed runs after one warm-up; repeats interleaved across methods, in
alternating order), the speed ratios native/adapter (> 1: native faster), the adapter overheads (adapter time /
direct-library time - 1; target <= 10%) and each method's robust accuracy, success-flag agreement with native
and the largest difference of its adversarials from native's (without random start all five compute the same
PGD iterates up to float rounding, so robust accuracies must agree closely; a warning is printed otherwise).
Writes JSON (``--out``, default ``bench/adapters.json``).

    python perf/bench_adapters.py [--n 128] [--batch-size 64] [--steps 10] [--repeats 3] [--train-steps 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import (
    add_setup_options,
    measured_on,
    mnist,
    package_version,
    print_table,
    setup,
    speed_ratios,
    summarize_times,
    sync,
)

from rbench.attack import misclassified
from rbench.inputs import memory_format
from rbench.plugins import get_plugin

EPS_DEFAULT = 0.1
STEP_SIZE_DEFAULT = 0.01
KERNELS = (3, 5, 7)
OVERHEAD_TARGET = 0.10  # adapter time / direct-library time - 1
AGREEMENT_PP = 1.0  # robust accuracies must agree within this many percentage points (or one sample, if larger)
METHODS = ("native", "foolbox_adapter", "foolbox_direct", "art_adapter", "art_direct")

Batches = list[tuple[torch.Tensor, torch.Tensor]]
Runner = Callable[[torch.nn.Module, Batches], tuple[torch.Tensor, torch.Tensor]]


# --------------------------------------------------------------------------------------------------- data


# -------------------------------------------------------------------------------------------------- model


def member(kernel: int, activation: str, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, lr: float,
           device: torch.device, seed: int) -> torch.nn.Module:
    """One ``an2020_cnn`` member, randomly initialised (seeded), then ``steps`` Adam steps on random batches."""
    torch.manual_seed(seed)
    plugin = get_plugin("model", "an2020_cnn")
    params = plugin.Params.model_validate({"kernel_size": kernel, "activation": activation}, strict=True)
    model = plugin.build(params).to(device)
    if steps:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(steps):
            b = torch.randint(len(x), (batch,), generator=gen)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[b].to(device)), y[b].to(device)).backward()
            opt.step()
    return model.eval()


def ensemble(members: list[torch.nn.Module], combine: str) -> torch.nn.Module:
    plugin = get_plugin("model", "ensemble")
    return plugin.compose(members, plugin.Params.model_validate({"combine": combine}, strict=True))


def engine_ready(model: torch.nn.Module, device: torch.device) -> tuple[torch.nn.Module, torch.memory_format]:
    """The model as the engine hands it to attacks (``rbench.inputs.load_model``): on ``device`` in its
    :func:`memory_format`, eval mode, parameters frozen."""
    layout = memory_format(model)
    return model.to(device, memory_format=layout).eval().requires_grad_(False), layout


@torch.no_grad()
def accuracy(model: torch.nn.Module, batches: Batches) -> float:
    hits = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in batches)
    return hits / sum(len(yb) for _, yb in batches)


# ------------------------------------------------------------------------------------------------ attacks
# Each runner takes (model, batches) and returns (x_adv, success) for all N images, concatenated.


def plugin_runner(name: str, params: dict, seed: int, device: torch.device) -> Runner:
    """An attack plugin called as the engine's attack job calls it: params validated once (strictly), one
    generator per job seeded from the job, ``plugin.run(model, xb, yb, params, generator=...)`` per batch."""
    plugin = get_plugin("attack", name)
    p = plugin.Params.model_validate(params, strict=True)

    def run(model, batches):
        generator = torch.Generator(device=device).manual_seed(seed)
        outs = [(plugin.run(model, xb, yb, p, generator=generator), yb) for xb, yb in batches]
        # flags an adapter leaves None are the engine's one prediction of the model it attacked
        return (torch.cat([o.x_adv.detach() for o, _ in outs]),
                torch.cat([(o.success if o.success is not None else misclassified(model, o.x_adv, yb)).to(torch.bool)
                           for o, yb in outs]))

    return run


def foolbox_direct(eps: float, steps: int, step_size: float) -> Runner:
    """foolbox 3 as its documentation shows it: ``PyTorchModel`` + ``LinfPGD``, its own success flags."""
    import foolbox as fb

    def run(model, batches):
        fmodel = fb.PyTorchModel(model, bounds=(0, 1))
        attack = fb.attacks.LinfPGD(abs_stepsize=step_size, steps=steps, random_start=False)
        advs, flags = [], []
        for xb, yb in batches:
            _, clipped, success = attack(fmodel, xb, yb, epsilons=eps)
            advs.append(clipped.detach())
            flags.append(success)
        return torch.cat(advs), torch.cat(flags)

    return run


def art_direct(eps: float, steps: int, step_size: float, batch: int, device: torch.device) -> Runner:
    """ART as its documentation shows it: ``PyTorchClassifier`` + ``ProjectedGradientDescent(...).generate``;
    success flags from one forward pass on the adversarials (ART returns none)."""
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    def run(model, batches):
        xb0 = batches[0][0]
        classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(xb0.shape[1:]),
                                       nb_classes=10, clip_values=(0.0, 1.0),
                                       device_type="gpu" if device.type == "cuda" else "cpu")
        attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=step_size, max_iter=steps,
                                          num_random_init=0, batch_size=batch, verbose=False)
        advs, flags = [], []
        for xb, yb in batches:
            xa = torch.from_numpy(attack.generate(x=xb.cpu().numpy(), y=yb.cpu().numpy())).to(device)
            with torch.no_grad():
                flags.append(model(xa).argmax(1) != yb)
            advs.append(xa)
        return torch.cat(advs), torch.cat(flags)

    return run


# ----------------------------------------------------------------------------------------------- timing


OTHERS = ("foolbox_adapter", "art_adapter", "foolbox_direct", "art_direct")


def time_methods(methods: dict[str, Runner], model, batches: Batches, repeats: int,
                 device: torch.device) -> tuple[dict[str, dict], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """One untimed warm-up each (its outputs are returned), then ``repeats`` timed runs interleaved across
    methods, in reversed order every other repeat, so that machine drift hits them alike."""
    n = sum(len(yb) for _, yb in batches)
    out: dict[str, dict] = {}
    outputs = {}
    for name, fn in methods.items():
        t0 = time.perf_counter()
        outputs[name] = fn(model, batches)  # warm-up (lazy imports, allocator, oneDNN primitives)
        sync(device)
        out[name] = {"warmup_s": time.perf_counter() - t0,
                     "robust_accuracy": 1.0 - float(outputs[name][1].float().mean()), "seconds": []}
        print(f"  warm-up {name}: {out[name]['warmup_s']:.1f}s", flush=True)
    names = list(methods)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            t0 = time.perf_counter()
            methods[name](model, batches)
            sync(device)
            out[name]["seconds"].append(time.perf_counter() - t0)
        print(f"  repeat {r + 1}/{repeats}: " + ", ".join(f"{k} {v['seconds'][-1]:.1f}s" for k, v in out.items()),
              flush=True)
    summarize_times(out, n)
    return out, outputs


def overheads(res: dict[str, dict]) -> dict[str, dict]:
    """Adapter time / direct-library time - 1, from the best and the median times."""
    out = {}
    for lib in ("foolbox", "art"):
        a, d = res.get(f"{lib}_adapter"), res.get(f"{lib}_direct")
        if a and d:
            best = a["best_s"] / d["best_s"] - 1
            out[lib] = {"best": best, "median": a["median_s"] / d["median_s"] - 1, "target": OVERHEAD_TARGET,
                        "ok": best <= OVERHEAD_TARGET}
    return out


def agreement(res: dict[str, dict], outputs: dict, n: int) -> dict:
    """Spread of the robust accuracies, and each method's agreement with native (success flags, adversarials)."""
    accs = [r["robust_accuracy"] for r in res.values()]
    spread = 100 * (max(accs) - min(accs))
    tol = max(AGREEMENT_PP, 100 / n + 1e-9)
    per_method = {}
    if "native" in outputs:
        xa0, s0 = outputs["native"]
        for name, (xa, s) in outputs.items():
            if name != "native":
                per_method[name] = {"flags_agree": float((s.cpu() == s0.cpu()).float().mean()),
                                    "max_abs_diff_x_adv": float((xa.float() - xa0.float()).abs().max())}
    return {"spread_pp": spread, "tolerance_pp": tol, "ok": spread <= tol, "vs_native": per_method}


# ---------------------------------------------------------------------------------------------- the run


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=128, help="test images attacked (default 128)")
    ap.add_argument("--batch-size", type=int, default=64, help="attack batch size, also ART's (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per method, best is reported (default 3)")
    add_setup_options(ap, "cpu")
    ap.add_argument("--eps", type=float, default=EPS_DEFAULT)
    ap.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    ap.add_argument("--step-size", type=float, default=STEP_SIZE_DEFAULT)
    ap.add_argument("--activation", default="gelu", choices=["gelu", "relu"], help="members' activation (gelu)")
    ap.add_argument("--combine", default="mean_softmax", choices=["mean_softmax", "mean_logits"])
    ap.add_argument("--train-steps", type=int, default=100,
                    help="Adam steps (lr 1e-3, batch 64) per member on MNIST train images (default 100)")
    ap.add_argument("--untrained", action="store_true", help="attack the randomly initialised members")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    ap.add_argument("--out", default="bench/adapters.json")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    device = setup(args)
    if device is None:
        return 2
    selected = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(selected) - set(METHODS))
    if unknown:
        print(f"unknown methods: {', '.join(unknown)} (choose from {', '.join(METHODS)})", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", module="foolbox")
    warnings.filterwarnings("ignore", module="art")

    # the ensemble: three members, trained (or not), composed, then prepared as the engine prepares models
    train_steps = 0 if args.untrained else args.train_steps
    t0 = time.perf_counter()
    x_train, y_train = mnist("train", None, args.seed) if train_steps else (torch.empty(0), torch.empty(0))
    members = [member(k, args.activation, x_train, y_train, train_steps, 64, 1e-3, device, args.seed + k)
               for k in KERNELS]
    train_s = time.perf_counter() - t0
    model, layout = engine_ready(ensemble(members, args.combine), device)

    x_test, y_test = mnist("test", args.n, args.seed + 1)
    B = args.batch_size
    batches = [(x_test[i:i + B].to(device).contiguous(memory_format=layout), y_test[i:i + B].to(device))
               for i in range(0, len(x_test), B)]
    clean = accuracy(model, batches)
    member_clean = {f"k{k}": accuracy(m, batches) for k, m in zip(KERNELS, model.members, strict=True)}
    print(f"[ensemble] {'trained ' + str(train_steps) + ' steps/member' if train_steps else 'untrained'} in "
          f"{train_s:.1f}s; clean accuracy {clean:.3f} (members " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                           member_clean.items()) + ")", flush=True)

    S, eps, alpha = args.steps, args.eps, args.step_size
    builders: dict[str, Callable[[], Runner]] = {
        "native": lambda: plugin_runner("pgd", {"norm": "linf", "eps": eps, "steps": S, "step_size": alpha,
                                                "random_start": False}, args.seed, device),
        "foolbox_adapter": lambda: plugin_runner(
            "foolbox", {"attack": "LinfPGD", "epsilon": eps,
                        "kwargs": {"steps": S, "abs_stepsize": alpha, "random_start": False}}, args.seed, device),
        "foolbox_direct": lambda: foolbox_direct(eps, S, alpha),
        "art_adapter": lambda: plugin_runner(
            "art", {"attack": "ProjectedGradientDescent", "batch_size": B,
                    "kwargs": {"eps": eps, "eps_step": alpha, "max_iter": S, "num_random_init": 0, "norm": "inf"}},
            args.seed, device),
        "art_direct": lambda: art_direct(eps, S, alpha, B, device),
    }
    methods = {name: builders[name]() for name in METHODS if name in selected}
    res, outputs = time_methods(methods, model, batches, args.repeats, device)
    agree = agreement(res, outputs, len(x_test))
    over = overheads(res)
    warnings_found = []
    if not agree["ok"]:
        warnings_found.append(f"robust accuracies disagree by {agree['spread_pp']:.2f} pp (tolerance "
                              f"{agree['tolerance_pp']:.2f}): "
                              + ", ".join(f"{k}={v['robust_accuracy']:.3f}" for k, v in res.items()))
    for lib, o in over.items():
        if not o["ok"]:
            warnings_found.append(f"{lib} adapter overhead {100 * o['best']:.1f}% exceeds the "
                                  f"{100 * OVERHEAD_TARGET:.0f}% target (median {100 * o['median']:.1f}%)")
    for w in warnings_found:
        print(f"WARNING {w}", flush=True)

    report = {
        "torch": torch.__version__, "foolbox": package_version("foolbox"),
        "art": package_version("adversarial-robustness-toolbox"),
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "device": str(device), "threads": torch.get_num_threads(),
        "n": len(x_test), "batch_size": B, "repeats": args.repeats, "eps": eps, "steps": S, "step_size": alpha,
        "random_start": False, "seed": args.seed,
        "model": {"ensemble": "An et al. 2020 3-CNN ensemble", "members": [
            {"plugin": "an2020_cnn", "params": {"kernel_size": k, "activation": args.activation}} for k in KERNELS],
            "combine": args.combine, "memory_format": str(layout).removeprefix("torch."),
            "parameters": sum(p.numel() for p in model.parameters()),
            "trained": bool(train_steps), "train_steps_per_member": train_steps,
            "training": ("randomly initialised, then Adam (lr 1e-3) on random batches of 64 real MNIST training "
                         "images, train mode" if train_steps else "randomly initialised, untrained (--untrained)"),
            "train_s": train_s, "clean_accuracy": clean, "member_clean_accuracy": member_clean},
        "timing": ("best of repeats (median also recorded); one untimed warm-up per method; repeats interleaved "
                   "across methods, order reversed every other repeat"),
        "model_given": "the same engine-prepared object to every method (channels_last, eval, frozen)",
        "methods": res, "ratios": speed_ratios(res, "native", OTHERS), "adapter_overhead": over, "agreement": agree,
        "warnings": warnings_found,
    }
    report["total_s"] = time.perf_counter() - started
    report["measured_on"] = measured_on()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    rat = report["ratios"]
    rows = []
    for name, v in res.items():
        lib = name.split("_")[0]
        rows.append([name, f"{v['samples_per_s']:.1f}", f"{v['best_s']:.2f}", f"{v['median_s']:.2f}",
                     f"{v['robust_accuracy']:.3f}",
                     f"{agree['vs_native'][name]['flags_agree']:.3f}" if name in agree["vs_native"] else "",
                     f"{rat[f'native/{name}']:.2f}" if f"native/{name}" in rat else "",
                     f"{100 * over[lib]['best']:+.1f}%" if name.endswith("_adapter") and lib in over else ""])
    print_table(f"Linf PGD on the An2020 ensemble ({'trained' if train_steps else 'untrained'}): N={len(x_test)}, "
                f"B={B}, {S} steps of {alpha}, eps={eps}, device={device}, threads={report['threads']} "
                f"(native/x > 1: native faster; overhead = adapter/direct - 1, target <= 10%)",
                rows, ["method", "samples/s", "best s", "median s", "robust acc", "=native", "native/x", "overhead"])
    print(f"wrote {out} ({report['total_s']:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
