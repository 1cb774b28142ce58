"""Issue 14's GPU checks as one prepared script, for a session lent a device machine (see perf/README.md, "GPU
checks"): every figure the README's GPU rows need, within a time budget, from one call.

``python3 perf/gpu_check.py local --out DIR`` (the local executor) runs, in this order, each step a subprocess
with its own time limit cut to what is left of ``--budget`` seconds:

1. ``info``: the GPU, driver, torch, CPU count;
2. ``quickstart-gpu``: ``rbench run suites/quickstart.toml`` cold on ``--device cuda`` (one worker per GPU);
3. ``quickstart-cpu``: the same cold on ``--device cpu`` of the same machine (its default workers), then
   ``compare-gpu-cpu``: ``rbench compare --run`` of the two runs (verdict counts, largest rate difference);
4. ``precision-bf16`` / ``precision-fp16``: the quickstart on the GPU in bf16 / fp16 autocast (the models come
   from the store: training stays fp32), each compared with the fp32 GPU run: rate cells beyond 0.5 points;
5. ``batch``: ``perf/bench_batch.py`` on the GPU (samples/s by batch size, peak memory per sample, the largest
   batch that fits, run once to check it);
6. ``mlss-full-gpu``: ``rbench run suites/mlss_ensemble.toml`` (its full profile) cold on the GPU.

``python3 perf/gpu_check.py ray --out DIR`` runs the quickstart cold with the local executor on the GPU, then cold
in a second store with ``--executor ray --device cuda --workers 4 --gpu-fraction 0.25`` (four tasks sharing the GPU),
and compares the two runs' tables (identical cells expected) and counts the processes that held the GPU at once.
``repeat`` runs the quickstart cold twice on the GPU in two stores, then with Ray as above in a third, each compared
with the first (are cold GPU runs reproducible?); ``mlss`` runs only the MLSS full profile cold, for as long as the
budget lasts (``--device cpu``: on the machine's CPU, for the speedup).

While the steps run, a thread samples ``nvidia-smi`` every half second: GPU utilization, memory used and the number
of processes holding the GPU; each step's record has their mean and maximum. Written to ``DIR``: ``summary.json``
(every step: command, seconds, exit code, figures, output tail), ``summary.md`` (the same, for reading),
``log.txt`` (every step's full output), ``gpu.csv`` (the samples) and the benchmark JSON. Only the standard library
is imported here: rbench runs as ``python -m rbench`` in subprocesses. A step that fails is recorded and the
next one runs. ``--device cpu`` (with ``--profile quick``, faster) rehearses the script where there is no GPU (no
samples then).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: rbench, as the steps run it (a ``pip --target`` install has no console script)
RBENCH = [sys.executable, "-m", "rbench"]
#: the Ray executor with four tasks sharing the GPU (``ray`` and ``repeat``)
RAY_SHARING = ("--executor", "ray", "--workers", "4", "--gpu-fraction", "0.25")
#: seconds kept back from each step's limit for the steps after it and the summary
RESERVE = 15


@dataclass
class Step:
    """One step's record."""

    name: str
    command: list[str]
    started: float = 0.0
    seconds: float = 0.0
    returncode: int | None = None
    timed_out: bool = False
    tail: str = ""
    figures: dict = field(default_factory=dict)


