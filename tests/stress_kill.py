"""Kill stress: SIGKILL ``rbench run`` at many random points (and inside every kind of write), resume, and
check that nothing stored is corrupt or lost and that the tables equal an uninterrupted run's.

    .venv/bin/python tests/stress_kill.py --kills 100 [--suite FILE] [--seed 0] [--out bench/kill_stress.json]

Not collected by pytest (the test suite runs 12 kill points in tests/test_faults.py).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from support import REPO, SHARED_DATA, TINY_SUITE, kill_and_resume, rbench  # noqa: E402


def values(run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    return {f"{t['name']}|{c['row']}|{c['column']}": c["value"] for t in results["tables"] for c in t["cells"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=100, help="SIGKILLs to deliver (runs that finish before their "
                    "kill point do not count)")
    ap.add_argument("--rounds", type=int, default=10, help="kill points per fresh store (default 10)")
    ap.add_argument("--suite", type=Path, default=None, help="default: the tests' tiny suite")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "kill_stress.json")
    args = ap.parse_args()
    import os

    os.environ.setdefault("RBENCH_DATA", str(SHARED_DATA))
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suite = args.suite or root / "tiny.toml"
        if args.suite is None:
            suite.write_text(TINY_SUITE)
        ref = rbench("run", str(suite), "--store", str(root / "ref"), "--run-dir", str(root / "refrun"), "-q")
        assert ref.returncode == 0, ref.stderr
        expected = values(root / "refrun")
        t_full = time.perf_counter() - started
        report = {"kills_requested": args.kills, "rounds": [], "seed": args.seed}
        killed = 0
        while killed < args.kills:
            n = min(args.rounds, args.kills - killed)
            kills = []
            for i in range(n):
                r = rng.random()
                if i == 0 and r < 0.5:
                    kills.append(("fault", "between-weights-and-sidecar:1"))  # inside the first checkpoint
                elif r < 0.6:  # inside a write, after one or two completed writes
                    kills.append(("fault", f"mid-write:{rng.randint(2, 3)}"))
                else:  # at a random time: start-up, training, attack, evaluation, or a write
                    kills.append(("time", rng.uniform(0.5, min(t_full, 3.0))))
            store = root / f"store{len(report['rounds'])}"
            final, endings = kill_and_resume(suite, store, root / "run", kills)
            verify = rbench("cache", "verify", "--store", str(store))
            got = values(root / "run") if final.returncode == 0 else {}
            round_report = {"kills": [f"{k}={v}" for k, v in kills], "endings": endings,
                            "final_exit": final.returncode, "verify_exit": verify.returncode,
                            "verify": verify.stdout.strip().splitlines()[-1] if verify.stdout else "",
                            "tables_equal": got == expected,
                            "differing_cells": sorted(k for k in expected if got.get(k) != expected[k])}
            report["rounds"].append(round_report)
            killed += endings.count("killed")
            print(f"round {len(report['rounds'])}: {endings.count('killed')}/{n} killed, final exit "
                  f"{final.returncode}, {round_report['verify']}, tables equal: {round_report['tables_equal']}",
                  flush=True)
        rounds = report["rounds"]
        report["summary"] = {
            "kill_points": sum(len(r["endings"]) for r in rounds),
            "killed": sum(r["endings"].count("killed") for r in rounds),
            "runs_failed": sum(r["final_exit"] != 0 for r in rounds),
            "stores_with_corrupt_entries": sum(r["verify_exit"] != 0 for r in rounds),
            "rounds_with_different_tables": sum(not r["tables_equal"] for r in rounds),
            "seconds": round(time.perf_counter() - started, 1),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["summary"]))
    s = report["summary"]
    return 0 if not (s["runs_failed"] or s["stores_with_corrupt_entries"] or s["rounds_with_different_tables"]) else 1


if __name__ == "__main__":
    sys.exit(main())
