"""Kill stress: stop ``rbench run`` at many random points -- SIGKILL at random times and inside every kind of
write, SIGTERM to one- and two-worker runs -- resume, and check that nothing stored is corrupt or lost, that no
process of a SIGTERM'd run outlives it, and that the tables equal an uninterrupted run's. After each round, two
stored entries of one kind are swapped under each other's keys: ``cache verify`` must report both, and the next
run must recompute them and give the uninterrupted tables again.

    .venv/bin/python tests/stress_kill.py --kills 100 [--suite FILE] [--seed 0] [--out bench/kill_stress.json]

Not collected by pytest (tests/test_faults.py runs 5 kill points in `make test`, 12 in `make check-full`).
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
from support import REPO, SHARED_DATA, TINY_SUITE, kill_and_resume, rbench, swap_entries  # noqa: E402


def values(run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    return {f"{t['name']}|{c['row']}|{c['column']}": c["value"] for t in results["tables"] for c in t["cells"]}


def swap_round(rng: random.Random, suite: Path, store: Path, run_dir: Path, expected: dict) -> dict:
    """Swap two stored entries of one kind; verify must report both, a run must recompute them."""
    jobs = json.loads((run_dir / "results.json").read_text())["jobs"]
    by_kind: dict[str, list[str]] = {}
    for key, job in jobs.items():
        by_kind.setdefault(job["label"].split()[0], []).append(key)
    kind = rng.choice(sorted(k for k, keys in by_kind.items() if len(keys) >= 2))
    a, b = rng.sample(sorted(by_kind[kind]), 2)
    swap_entries(store, a, b)
    verify = rbench("cache", "verify", "--store", str(store))
    text = " ".join(verify.stdout.split())
    again = rbench("run", str(suite), "--store", str(store), "--run-dir", str(run_dir), "-q")
    recomputed = json.loads((run_dir / "results.json").read_text())["jobs"] if again.returncode == 0 else {}
    return {"kind": kind, "keys": [a, b], "verify_exit": verify.returncode,
            "both_reported": all(f"store entry {k} is corrupt" in text for k in (a, b)),
            "both_recomputed": all(recomputed.get(k, {}).get("status") == "done" for k in (a, b)),
            "tables_equal": again.returncode == 0 and values(run_dir) == expected}


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
                elif r < 0.45:  # inside a write, after one or two completed writes
                    kills.append(("fault", f"mid-write:{rng.randint(2, 3)}"))
                elif r < 0.6:  # SIGTERM to a run with one or two workers (the latter need a few seconds to start)
                    two = rng.random() < 0.5
                    kills.append(("term2" if two else "term", rng.uniform(4.0 if two else 0.5, min(t_full, 8.0))))
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
            if final.returncode == 0:
                round_report["swap"] = swap_round(rng, suite, store, root / "run", expected)
            report["rounds"].append(round_report)
            stopped = sum(e in ("killed", "terminated", "orphans") for e in endings)
            killed += stopped
            print(f"round {len(report['rounds'])}: {stopped}/{n} stopped ({endings.count('terminated')} by SIGTERM, "
                  f"{endings.count('orphans')} with orphans), final exit {final.returncode}, "
                  f"{round_report['verify']}, tables equal: {round_report['tables_equal']}, swap: "
                  f"{round_report.get('swap')}", flush=True)
        rounds = report["rounds"]
        swaps = [r["swap"] for r in rounds if "swap" in r]
        report["summary"] = {
            "kill_points": sum(len(r["endings"]) for r in rounds),
            "killed": sum(r["endings"].count("killed") for r in rounds),
            "terminated": sum(r["endings"].count("terminated") for r in rounds),
            "terminated_with_orphans": sum(r["endings"].count("orphans") for r in rounds),
            "swaps": len(swaps),
            "swaps_missed": sum(not (s["verify_exit"] == 1 and s["both_reported"] and s["both_recomputed"]
                                     and s["tables_equal"]) for s in swaps),
            "runs_failed": sum(r["final_exit"] != 0 for r in rounds),
            "stores_with_corrupt_entries": sum(r["verify_exit"] != 0 for r in rounds),
            "rounds_with_different_tables": sum(not r["tables_equal"] for r in rounds),
            "seconds": round(time.perf_counter() - started, 1),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["summary"]))
    s = report["summary"]
    bad = ("runs_failed", "stores_with_corrupt_entries", "rounds_with_different_tables", "terminated_with_orphans",
           "swaps_missed")
    return 1 if any(s[k] for k in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