class Sampler(threading.Thread):
    """Samples ``nvidia-smi`` every ``period`` seconds into ``rows`` (time, utilization %, memory MiB, processes)
    until stopped; without nvidia-smi it samples nothing."""

    def __init__(self, csv: Path, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.csv, self.period, self.rows = csv, period, []
        self.stop = threading.Event()
        self.smi = shutil.which("nvidia-smi")

    def _query(self, *args: str) -> list[str]:
        out = subprocess.run([self.smi, *args, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=10).stdout
        return [line for line in out.splitlines() if line.strip()]

    def run(self) -> None:
        if self.smi is None:
            return
        with self.csv.open("w") as f:
            f.write("time,utilization_gpu_percent,memory_used_mib,processes\n")
            while not self.stop.is_set():
                try:
                    gpu = self._query("--query-gpu=utilization.gpu,memory.used")
                    apps = self._query("--query-compute-apps=pid")
                    util, mem = (float(v) for v in gpu[0].split(",")[:2])
                except (subprocess.SubprocessError, OSError, ValueError, IndexError):
                    self.stop.wait(self.period)
                    continue
                row = (time.time(), util, mem, len(apps))
                self.rows.append(row)
                f.write(",".join(str(v) for v in row) + "\n")
                f.flush()
                self.stop.wait(self.period)

    def during(self, t0: float, t1: float) -> dict:
        """Mean and max utilization, max memory and max processes among the samples taken in [t0, t1]."""
        rows = [r for r in self.rows if t0 <= r[0] <= t1]
        if not rows:
            return {}
        return {"samples": len(rows), "gpu_util_mean_percent": round(sum(r[1] for r in rows) / len(rows), 1),
                "gpu_util_max_percent": max(r[1] for r in rows), "memory_max_mib": max(r[2] for r in rows),
                "processes_max": max(r[3] for r in rows)}


class Checks:
    """Runs the steps in order within ``budget`` seconds and writes the records to ``out``."""

    def __init__(self, out: Path, budget: float, device: str, profile: str | None = None) -> None:
        self.out, self.device, self.deadline = out, device, time.monotonic() + budget  # device: cuda, or cpu
        self.profile = ["--profile", profile] if profile else []
        self.steps: list[Step] = []
        out.mkdir(parents=True, exist_ok=True)
        self.log = (out / "log.txt").open("w")
        self.sampler = Sampler(out / "gpu.csv")
        self.work = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/rbench-gpu-check"))
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def step(self, name: str, command: list[str], limit: float, stdout_to: Path | None = None) -> Step:
        """Run ``command`` (from the repository root) for at most ``limit`` seconds or what the budget leaves;
        its standard output goes to ``stdout_to`` if given (else with its errors to the log and the tail)."""
        step = Step(name, command)
        self.steps.append(step)
        timeout = min(limit, self.left() - RESERVE)
        if timeout < 5:
            step.tail = f"skipped: {self.left():.0f} s of the budget left"
            print(f"== {name}: {step.tail}", flush=True)
            return step
        print(f"== {name}: {' '.join(command)} (limit {timeout:.0f} s)", flush=True)
        self.log.write(f"\n== {name}: {' '.join(command)}\n")
        self.log.flush()
        step.started = time.time()
        t0 = time.perf_counter()
        sink = stdout_to.open("w") if stdout_to else None
        proc = subprocess.Popen(command, cwd=REPO, stdout=sink or subprocess.PIPE,
                                stderr=subprocess.PIPE if sink else subprocess.STDOUT, text=True,
                                start_new_session=True)
        lines: list[str] = []
        reader = threading.Thread(target=self._drain, args=(proc, lines), daemon=True)
        reader.start()
        try:
            step.returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            step.timed_out = True
            os.killpg(proc.pid, 15)
            try:
                step.returncode = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                step.returncode = proc.wait()
        reader.join(timeout=10)
        if sink:
            sink.close()
        step.seconds = time.perf_counter() - t0
        step.tail = "".join(lines[-15:])
        step.figures.update(self.sampler.during(step.started, step.started + step.seconds))
        print(f"   {name}: exit {step.returncode}{' (timed out)' if step.timed_out else ''} in {step.seconds:.1f} s "
              f"{json.dumps(step.figures)}", flush=True)
        return step

    def _drain(self, proc: subprocess.Popen, lines: list[str]) -> None:
        stream = proc.stdout if proc.stdout is not None else proc.stderr
        assert stream is not None
        for line in stream:
            lines.append(line)
            self.log.write(line)
        self.log.flush()

    def rbench(self, name: str, args: list[str], limit: float, stdout_to: Path | None = None) -> Step:
        return self.step(name, [*RBENCH, *args], limit, stdout_to)

    def run_suite(self, name: str, suite: str, store: str, run: str, *extra: str, limit: float = 300) -> Step:
        """A quiet ``rbench run`` into the work folder's ``store`` and run folder ``run``."""
        step = self.rbench(name, ["run", suite, "--store", str(self.work / store), "--run-dir", str(self.work / run),
                                  "-q", *self.profile, *extra], limit)
        summary = [line for line in step.tail.splitlines() if " jobs: " in line]
        if summary:
            step.figures["jobs"] = summary[-1].strip()
        elif step.timed_out:  # what the cut run stored: its dry run counts the stored jobs
            try:
                dry = subprocess.run([*RBENCH, "run", suite, "--store", str(self.work / store), *self.profile, *extra,
                                      "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                return step
            step.figures["jobs_when_cut"] = next((line.rsplit(";", 1)[-1].strip() for line in dry.stdout.splitlines()
                                                  if " stored, " in line), dry.stderr.strip()[-300:])
        return step

    def compare(self, name: str, run: str, other: str, tables: bool = False) -> Step:
        """``rbench compare RUN --run OTHER -f json``: verdict counts and the rate cells more than 0.5 points apart;
        with ``tables``, also whether the two runs' tables.csv are byte-identical."""
        saved = self.work / f"{name}.json"
        step = self.rbench(name, ["compare", str(self.work / run), "--run", str(self.work / other), "-f", "json"], 120,
                           stdout_to=saved)
        if tables:
            csv = [self.work / r / "tables.csv" for r in (run, other)]
            step.figures["tables_csv_identical"] = all(p.exists() for p in csv) and \
                csv[0].read_bytes() == csv[1].read_bytes()
        try:
            cells = json.loads(saved.read_text())["cells"]
        except (OSError, ValueError, KeyError, TypeError):
            return step
        percent = _percent_cells(self.work / run / "results.json")
        rates = [abs(c["delta"]) for c in cells if c["delta"] is not None
                 and (c["table"], c["row"], c["column"]) in percent]
        others = [abs(c["delta"]) / max(abs(c["b"]), 1e-12) for c in cells if c["delta"] is not None
                  and (c["table"], c["row"], c["column"]) not in percent]
        step.figures.update({"cells": len(cells), "verdicts": dict(Counter(c["verdict"] for c in cells)),
                             "identical_values": sum(c["delta"] == 0 for c in cells),
                             "percent_cells": len(rates),
                             "percent_cells_beyond_0.5_points": sum(d > 0.5 for d in rates),
                             "max_percent_difference_points": round(max(rates), 2) if rates else None,
                             "max_relative_difference_other_cells": float(f"{max(others):.3g}") if others else None})
        return step

    def finish(self) -> None:
        self.sampler.stop.set()
        self.sampler.join(timeout=5)
        records = [asdict(s) for s in self.steps]
        (self.out / "summary.json").write_text(json.dumps(records, indent=1))
        lines = ["| step | exit | seconds | figures |", "| --- | --- | --- | --- |"]
        for s in self.steps:
            exit_ = "skipped" if s.returncode is None else f"{s.returncode}{' timed out' if s.timed_out else ''}"
            lines.append(f"| {s.name} | {exit_} | {s.seconds:.1f} | {json.dumps(s.figures)} |")
        (self.out / "summary.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)
        self.log.close()


def _percent_cells(results: Path) -> set[tuple[str, str, str]]:
    """The (table, row, column) of a run's cells whose metric is a percentage (its unit is ``%``)."""
    try:
        tables = json.loads(results.read_text())["tables"]
    except (OSError, ValueError, KeyError):
        return set()
    out = set()
    for t in tables:
        for c in t["cells"]:
            metric = c.get("metric") or next(iter(t["units"]), "")
            if t["units"].get(metric) == "%":
                out.add((t["name"], c["row"], c["column"]))
    return out


def info(checks: Checks) -> None:
    code = ("import json, os, platform, torch; d = torch.cuda.is_available(); print(json.dumps({'python': "
            "platform.python_version(), 'torch': torch.__version__, 'cuda': torch.version.cuda, 'gpus': "
            "[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if d else [], "
            "'cpu_count': os.cpu_count(), 'cpu': platform.processor() or platform.machine()}))")
    step = checks.step("info", [sys.executable, "-c", code], 120)
    try:
        step.figures.update(json.loads(step.tail.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        pass
    if checks.sampler.smi:
        step.figures["nvidia-smi"] = subprocess.run([checks.sampler.smi, "-L"], capture_output=True,
                                                    text=True).stdout.strip()


def local(checks: Checks) -> None:
    quick, device = "suites/quickstart.toml", checks.device
    gpu = checks.run_suite("quickstart-gpu", quick, "store-gpu", "run-gpu", "--device", device, limit=150)
    cpu = checks.run_suite("quickstart-cpu", quick, "store-cpu", "run-cpu", "--device", "cpu", limit=150)
    if gpu.returncode == cpu.returncode == 0:
        cpu.figures["speedup_of_the_gpu_run"] = round(cpu.seconds / gpu.seconds, 2)
    checks.compare("compare-gpu-cpu", "run-gpu", "run-cpu")
    for precision in ("bf16", "fp16"):
        checks.run_suite(f"precision-{precision}", quick, "store-gpu", f"run-{precision}", "--device", device,
                         "--precision", precision, limit=90)
        checks.compare(f"compare-{precision}-fp32", f"run-{precision}", "run-gpu")
    checks.step("batch", [sys.executable, "perf/bench_batch.py", "--device", device, "--verify",
                          "--out", str(checks.out / "batch.json")], 120)
    mlss(checks)


def ray(checks: Checks) -> None:
    quick, device = "suites/quickstart.toml", checks.device
    checks.run_suite("quickstart-gpu-local", quick, "store-local", "run-local", "--device", device, limit=240)
    checks.run_suite("quickstart-gpu-ray", quick, "store-ray", "run-ray", *RAY_SHARING, "--device", device, limit=300)
    checks.compare("compare-ray-local", "run-ray", "run-local", tables=True)


def repeat(checks: Checks) -> None:
    """Is a cold GPU run reproducible? The quickstart cold twice on the GPU in two stores, then with the Ray
    executor (four tasks sharing the GPU) in a third, each compared with the first run."""
    quick, device = "suites/quickstart.toml", checks.device
    checks.run_suite("quickstart-gpu-a", quick, "store-a", "run-a", "--device", device, limit=120)
    checks.run_suite("quickstart-gpu-b", quick, "store-b", "run-b", "--device", device, limit=120)
    checks.compare("compare-b-a", "run-b", "run-a", tables=True)
    checks.run_suite("quickstart-gpu-ray", quick, "store-ray", "run-ray", *RAY_SHARING, "--device", device, limit=150)
    checks.compare("compare-ray-a", "run-ray", "run-a", tables=True)


def mlss(checks: Checks) -> None:
    """The MLSS full profile cold on the GPU, for as long as the budget lasts."""
    where = "gpu" if checks.device == "cuda" else checks.device
    checks.run_suite(f"mlss-full-{where}", "suites/mlss_ensemble.toml", f"store-{where}", "run-mlss", "--device",
                     checks.device, limit=3600)


MODES = {"local": local, "ray": ray, "repeat": repeat, "mlss": mlss}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=sorted(MODES))
    ap.add_argument("--out", type=Path, required=True, help="folder for the records ($OUT on the device machine)")
    ap.add_argument("--budget", type=float, default=480, help="seconds for every step together (default 480)")
    ap.add_argument("--device", default="cuda", help="cuda (default); cpu rehearses the script without a GPU")
    ap.add_argument("--profile", help="a profile for every suite run (quick: a faster rehearsal)")
    args = ap.parse_args(argv)
    os.environ.setdefault("RBENCH_DATA", str(REPO.parent / "shared" / "data"))
    checks = Checks(args.out, args.budget, args.device, args.profile)
    checks.sampler.start()
    try:
        info(checks)
        MODES[args.mode](checks)
    finally:
        checks.finish()
    print(f"{platform.node()}: wrote {sorted(p.name for p in args.out.iterdir())}")
    return 0 if all(s.returncode == 0 for s in checks.steps) else 1


if __name__ == "__main__":
    sys.exit(main())
