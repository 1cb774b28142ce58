"""Cold vs warm run of a suite as whole processes: how much the content-addressed store saves.

Runs ``rbench run <suite> --store <fresh tmp dir> --run-dir <tmp> -q`` twice with the same store, each once: the
cold run trains, attacks and evaluates everything; the warm run should find every job in the store. Times each
process (``time.perf_counter`` around ``subprocess.run``), checks that the warm run's summary line (``52 jobs: 52
cached; 0.4s.``) says every job was cached, and that the warm run's tables equal the cold run's: every cell verdict
of ``rbench compare WARM --run COLD -f json`` is ``equal`` and every cell of the two results.json files is
identical (value, interval, n, jobs, outcomes' digest, ...). Targets, printed and recorded as met or NOT met with
when, at which commit and on what CPU they were measured (``common.write_report``): cold/warm >= 20, no warm job
not cached, no warm cell different from the cold one. Writes JSON (``--out``, default ``bench/suite.json``).

Exit status 1 when a run failed, the warm run did not find every job cached or its tables differ from the cold
run's; a missed speed target alone is printed and recorded, not an error.

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

from common import target, write_report

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


def cell_map(results: dict) -> dict[tuple[str, str, str], dict]:
    """Every cell of a results.json, by (table, row, column)."""
    return {(t["name"], c["row"], c["column"]): c for t in results["tables"] for c in t["cells"]}


def compare_runs(warm_dir: Path, cold_dir: Path, env: dict) -> dict:
    """The warm run's tables against the cold run's: ``rbench compare WARM --run COLD -f json`` (every cell's
    verdict must be ``equal``) and the two results.json files cell by cell (every cell identical)."""
    cmd = [*rbench_command(), "compare", str(warm_dir), "--run", str(cold_dir), "-f", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    verdicts: dict[str, int] = {}
    not_equal = []
    try:
        cells = json.loads(proc.stdout)["cells"] if proc.returncode == 0 else None
    except (ValueError, KeyError, TypeError):
        cells = None
    for c in cells or []:
        verdicts[c["verdict"]] = verdicts.get(c["verdict"], 0) + 1
        if c["verdict"] != "equal":
            not_equal.append({k: c.get(k) for k in ("table", "row", "column", "a", "b", "verdict")})
    warm = cell_map(json.loads((warm_dir / "results.json").read_text()))
    cold = cell_map(json.loads((cold_dir / "results.json").read_text()))
    differing = []
    for key in sorted(set(warm) | set(cold)):
        a, b = warm.get(key), cold.get(key)
        if a != b:
            fields = sorted(k for k in set(a or {}) | set(b or {}) if (a or {}).get(k) != (b or {}).get(k))
            differing.append({"cell": list(key), "fields": fields if a and b else ["only in one run"]})
    bad = {(c["table"], c["row"], c["column"]) for c in not_equal} | {tuple(d["cell"]) for d in differing}
    return {"command": " ".join(cmd), "returncode": proc.returncode, "cells": len(cells or []),
            "verdicts": verdicts, "not_equal": not_equal[:50], "all_verdicts_equal": bool(cells) and not not_equal,
            "results_cells": len(warm), "results_cells_differing": len(differing), "differing": differing[:50],
            "results_identical": bool(warm) and not differing,
            # cells whose verdict is not "equal" or that differ in results.json; unknown (nan) if compare failed
            "cells_not_equal": len(bad) if cells else float("nan"),
            "stderr_tail": proc.stderr[-2000:]}


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
        if all(runs.get(p, {}).get("returncode") == 0 for p in ("cold", "warm")):
            equality = compare_runs(tmp / "warm", tmp / "cold", env)
            print(f"[compare] warm vs cold: {equality['cells']} cells, verdicts {equality['verdicts']}; "
                  f"results.json cells identical: {equality['results_identical']} "
                  f"({equality['results_cells_differing']} of {equality['results_cells']} differ)", flush=True)
        else:
            equality = None
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    cold, warm = runs.get("cold"), runs.get("warm")
    ok = bool(cold and warm and cold["returncode"] == 0 and warm["returncode"] == 0)
    ratio = cold["wall_s"] / warm["wall_s"] if ok else float("nan")
    summary = warm["summary"] if warm else None
    all_cached = bool(summary and summary["counts"].get("cached") == summary["jobs"] and summary["jobs"] > 0)
    not_cached = summary["jobs"] - summary["counts"].get("cached", 0) if summary else float("nan")
    equal = bool(equality and equality["all_verdicts_equal"] and equality["results_identical"])
    report = {
        "suite": str(args.suite), "profile": args.profile, "device": args.device or "default",
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "timing": "each run once, as a whole process (interpreter start-up, imports, planning, tables included)",
        "cold_s": cold["wall_s"] if cold else None, "warm_s": warm["wall_s"] if warm else None,
        "ratio_cold_over_warm": ratio if ok else None, "target_ratio": TARGET_RATIO,
        "warm_all_cached": all_cached,
        "warm_equals_cold": equal, "equality": equality,
        "cold_summary": cold["summary"] if cold else None, "warm_summary": summary,
        "targets": {
            "ratio_cold_over_warm": target(ratio, TARGET_RATIO, at_least=True),
            "warm_jobs_not_cached": target(not_cached, 0),
            "warm_cells_not_equal_to_cold": target(equality["cells_not_equal"] if equality else float("nan"), 0),
        },
        "runs": runs, "store": str(store) if args.keep else None,
    }
    if ok:
        print(f"cold {report['cold_s']:.2f}s, warm {report['warm_s']:.2f}s, cold/warm {ratio:.1f}x; "
              f"warm run all cached: {all_cached}; warm tables equal to cold: {equal}")
    else:
        print("a run failed; see the JSON for its output", file=sys.stderr)
    write_report(report, Path(args.out))
    if ok and not equal:
        print("ERROR: the warm run's tables differ from the cold run's (see equality in the JSON)", file=sys.stderr)
    if ok and not all_cached:
        print("ERROR: the warm run did not find every job in the store", file=sys.stderr)
    return 0 if ok and equal and all_cached else 1


if __name__ == "__main__":
    sys.exit(main())
