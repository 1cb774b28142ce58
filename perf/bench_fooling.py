"""Fooling-image evolution speed: MAP-Elites (the ``map_elites`` generator, Nguyen et al. 2015's configuration:
population 200, 100 offspring pairs per generation, one archive cell per class) on the MLP (Szegedy et al.'s
N100-100-10 shape: sigmoid 100-100) and the quickstart's LeNet, both trained briefly on real MNIST and handed over
as the engine hands models to attacks (eval mode, frozen, LeNet in channels_last).

Reports generations per second (one run for all 10 classes, best of ``--repeats`` after one warm-up) and the
fraction of the time spent outside the model's forward pass (the batched SBX and polynomial mutation, parent
selection and the archive update; target: at most 30%), measured by timing every forward call of the run, beside
the time that drawing the operators' random numbers alone takes per generation (as many uniforms as the operators
draw on average, from one ``torch.Generator``: the floor of the time outside the forward pass). Also
an estimate of the suite's full profile (suites/nguyen2015.toml: 1000 generations, 5 runs per class, on three MLPs
and the LeNet) from the measured rates, treating softmax1 and N200-200-10 as the MLP. The load average is recorded
with the timings: on a shared machine the numbers move with it. Writes ``bench/fooling.json``.

    python perf/bench_fooling.py [--generations 100] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from common import mnist, print_table, write_report

from rbench.plugins import get_plugin
from rbench.plugins.attacks.map_elites import MapElites, MapElitesParams

OUTSIDE_TARGET = 0.30
MODELS = {
    "mlp": ("mlp", {"widths": [100, 100], "activation": "sigmoid"}),
    "lenet": ("lenet", {"channels": [20, 50], "hidden": 500, "dropout": [0.0, 0.0, 0.5]}),
}


class Timed(torch.nn.Module):
    """The model, with the wall-clock seconds of its forward calls added up (CPU: calls are synchronous)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.inner(x)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def trained(plugin_name: str, params: dict, n_train: int) -> torch.nn.Module:
    torch.manual_seed(0)
    plugin = get_plugin("model", plugin_name)
    model = plugin.build(plugin.Params(**params))
    x, y = mnist("train", n_train, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(0, len(x), 128):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 128]), y[i:i + 128]).backward()
        opt.step()
    model.eval().requires_grad_(False)
    if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def time_run(model: torch.nn.Module, generations: int, seed: int) -> tuple[float, float]:
    """(total seconds, forward seconds) of one MAP-Elites run for the 10 classes."""
    timed = Timed(model)
    start = time.perf_counter()
    MapElites().run(timed, torch.arange(10), MapElitesParams(generations=generations), shape=(1, 28, 28),
                    generator=torch.Generator().manual_seed(seed))
    return time.perf_counter() - start, timed.seconds


def random_draws_seconds(generations: int, params: MapElitesParams, dims: int = 784) -> float:
    """Seconds per generation for drawing about the uniforms the operators draw (SBX: one per pair, one per gene of
    every pair, two per crossed gene, counting every crossed pair's genes as differing; mutation: one per gene, one
    per mutated gene), nothing else; from one ``torch.Generator`` with this process's threads."""
    g = torch.Generator().manual_seed(0)
    genes = params.pairs * dims
    crossed = int(genes * params.crossover_rate * 0.5)
    sizes = [params.pairs, genes, crossed, crossed, 2 * genes, int(2 * genes * params.mutation_rate)]
    start = time.perf_counter()
    for _ in range(generations):
        for size in sizes:
            torch.rand(size, generator=g)
    return (time.perf_counter() - start) / generations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--generations", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=Path("bench/fooling.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results = {}
    draws = min(random_draws_seconds(args.generations, MapElitesParams()) for _ in range(args.repeats))
    for name, (plugin, params) in MODELS.items():
        model = trained(plugin, params, args.n_train)
        time_run(model, 5, seed=99)  # warm-up
        runs = [time_run(model, args.generations, seed=r) for r in range(args.repeats)]
        total, forward = min(runs)
        results[name] = {"seconds": [r[0] for r in runs], "forward_seconds": [r[1] for r in runs],
                         "generations_per_s": args.generations / total,
                         "fraction_outside_forward": 1 - forward / total,
                         "forward_s_per_generation": forward / args.generations,
                         "random_draws_s_per_generation": draws,
                         "random_draws_to_forward_ratio": draws * args.generations / forward}
    per_generation = {k: 1 / r["generations_per_s"] for k, r in results.items()}
    full_estimate = 5 * 1000 * (3 * per_generation["mlp"] + per_generation["lenet"])
    report = {
        "setup": {"generations": args.generations, "repeats": args.repeats, "population": 200, "pairs": 100,
                  "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                  "load_average_before": load_before, "load_average_after": os.getloadavg(),
                  "machine": platform.processor() or platform.machine(), "torch": torch.__version__},
        "results": results,
        "full_profile_evolution_estimate_s": full_estimate,
        "targets": {f"{k}_fraction_outside_forward": {"measured": r["fraction_outside_forward"],
                                                      "target": OUTSIDE_TARGET,
                                                      "met": r["fraction_outside_forward"] <= OUTSIDE_TARGET}
                    for k, r in results.items()},
    }
    print_table(f"MAP-Elites, {args.generations} generations, 10 classes, {torch.get_num_threads()} threads "
                f"(load average {load_before[0]:.1f})",
                [[k, f"{r['generations_per_s']:.1f}", f"{100 * r['fraction_outside_forward']:.0f}%",
                  f"{1e3 * r['forward_s_per_generation']:.2f}", f"{1e3 * r['random_draws_s_per_generation']:.2f}"]
                 for k, r in results.items()],
                ["model", "generations/s", "outside forward", "forward ms/gen", "random draws alone ms/gen"])
    print(f"full profile's evolution (5 runs x 1000 generations x 3 MLPs + LeNet), estimated: {full_estimate:.0f} s")
    write_report(report, args.out)


if __name__ == "__main__":
    main()
