"""Cold vs warm run of a suite as whole processes: how much the content-addressed store saves.

Runs ``rbench run <suite> --store <fresh tmp dir> --run-dir <tmp> -q`` twice with the same store: the cold
run trains, attacks and evaluates everything; the warm run should find every job in the store. Times each
process (``time.perf_counter`` around ``subprocess.run``), reports cold/warm (target >= 20) and checks that the
warm run's summary line (``52 jobs: 52 cached; 0.4s.``) says every job was cached. Writes JSON (``--out``,
default ``bench/suite.json``).

    python perf/bench_suite.py [--suite suites/quickstart.toml] [--profile quick] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 20.0
SUMMARY = re.compile(r"(\d+) jobs?: ([^\n]*?);\s*([\d.]+)s\.")


def rbench_command() -> list[str]:
    """The ``rbench`` console script next to this interpreter, else ``python -m rbench.cli``."""
    script = Path(sys.executable).parent / "rbench"
    if script.exists():
        return [str(script)]
    found = shutil.which("rbench")
    return [found] if found else [sys.executable, "-c", "import sys; from rbench.cli import main; sys.exit(main())"]


def parse_summary(output: str) -> dict | None:
    """The last ``N jobs: ...; T s.`` line: total jobs, the per-state counts, the reported seconds."""
    matches = SUMMARY.findall(output)
    if not matches:
        return None
    total, states, seconds = matches[-1]
    counts = {}
    for part in states.split(","):
        m = re.match(r"\s*(\d+)\s+(.+?)\s*$", part)
        if m:
            counts[m.group(2)] = int(m.group(1))
    return {"jobs": int(total), "counts": counts, "reported_s": float(seconds)}


def run_once(cmd: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    output = proc.stdout + proc.stderr
    return {"wall_s": wall, "returncode": proc.returncode, "summary": parse_summary(output),
            "output_tail": output[-3000:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="suites/quickstart.toml")
    ap.add_argument("--profile", default=None, help="suite profile passed through to rbench run (e.g. quick)")
    ap.add_argument("--device", default=None, help="passed through to rbench run")
    ap.add_argument("--out", default="bench/suite.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store and run folders")
    args = ap.parse_args(argv)

    env = dict(os.environ)
    env.setdefault("RBENCH_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    env.setdefault("RBENCH_OFFLINE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="rbench-bench-suite-"))
    store = tmp / "store"
    runs = {}
    try:
        for phase in ("cold", "warm"):
            cmd = [*rbench_command(), "run", str(args.suite), "--store", str(store), "--run-dir", str(tmp / phase),
                   "-q"]
            if args.profile:
                cmd += ["--profile", args.profile]
            if args.device:
                cmd += ["--device", args.device]
            print(f"[{phase}] {' '.join(cmd)}", flush=True)
            runs[phase] = run_once(cmd, env)
            r = runs[phase]
            print(f"[{phase}] {r['wall_s']:.2f}s, exit {r['returncode']}, summary {r['summary']}", flush=True)
            if r["returncode"] != 0:
                print(r["output_tail"], file=sys.stderr)
                break
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    cold, warm = runs.get("cold"), runs.get("warm")
    ok = bool(cold and warm and cold["returncode"] == 0 and warm["returncode"] == 0)
    ratio = cold["wall_s"] / warm["wall_s"] if ok else None
    summary = warm["summary"] if warm else None
    all_cached = bool(summary and summary["counts"].get("cached") == summary["jobs"] and summary["jobs"] > 0)
    report = {
        "suite": str(args.suite), "profile": args.profile, "device": args.device or "default",
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "cold_s": cold["wall_s"] if cold else None, "warm_s": warm["wall_s"] if warm else None,
        "ratio_cold_over_warm": ratio, "target_ratio": TARGET_RATIO,
        "meets_target": bool(ratio and ratio >= TARGET_RATIO),
        "warm_all_cached": all_cached,
        "cold_summary": cold["summary"] if cold else None, "warm_summary": summary,
        "runs": runs, "store": str(store) if args.keep else None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if ok:
        print(f"cold {report['cold_s']:.2f}s, warm {report['warm_s']:.2f}s, cold/warm {ratio:.1f}x "
              f"(target >= {TARGET_RATIO:.0f}: {'met' if report['meets_target'] else 'NOT met'}); "
              f"warm run all cached: {all_cached}")
    else:
        print("a run failed; see the JSON for its output", file=sys.stderr)
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
