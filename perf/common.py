"""Helpers shared by the benchmark scripts (importable as ``common``: each script's folder is on sys.path)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rbench.data import load_split

#: the load average when the script started, before its own work (at the end, the script's threads are part of it)
LOAD_AT_START = os.getloadavg() if hasattr(os, "getloadavg") else None


def mnist(split: str, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images (all if None) of a seeded permutation of ``split``, in index order when ``n`` is
    given: float32 (n, 1, 28, 28) in [0, 1], int64 labels."""
    images, labels = load_split("mnist", split)
    idx = np.random.default_rng(seed).permutation(len(images))[:n]
    idx = np.sort(idx) if n is not None else idx
    x = torch.from_numpy(images[idx].astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels[idx].astype(np.int64))


def add_setup_options(ap: argparse.ArgumentParser, device: str | None = "cpu") -> None:
    """The options every script that calls :func:`setup` shares: ``--device`` (default ``device``; none where
    ``device`` is None: the script runs on the CPU), ``--threads`` and ``--seed``."""
    if device is not None:
        ap.add_argument("--device", default=device, help=f"cpu or cuda[:N] (default {device})")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    ap.add_argument("--seed", type=int, default=0)


def setup(args: argparse.Namespace) -> torch.device | None:
    """A script's start: ``RBENCH_DATA`` defaults to the workplace's ``../shared/data``, ``--threads`` (if given)
    sets torch's threads; the ``--device`` asked for (cpu if the script has none), or None after saying on stderr
    that CUDA was asked for and is not available."""
    os.environ.setdefault("RBENCH_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    device = torch.device(getattr(args, "device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("cuda requested but not available", file=sys.stderr)
        return None
    return device


def fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, *, epochs: int, batch: int,
        lr: float, seed: int) -> torch.nn.Module:
    """``model`` (already on ``device``) trained ``epochs`` passes of Adam over ``x`` in seeded shuffled batches,
    with gradients cleared; returned in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            b = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[b].to(device)), y[b].to(device)).backward()
            opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so wall-clock timings include it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarize_times(results: dict[str, dict], n: int) -> None:
    """Add best/median seconds and samples/s to each method's ``{"seconds": [...]}`` record, in place."""
    for r in results.values():
        r["best_s"] = min(r["seconds"])
        r["median_s"] = statistics.median(r["seconds"])
        r["samples_per_s"] = n / r["best_s"]
        r["samples_per_s_median"] = n / r["median_s"]


def speed_ratios(results: dict[str, dict], base: str, others: tuple[str, ...]) -> dict[str, float]:
    """``base/other``: the other method's time over ``base``'s (> 1: ``base`` is faster), best and median."""
    out = {}
    for other in others:
        if base in results and other in results:
            out[f"{base}/{other}"] = results[other]["best_s"] / results[base]["best_s"]
            out[f"{base}/{other} (median)"] = results[other]["median_s"] / results[base]["median_s"]
    return out


def package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def print_table(title: str, rows: list[list[str]], header: list[str], left_columns: int = 1) -> None:
    """A rich table (plain text if rich is missing); the first ``left_columns`` columns left-justified."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        print(f"\n{title}")
        for r in [header, *rows]:
            print("  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)))
        return
    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i < left_columns else "right")
    for r in rows:
        table.add_row(*[str(c) for c in r])
    Console(width=max(Console().width, 120)).print(table)


#: the /proc/cpuinfo flags :func:`measured_on` records
CPU_FEATURES = {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"}


def measured_on() -> dict:
    """When, at which commit and on what the figures were measured: UTC time, the git commit (and whether the
    tree had changes), the CPU's model name, cores, the load average at the end, torch and its threads."""
    import datetime
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  cwd=Path(__file__).parent).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu, flags = "", set()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
        flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            # the code differs from the commit (bench/'s own records, rewritten by every benchmark, do not count)
            # (pathspecs from the top: git runs in perf/, where "." was perf/ alone and hid every other change)
            "commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", ":(top)",
                                                                               ":(top,exclude)bench")),
            "cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            # the vector units torch's kernels pick from: "AMD EPYC" alone named hosts with and without AVX-512,
            # whose bf16 speed differs 15x (bench_precision)
            "cpu_features": sorted(flags & CPU_FEATURES),
            "load_average_at_start": LOAD_AT_START,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def target(measured: float, goal: float, at_least: bool = False) -> dict:
    """A target's record: ``measured`` against ``goal`` (at most, or ``at_least``), and whether it is met."""
    return {"measured": measured, "target": goal, "at_least": at_least,
            "met": measured >= goal if at_least else measured <= goal}


def write_report(report: dict, out: Path) -> bool:
    """Print each of ``report["targets"]`` (measured, target, met), add :func:`measured_on` under
    ``measured_on``, and write the report as JSON to ``out``. Returns whether every target was met."""
    for key, t in report["targets"].items():
        sign = ">=" if t.get("at_least") else "<="
        print(f"{key}: {t['measured']:.3f} (target {sign} {t['target']}: {'met' if t['met'] else 'NOT met'})")
    report["measured_on"] = measured_on()
    load, cores = LOAD_AT_START, report["measured_on"]["cores"] or 1
    if load and load[0] > cores / 2:  # the timings competed with other work: read them as such
        print(f"WARNING: started under load (1-minute load average {load[0]:.1f} on {cores} cores before this "
              "script's own work): the timings are noisy; run again on an idle machine before quoting them")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return all(t["met"] for t in report["targets"].values())
