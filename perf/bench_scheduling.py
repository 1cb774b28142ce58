"""Planning and scheduling at scale, without a GPU: synthetic suites of 10^4 and 10^5 jobs.

Every synthetic suite is a real TOML file, read by :func:`rbench.suite.load_suite` and planned by
:func:`rbench.runner.suite_plan` (the path ``rbench run`` takes). It has M models, one attack with a grid of 99
values and one white-box evaluation of every model under every grid value, plus a table of the errors (rows:
attack, columns: model). So the graph is the usual fan-out, train -> 99 attacks -> 100 evaluations (99
adversarial and the clean one) per model: M * 200 jobs (M = 50: 10^4 jobs; M = 500: 10^5).

1. **Plan** (target < 1 ms per job), with the built-in plugins (mnist, mlp, fgsm): ``load`` is reading and
   validating the suite (TOML, plugin params, references, the table's cells); ``plan`` is ``suite_plan`` (every
   job's spec and content key); ``plan --only`` is ``suite_plan(suite, ["errors"])``, the ``rbench run --only``
   path (:func:`rbench.plan.restrict`). Best of ``--repeats``. Nothing is computed.
2. **Scheduling overhead** (target < 5 ms per job locally, < 20 ms with Ray): the executor's ``run`` over every job
   of the plan, on a fresh store, observed by :class:`rbench.events.RunEvents` (the runner's observer, which fires
   the observer hooks; no terminal display is registered). Per job = wall / jobs; ``steady`` leaves out the time
   before the first job finished (worker processes importing torch, Ray starting). Two kinds of jobs, both
   through the real executor and :func:`rbench.execution.compute` (the job's lock, the stored-entry re-check, the
   time-limit wrapper, the observer calls, the pickling to worker processes):

   - ``empty``: the jobs do nothing at all: the job runners of :mod:`rbench.jobs` (``RUNNERS``) are replaced by a
     function that returns, in this process and (through a ``sitecustomize`` that the temporary plugin folder
     holds, active only while ``RBENCH_SCHED_EMPTY_JOBS=1``) in every worker process. This is the executor's own
     overhead. Nothing is stored (checked: the store holds no entry afterwards).
   - ``noop``: the real job runners with plugins that do nothing (a temporary plugin distribution,
     ``rbench_sched_noop``, on ``PYTHONPATH`` with an entry point in the group ``rbench``, so that worker
     processes load it too): a 2x2 one-channel dataset of 8 images held in memory, a 4 -> 2 linear model,
     the ``none`` trainer and an attack that returns its inputs. So each job still loads its inputs from the
     store, runs the output checks and writes a small, checksummed entry and a gate stamp (each fsync'd with its
     folder: 4 fsyncs a job, milliseconds each on this machine); this is the engine's per-job cost around a
     plugin's work.

   Local: ``inline`` (one worker, jobs in this process) and ``2 workers`` (spawned processes). Ray: the ``ray``
   executor from the plugin registry, with a Ray instance it starts for the run (2 CPUs, as ``--workers 2``); skipped
   (and said so in the JSON) when no ``ray`` executor is registered or Ray cannot be imported.
3. **Warm cache check** (target < 10 s for 10^4 stored jobs): :func:`rbench.trust.trusted_results` on the store the
   ``noop`` inline run filled (10^4 real entries), with a fresh :class:`rbench.store.Store` object (nothing of that
   store in memory), as a re-run does before calling the executor: every entry is trusted either because its
   bytes are those that last passed every check of its job (:func:`rbench.gates.verified_copy`) or after the full
   check (bound to its key, checksums, well formed, finite, the validity gates). Every job must come back
   ``cached``.

Not included: interpreter start-up and imports, the terminal display, the run folder and the tables (assembling
them reads every prediction: that is the reporters' cost, not scheduling), and any real plugin work.

    python perf/bench_scheduling.py                       # 10^4 and 10^5 (~20 minutes on a 2-core CPU)
    python perf/bench_scheduling.py --sizes 1000 --noop-size 1000 --workers-size 1000 --ray-size 1000  # quick

Writes JSON (``--out``, default ``bench/scheduling.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import shutil
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RBENCH_DATA", str(ROOT.parent / "shared" / "data"))

from common import package_version, print_table, write_report  # noqa: E402

PLAN_TARGET_MS = 1.0
WARM_TARGET_S = 10.0
LOCAL_TARGET_MS = 5.0
RAY_TARGET_MS = 20.0
#: grid values of the one attack: each model brings 1 train + 99 attack + 100 eval jobs
GRID = 99
JOBS_PER_MODEL = 2 * GRID + 2
PLUGIN = "rbench_sched_noop"
EMPTY_ENV = "RBENCH_SCHED_EMPTY_JOBS"

PLUGIN_SOURCE = '''
"""Plugins whose jobs do nothing (perf/bench_scheduling.py), and the switch that empties the job runners."""

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from rbench import hookimpl
from rbench.attack import AttackOutput, FixedBudgetAttack
from rbench.dataset import Dataset
from rbench.model import ModelPlugin

N = 8


class Data(Dataset):
    name = "sched_data"
    input_shape = (1, 2, 2)
    num_classes = 2

    def load(self, split, params):
        rng = np.random.default_rng(0 if split == "train" else 1)
        return rng.random((N, 1, 2, 2), dtype=np.float32), (np.arange(N) % 2).astype(np.int64)

    def size(self, split, params):
        return N


class ModelParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int = 0  # tells the models of a suite apart (each its own key); the network is the same


class Model(ModelPlugin):
    name = "sched_model"
    Params = ModelParams
    default_trainer = "none"

    def build(self, params):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))


class AttackParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eps: float = 0.1


class Attack(FixedBudgetAttack):
    name = "sched_attack"
    Params = AttackParams
    norm = "linf"

    def uses_gradients(self, params):
        return False

    def run(self, model, x, y, params, *, generator=None):
        with torch.no_grad():
            fooled = model(x).argmax(1) != y
        return AttackOutput(x.clone(), fooled)


def empty_runners(jobs_module):
    """Make every job runner of ``rbench.jobs`` return at once (the jobs then do nothing and store nothing)."""
    def nothing(job, store, device, progress, **options):
        return None

    for kind in list(jobs_module.RUNNERS):
        jobs_module.RUNNERS[kind] = nothing


@hookimpl
def rbench_datasets():
    return [Data()]


@hookimpl
def rbench_models():
    return [Model()]


@hookimpl
def rbench_attacks():
    return [Attack()]
'''

# Imported at start-up by every Python process with the plugin folder on PYTHONPATH (worker processes, Ray's
# workers); acts only while RBENCH_SCHED_EMPTY_JOBS=1: once rbench.jobs is imported, its runners are emptied.
SITECUSTOMIZE = f'''
import os
import sys

if os.environ.get("{EMPTY_ENV}") == "1":
    import importlib.abc
    import importlib.util

    class _EmptyJobs(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "rbench.jobs":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                import {PLUGIN}
                {PLUGIN}.empty_runners(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _EmptyJobs())
'''


def install_plugins(folder: Path) -> None:
    """The no-op plugin distribution (module, dist-info with its entry point) and the sitecustomize, in ``folder``,
    put on ``sys.path`` (for this process's registry, not built yet) and ``PYTHONPATH`` (for worker processes)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{PLUGIN}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    info = folder / f"{PLUGIN}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[rbench]\n{PLUGIN} = {PLUGIN}\n")
    (folder / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)


def suite_text(models: int, plugins: str) -> str:
    """A suite of ``models`` * :data:`JOBS_PER_MODEL` jobs, with the built-in plugins or the no-op ones."""
    builtin = plugins == "builtin"
    dataset, model, attack = ("mnist", "mlp", "fgsm") if builtin else ("sched_data", "sched_model", "sched_attack")
    lines = ["[suite]", 'name = "scheduling"', "seed = 0", "", "[datasets.d]", f'plugin = "{dataset}"', ""]
    for i in range(models):
        params = f"widths = [{8 + i}]" if builtin else f"index = {i}"
        lines += [f"[models.m{i}]", f'plugin = "{model}"', f"params = {{ {params} }}", 'dataset = "d"', ""]
    eps = ", ".join(f"{0.001 * (k + 1):.3f}" for k in range(GRID))
    lines += ["[attacks.a]", f'plugin = "{attack}"', f"grid = {{ eps = [{eps}] }}", ""]
    sources = ", ".join(f'"m{i}"' for i in range(models))
    lines += ["[evaluations.e]", 'dataset = "d"', 'split = "test"', f"n = {100 if builtin else 8}",
              f"sources = [{sources}]", 'attacks = ["a"]', ""]
    lines += ["[tables.errors]", 'evaluation = "e"', 'rows = "attack"', 'columns = "model"', 'metric = "error"', ""]
    return "\n".join(lines)


def write_suite(folder: Path, jobs: int, plugins: str) -> Path:
    path = folder / f"{plugins}_{jobs}.toml"
    path.write_text(suite_text(max(1, round(jobs / JOBS_PER_MODEL)), plugins))
    return path


# -- 1. planning -----------------------------------------------------------------------------------------------
def bench_plan(folder: Path, jobs: int, repeats: int) -> dict[str, Any]:
    from rbench.runner import suite_plan
    from rbench.suite import load_suite

    path = write_suite(folder, jobs, "builtin")
    times: dict[str, list[float]] = {"load": [], "plan": [], "plan_only": []}
    n = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        suite = load_suite(path)
        t1 = time.perf_counter()
        plan = suite_plan(suite, None)
        t2 = time.perf_counter()
        only = suite_plan(suite, ["errors"])
        t3 = time.perf_counter()
        times["load"].append(t1 - t0)
        times["plan"].append(t2 - t1)
        times["plan_only"].append(t3 - t2)
        n = len(plan.jobs)
        assert len(only.jobs) == n, (len(only.jobs), n)  # the one table reads every job
    best = {k: min(v) for k, v in times.items()}
    return {"jobs": n, "suite_bytes": path.stat().st_size, "seconds": times, "best_s": best,
            "ms_per_job": {"load": 1e3 * best["load"] / n, "plan": 1e3 * best["plan"] / n,
                           "load_and_plan": 1e3 * (best["load"] + best["plan"]) / n,
                           "plan_only": 1e3 * best["plan_only"] / n}}


# -- 2. executing ----------------------------------------------------------------------------------------------
class Watching:
    """The run's observer (:class:`rbench.events.RunEvents`), counting what it is told."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.statuses: Counter[str] = Counter()
        self.warnings: list[str] = []
        self.first_finished: float | None = None

    def started(self, job: Any, device: str) -> None:
        self.inner.started(job, device)

    def progress(self, key: str, completed: float, total: float, text: str) -> None:
        self.inner.progress(key, completed, total, text)

    def finished(self, job: Any, result: Any) -> None:
        if self.first_finished is None:
            self.first_finished = time.perf_counter()
        self.statuses[result.status] += 1
        self.inner.finished(job, result)

    def warning(self, message: str, job: Any = None) -> None:
        self.warnings.append(message)
        self.inner.warning(message, job)


@contextlib.contextmanager
def empty_jobs(on: bool):
    """While inside, every job runner returns at once, here and in worker processes started meanwhile."""
    if not on:
        yield
        return
    import rbench.jobs

    saved = dict(rbench.jobs.RUNNERS)
    importlib.import_module(PLUGIN).empty_runners(rbench.jobs)
    os.environ[EMPTY_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(EMPTY_ENV, None)
        rbench.jobs.RUNNERS.clear()
        rbench.jobs.RUNNERS.update(saved)


def stored_entries(root: Path) -> int:
    objects = root / "objects"
    return sum(1 for p in objects.glob("*/*") if p.suffix in (".h5", ".json")) if objects.is_dir() else 0


def bench_execute(folder: Path, jobs: int, executor: str, workers: int, empty: bool, keep_store: Path | None = None
                  ) -> dict[str, Any]:
    from rbench.devices import resolve_devices
    from rbench.events import RunEvents
    from rbench.executors import configure
    from rbench.runner import suite_plan
    from rbench.store import Store
    from rbench.suite import load_suite

    plan = suite_plan(load_suite(write_suite(folder, jobs, "noop")), None)
    root = keep_store or Path(tempfile.mkdtemp(prefix="store-", dir=folder))
    store = Store(root)
    store.ensure_writable()
    run, params = configure(executor, None)
    devices, n_workers = resolve_devices("cpu", workers)
    observer = Watching(RunEvents())
    todo = list(plan.jobs.values())
    with empty_jobs(empty):
        started = time.perf_counter()
        results = run.run(plan, store, todo, devices=devices, workers=n_workers, observer=observer,
                          job_timeout=None, params=params)
        wall = time.perf_counter() - started
    n = len(todo)
    entries = stored_entries(root)
    problems = []
    if Counter(r.status for r in results.values()) != Counter({"done": n}):
        problems.append(f"statuses {dict(Counter(r.status for r in results.values()))}, expected {n} done")
    if entries != (0 if empty else n):
        problems.append(f"{entries} entries stored, expected {0 if empty else n}")
    first = (observer.first_finished or started) - started
    record = {"executor": executor, "workers": n_workers, "jobs": "empty" if empty else "noop", "n": n,
              "wall_s": wall, "ms_per_job": 1e3 * wall / n, "first_finished_s": first,
              "steady_ms_per_job": 1e3 * (wall - first) / max(1, n - 1), "entries_stored": entries,
              "problems": problems + observer.warnings[:5]}
    if keep_store is None:
        shutil.rmtree(root, ignore_errors=True)
    else:
        record["plan"] = plan
    return record


# -- 3. the warm cache check -----------------------------------------------------------------------------------
def bench_warm(plan: Any, root: Path, repeats: int) -> dict[str, Any]:
    from rbench.events import RunEvents
    from rbench.store import Store
    from rbench.trust import trusted_results

    seconds, problems = [], []
    for _ in range(repeats):
        observer = Watching(RunEvents())
        store = Store(root)  # nothing of the store in memory, as in a new run
        started = time.perf_counter()
        results = trusted_results(plan, store, observer)
        seconds.append(time.perf_counter() - started)
        if len(results) != len(plan.jobs) or any(r.status != "cached" for r in results.values()):
            problems.append(f"{len(results)} of {len(plan.jobs)} cached")
        problems += observer.warnings[:5]
    return {"n": len(plan.jobs), "seconds": seconds, "best_s": min(seconds),
            "ms_per_job": 1e3 * min(seconds) / len(plan.jobs), "problems": problems}


def ray_status() -> str | None:
    """Why the Ray section cannot run (None: it can)."""
    from rbench.errors import RbenchError
    from rbench.executors import configure
    from rbench.manager import get_registry

    if "ray" not in get_registry().plugins["executor"]:
        return "skipped: no ray executor registered"
    try:
        configure("ray", None)
    except RbenchError as exc:
        return f"skipped: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="jobs per synthetic suite (planning, empty jobs)")
    ap.add_argument("--noop-size", type=int, default=10000, help="jobs of the no-op plugin runs (and the warm check)")
    ap.add_argument("--workers-size", type=int, default=10000, help="jobs of the 2-worker runs")
    ap.add_argument("--ray-size", type=int, default=10000, help="jobs of the Ray runs (0: skip Ray)")
    ap.add_argument("--inline-max", type=int, default=100000, help="largest size of the inline empty-job run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (suites, stores)")
    ap.add_argument("--out", type=Path, default=Path("bench/scheduling.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    folder = Path(tempfile.mkdtemp(prefix="bench-scheduling-"))
    install_plugins(folder / "plugins")
    from rbench.manager import get_registry

    registry = get_registry()
    assert "sched_model" in registry.plugins["model"], registry.failures
    report: dict[str, Any] = {"setup": {"sizes": sizes, "grid": GRID, "repeats": args.repeats,
                                        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                                        "load_before": os.getloadavg(), "python": platform.python_version(),
                                        "ray": package_version("ray")},
                              "plan": {}, "execute": [], "warm": None, "ray": None}
    total = time.perf_counter()
    try:
        for size in sizes:
            report["plan"][str(size)] = r = bench_plan(folder, size, args.repeats if size <= 10000 else 1)
            print(f"plan {r['jobs']} jobs: load {r['best_s']['load']:.2f}s, plan {r['best_s']['plan']:.2f}s, "
                  f"--only {r['best_s']['plan_only']:.2f}s ({r['ms_per_job']['load_and_plan']:.3f} ms/job)",
                  flush=True)
        runs: list[tuple[int, str, int, bool]] = [(s, "local", 1, True) for s in sizes if s <= args.inline_max]
        runs += [(args.workers_size, "local", 2, True)] if args.workers_size else []
        runs += [(args.workers_size, "local", 2, False)] if args.workers_size else []
        for size, executor, workers, empty in runs:
            r = bench_execute(folder, size, executor, workers, empty)
            report["execute"].append(r)
            print(f"{executor} x{workers} {r['jobs']} {r['n']} jobs: {r['wall_s']:.1f}s, {r['ms_per_job']:.3f} ms/job "
                  f"(steady {r['steady_ms_per_job']:.3f}) {r['problems'] or ''}", flush=True)
        if args.noop_size:
            store = folder / "warm-store"
            r = bench_execute(folder, args.noop_size, "local", 1, False, keep_store=store)
            plan = r.pop("plan")
            report["execute"].append(r)
            print(f"local x1 noop {r['n']} jobs: {r['wall_s']:.1f}s, {r['ms_per_job']:.3f} ms/job "
                  f"{r['problems'] or ''}", flush=True)
            report["warm"] = w = bench_warm(plan, store, args.repeats)
            print(f"warm check of {w['n']} stored jobs: {w['best_s']:.2f}s ({w['ms_per_job']:.3f} ms/job) "
                  f"{w['problems'] or ''}", flush=True)
        why = ray_status() if args.ray_size else "skipped: --ray-size 0"
        report["ray"] = {"status": why or "ran", "runs": []}
        if why:
            print(f"Ray: {why}")
        else:
            for empty in (True, False):
                r = bench_execute(folder, args.ray_size, "ray", 2, empty)
                report["ray"]["runs"].append(r)
                print(f"ray x2 {r['jobs']} {r['n']} jobs: {r['wall_s']:.1f}s, {r['ms_per_job']:.3f} ms/job "
                      f"(steady {r['steady_ms_per_job']:.3f}) {r['problems'] or ''}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")
    report["total_s"] = time.perf_counter() - total
    report["setup"]["load_after"] = os.getloadavg()
    rows = [[f"plan {k}", f"{v['jobs']}", f"{v['best_s']['load'] + v['best_s']['plan']:.2f}",
             f"{v['ms_per_job']['load_and_plan']:.3f}", f"plan alone {v['ms_per_job']['plan']:.3f}, --only "
             f"{v['ms_per_job']['plan_only']:.3f}"] for k, v in report["plan"].items()]
    for r in report["execute"] + (report["ray"] or {}).get("runs", []):
        rows.append([f"{r['executor']} x{r['workers']} {r['jobs']}", str(r["n"]), f"{r['wall_s']:.2f}",
                     f"{r['ms_per_job']:.3f}", f"steady {r['steady_ms_per_job']:.3f}"])
    if report["warm"]:
        w = report["warm"]
        rows.append(["warm check", str(w["n"]), f"{w['best_s']:.2f}", f"{w['ms_per_job']:.3f}", ""])
    print_table("Planning and scheduling (2-core CPU figures: see perf/README.md)", rows,
                ["what", "jobs", "seconds", "ms/job", "notes"])
    targets: dict[str, dict[str, Any]] = {}
    for k, v in report["plan"].items():
        ms = v["ms_per_job"]["load_and_plan"]
        targets[f"plan_ms_per_job_{k}"] = {"measured": ms, "target": PLAN_TARGET_MS, "met": ms < PLAN_TARGET_MS}
    for r in report["execute"]:
        if r["jobs"] == "empty":
            name = f"local_x{r['workers']}_ms_per_job_{r['n']}"
            targets[name] = {"measured": r["ms_per_job"], "target": LOCAL_TARGET_MS,
                             "met": r["ms_per_job"] < LOCAL_TARGET_MS and not r["problems"]}
    if report["warm"]:
        w = report["warm"]
        targets[f"warm_check_s_{w['n']}"] = {"measured": w["best_s"], "target": WARM_TARGET_S,
                                             "met": w["best_s"] < WARM_TARGET_S and not w["problems"]}
    for r in (report["ray"] or {}).get("runs", []):
        if r["jobs"] == "empty":
            targets[f"ray_ms_per_job_{r['n']}"] = {"measured": r["ms_per_job"], "target": RAY_TARGET_MS,
                                                   "met": r["ms_per_job"] < RAY_TARGET_MS and not r["problems"]}
    report["targets"] = targets
    runs = report["execute"] + (report["ray"] or {}).get("runs", []) + ([report["warm"]] if report["warm"] else [])
    report["problems"] = [p for r in runs for p in r["problems"]]
    write_report(report, args.out)
    for problem in report["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if report["problems"] else 0  # a missed speed target is reported, not an error (as bench_suite.py)


if __name__ == "__main__":
    sys.exit(main())
