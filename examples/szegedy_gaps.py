"""The measurements behind two of the Szegedy et al. 2013 gaps (issue 15), outside the engine because one variant
cannot go through it: unclipped noise leaves [0, 1], which rbench's gates refuse for any stored input.

    python examples/szegedy_gaps.py noise [--profile quick] [--draws 3]
    python examples/szegedy_gaps.py amplify [--profile quick]

Both read the suite's trained models from the store (run ``rbench run suites/szegedy2013.toml`` first; a model
that is not stored is reported, never trained here) and print error rates in %:

- ``noise``: Gaussian noise of stddev 0.1, 0.3 and 1 on the suite's ``train_noise`` images (1000 training images)
  and on 1000 test images, clipped to [0, 1] (the suite) or not, in [0, 1] pixel units or standardised ones
  (stddev x 0.3081, MNIST's pixel std), averaged over ``--draws`` seeded draws.
- ``amplify``: the minimal L-BFGS adversarials of M1, M1' and M2 rescaled to RMS 0.1 per sample (the suite's
  ``lbfgs_amplified``), per sample but never shrunk, or by one factor for the whole set (``lbfgs_amplified_set``),
  with and without clipping; errors on the three models, and the suite reading's own-model error split by
  whether a perturbation was scaled up or down.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from rbench.inputs import load_model, load_slice
from rbench.plan import build_plan, data_spec
from rbench.specs import DataSlice
from rbench.store import Store
from rbench.suite import load_suite

SUITE = "suites/szegedy2013.toml"
NOISE_MODELS = ["softmax1", "softmax2", "softmax3", "N100-100-10", "N200-200-10", "AE400-10", "AE400-10-ufldl"]
MNIST_STD = 0.3081


@torch.no_grad()
def error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> float:
    predicted = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return 100.0 * (predicted != y).float().mean().item()


def stored_models(plan, store: Store, names: list[str]) -> dict[str, torch.nn.Module]:
    missing = [n for n in names if not store.has(plan.trained[n])]
    if missing:
        raise SystemExit(f"not in the store {store.root}: {', '.join(missing)}; run rbench run {SUITE} first")
    return {n: load_model(store, plan.trained[n], "cpu") for n in names}


def noise_slices(plan) -> dict[str, DataSlice]:
    """split -> 1000 images drawn as the suite's ``train_noise`` evaluation draws its training images."""
    spec = replace(data_spec(plan.suite.evaluations["train_noise"].data, plan.suite.seed), n=1000)
    return {split: replace(spec, split=split) for split in ("train", "test")}


def noise(plan, store: Store, draws: int) -> None:
    models = stored_models(plan, store, NOISE_MODELS)
    print(f"{draws} seeded draws per image; error (%) averaged over draws")
    for split, data in noise_slices(plan).items():
        x, y, _ = load_slice(data)
        print(f"\n{split} images (n={len(x)})\n{'':44s}" + "".join(f"{n[:13]:>14s}" for n in NOISE_MODELS))
        print(f"{'clean':44s}" + "".join(f"{error(models[n], x, y):14.1f}" for n in NOISE_MODELS))
        for sigma in (0.1, 0.3, 1.0):
            generator = torch.Generator().manual_seed(1234)
            draws_ = [torch.randn(x.shape, generator=generator) for _ in range(draws)]
            for units, scale in (("[0,1] units", 1.0), ("standardised units", MNIST_STD)):
                for clip in (True, False):
                    noisy = [x + sigma * scale * z for z in draws_]
                    noisy = [v.clamp(0, 1) for v in noisy] if clip else noisy
                    row = [np.mean([error(models[n], v, y) for v in noisy]) for n in NOISE_MODELS]
                    label = f"stddev {sigma}, {units}, {'clipped' if clip else 'not clipped'}"
                    print(f"{label:44s}" + "".join(f"{v:14.1f}" for v in row), flush=True)


def rms(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).pow(2).mean(1).sqrt()


def amplify(plan, store: Store) -> None:
    names = ["M1", "M1prime", "M2"]
    models = stored_models(plan, store, names)
    x, y, _ = load_slice(data_spec(plan.suite.evaluations["test_adv"].data, plan.suite.seed))
    for source in names:
        key = plan.attacked[("test_adv", source, "lbfgs")]
        if not store.has(key):
            raise SystemExit(f"the L-BFGS set of {source} is not stored; run rbench run {SUITE} first")
        d = torch.as_tensor(store.load_advset(key).x_adv) - x
        size = rms(d)
        moved = size > 0
        each = torch.where(moved, 0.1 / size.clamp_min(1e-12), torch.zeros_like(size))
        readings = {"per sample to 0.1 (suite)": each, "per sample, never shrunk": torch.where(
            moved, each.clamp_min(1.0), each), "one factor for the set": torch.where(
            moved, 0.1 / size[moved].mean(), torch.zeros_like(size))}
        print(f"\n{source}: {len(x)} images; per-sample RMS mean {size.mean():.4f}, above 0.1: "
              f"{int((size > 0.1).sum())}, none found: {int((~moved).sum())}")
        for label, k in readings.items():
            for clip in (True, False):
                out = x + d * k.view(-1, 1, 1, 1)
                out = out.clamp(0, 1) if clip else out
                errors = "  ".join(f"{t}: {error(models[t], out, y):5.1f}" for t in names)
                print(f"  {label:28s} {'clipped' if clip else 'not clipped':11s} RMS mean "
                      f"{rms(out - x).mean():.4f} | {errors}")
        suite_reading = (x + d * each.view(-1, 1, 1, 1)).clamp(0, 1)
        wrong = error(models[source], suite_reading[size <= 0.1], y[size <= 0.1]), \
            error(models[source], suite_reading[size > 0.1], y[size > 0.1]) if (size > 0.1).any() else float("nan")
        print(f"  suite reading on {source}: error {wrong[0]:.1f}% where scaled up, {wrong[1]:.1f}% where shrunk")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["noise", "amplify"])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--store", default=None)
    args = parser.parse_args()
    plan = build_plan(load_suite(SUITE, args.profile))
    store = Store(args.store)
    noise(plan, store, args.draws) if args.what == "noise" else amplify(plan, store)


if __name__ == "__main__":
    main()
