"""A whole run: load and validate suites, plan, execute, assemble tables, write the run folder."""

from __future__ import annotations

import datetime as _dt
import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from rbench.assemble import assemble
from rbench.compare import check_claims, compare
from rbench.devices import resolve_devices
from rbench.errors import RbenchError, RunFolderRemoved
from rbench.events import RunEvents, listening
from rbench.executors import JobResult, capacity, configure
from rbench.flatten import flatten_suite, suite_text
from rbench.inputs import plugin_params
from rbench.manager import BUILTIN_DISTRIBUTION, close_match, get_registry
from rbench.metric import declared_references
from rbench.plan import Job, Plan, build_plan, canonical, check_keyed_data, restrict
from rbench.precision import check_precision
from rbench.preview import Preview, preview
from rbench.progress import RunProgress
from rbench.provenance import now_iso, package_versions
from rbench.report.reporters import renders_text, write_text_report
from rbench.report.terminal import print_comparison, print_tables
from rbench.results import WRITING_MARK, RunResults
from rbench.rundir import (
    check_could_write,
    check_run_dir,
    folder_kept,
    prepare_run_dir,
    record_outputs,
    remove_folders,
    remove_previous_outputs,
    write_output,
    writing_into,
)
from rbench.specs import TrainSpec
from rbench.store import Store
from rbench.suite import Suite, load_suite
from rbench.trust import checked_reports, trusted_results


@dataclass
class RunOutcome:
    results: RunResults
    run_dir: Path
    job_results: dict[str, JobResult]
    seconds: float
    #: problems that did not fail the run (a figure that could not be drawn)
    notes: list[str] = field(default_factory=list)
    #: the tables ``--only`` chose (empty: all); the comparison then covers only these
    only: tuple[str, ...] = ()

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.job_results.values() if r.status in ("failed", "skipped")]

    @property
    def failed_cells(self) -> list[str]:
        """``table (row, column): error`` for every cell whose value could not be computed (a failed job it reads,
        or its metric's own error): a run with any is not a success either."""
        return [f"{t.name} ({c.row}, {c.column}): {c.error}" for t in self.results.tables for c in t.cells
                if c.error]


def default_run_dir(suite_name: str) -> Path:
    """``runs/<suite>-<date>-<time>``, with ``-2``, ``-3`` ... after it where that folder exists already (two runs
    started in one second; the second would otherwise be refused: :func:`rbench.rundir.writing_into`)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{suite_name}-{stamp}"
    return next(path for n in range(1, 10_000)
                if not (path := base if n == 1 else base.with_name(f"{base.name}-{n}")).exists())


def select_tables(suite: Suite, only: list[str] | None, path: str | Path) -> Suite:
    """``suite`` with only the tables ``only`` names (``--only``, in the suite's order); None or empty: all of
    them. An unknown name is a one-line error naming the suite file, the option and the suite's tables."""
    if not only:
        return suite
    for name in only:
        if name not in suite.tables:
            known = ", ".join(suite.tables) or "none"
            raise RbenchError(f"{path}: --only {name!r}: the suite has no such table{_close(name, suite.tables)} "
                              f"(tables: {known})")
    tables = {name: t for name, t in suite.tables.items() if name in only}
    read = {cell.evaluation for table in tables.values() for cell in table.cells.values()}
    read |= {ref.evaluation for table in tables.values() for cell in table.cells.values()
             for ref in declared_references(cell.metric.call.obj, cell.metric.call.params) if ref.evaluation}
    return replace(suite, tables=tables,
                   warnings={name: lines for name, lines in suite.warnings.items() if name in read or not name})


def _close(name: str, choices: object) -> str:
    close = close_match(name, choices)
    return f"; did you mean {close!r}?" if close is not None else ""


def with_precision(suite: Suite, precision: str | None) -> Suite:
    """``suite`` computing its attack, transform and eval jobs in ``precision`` (``--precision``, checked by
    :func:`rbench.precision.check_precision`; None: the suite's own ``precision``)."""
    return suite if precision is None else replace(suite, precision=precision)


def suite_plan(suite: Suite, only: list[str] | None) -> Plan:
    """The plan of ``suite``; with ``--only``, just the jobs its (selected) tables read (:func:`restrict`)."""
    plan = build_plan(suite)
    return restrict(plan, suite.tables.values()) if only else plan


def run_suite(path: str | Path, *, profile: str | None, store: Store, run_dir: Path | None, device: str | None,
              workers: int | None, executor: str, console: Console, quiet: bool = False,
              job_timeout: float | None = None, only: list[str] | None = None,
              executor_options: dict | None = None, precision: str | None = None,
              own: tuple[str, ...] = (), executor_checked: bool = False) -> RunOutcome:
    """Run one suite end to end; the run folder gets results.json and every reporter's rendering.

    Everything a user can get wrong (the suite, the tables ``only`` names, the devices, the store, the run folder,
    the data of the jobs to compute) is checked before any job runs. The run leases its plan's keys, so
    ``rbench cache gc`` in another process never deletes what it uses. ``job_timeout`` (seconds; default: the
    suite's ``job_timeout``, else none) ends any job that runs longer: it fails alone, naming its plugin.
    ``only``: compute just what these tables read, and render only them. ``executor_options``: the executor's
    command-line options (``{"--address": ...}``, see :func:`rbench.executors.configure`). ``precision``: the
    arithmetic of the attack, transform and eval jobs (``--precision``; default: the suite's, see
    :mod:`rbench.precision`). ``own``: files the caller put into ``run_dir`` itself (``rbench eval``'s suite.toml),
    so that the folder counts as new (:func:`rbench.rundir.check_run_dir`). ``executor_checked``: the caller ran the
    executor's check on these options already (``rbench eval``, before it wrote its suite): not run again (the Ray
    executor's joins the cluster)."""
    started = time.perf_counter()
    precise = None if precision is None else check_precision(precision)
    suite = with_precision(select_tables(load_suite(path, profile), only, path), precise)
    resolved = resolved_suite(path, profile, suite, only)  # rendered before any work: it cannot fail later
    digests = file_digests(suite)  # of the files as they were read, not as they may be at the end
    devices, n_workers = resolve_devices(device, workers)
    executor_params = configure(executor, executor_options, check=not executor_checked)[1]
    option = "--run-dir" if run_dir else "run folder"
    run_dir = run_dir or default_run_dir(suite.name)
    check_run_dir(run_dir, store.root, option, own)
    store.check_is_store()  # a mistyped --store never gets a store's folders among someone else's files
    plan = suite_plan(suite, only)
    created = prepare_run_dir(run_dir, option)
    try:
        with writing_into(run_dir, option, new=bool(created)):  # before the store is made: a folder in use is
            # bad input too
            data_checked = not store.root.exists()
            if data_checked:  # everything is to compute: check its data before the store is made
                prepare_data(list(plan.jobs.values()))
            store.ensure_writable()
            return _run(suite, plan, profile, store, run_dir, devices, n_workers, executor, console, quiet,
                        suite.job_timeout if job_timeout is None else job_timeout, started, only, executor_params,
                        data_checked, resolved=resolved, digests=digests)
    except BaseException:
        remove_folders(created)  # a run stopped before it wrote anything leaves no empty folders behind
        raise


@dataclass
class DryRun:
    """What ``rbench run --dry-run`` found: the validated suite, its (restricted) plan and the preview."""

    suite: Suite
    plan: Plan
    preview: Preview
    devices: list[str]
    workers: int
    store: Path
    store_exists: bool
    #: where and how many jobs would run at once (:meth:`rbench.executors.Executor.capacity`)
    capacity: str = ""


def dry_run(path: str | Path, *, profile: str | None, store: Store, device: str | None, workers: int | None,
            executor: str, only: list[str] | None = None, executor_options: dict | None = None,
            precision: str | None = None, run_dir: Path | None = None) -> DryRun:
    """Validate and plan as :func:`run_suite` does (suite, ``only``, devices, workers, executor, the store's
    layout, the run folder: ``run_dir`` or the default one; both folders must be creatable and writable, judged
    without writing: :func:`rbench.rundir.check_could_write`) and preview the plan against the store; nothing is
    computed or written, not even the store's or the run's folders. The data files are not checked (that may
    download), except local-only data whose content enters the keys (:func:`rbench.plan.check_keyed_data`); but
    ``RBENCH_DATA``, when set, must name a folder, as the run refuses it otherwise (a dry run said all was well)."""
    from rbench.data import check_user_folder

    precise = None if precision is None else check_precision(precision)
    suite = with_precision(select_tables(load_suite(path, profile), only, path), precise)
    devices, n_workers = resolve_devices(device, workers)
    chosen, params = configure(executor, executor_options)
    option = "--run-dir" if run_dir else "run folder"
    run_dir = run_dir or default_run_dir(suite.name)
    check_run_dir(run_dir, store.root, option)
    check_could_write(run_dir, option)  # what prepare_run_dir and store.ensure_writable find by writing
    store.check_is_store()
    check_could_write(store.root, "store")
    check_user_folder()
    plan = suite_plan(suite, only)
    check_keyed_data(plan)  # else the preview would count stored jobs as to compute
    return DryRun(suite, plan, preview(plan, store), devices, n_workers, store.root, store.root.is_dir(),
                  capacity(chosen, params, devices, n_workers))


def _run(suite: Suite, plan: Plan, profile: str | None, store: Store, run_dir: Path, devices: list[str],
         n_workers: int, executor: str, console: Console, quiet: bool, job_timeout: float | None, started: float,
         only: list[str] | None = None, executor_params: object = None, data_checked: bool = False,
         *, resolved: str, digests: dict[str, str]) -> RunOutcome:
    run_executor = get_registry().get("executor", executor).obj
    observer = RunEvents()
    with store.lease(set(plan.jobs), suite.name), RunProgress(len(plan.jobs), console, quiet) as display, \
            listening(display):
        for line in suite.warning_lines():  # heard live by every listener, recapped in the summary
            observer.warning(line)
        job_results = trusted_results(plan, store, observer)
        todo = [job for job in plan.jobs.values() if job.key not in job_results]
        if not data_checked:
            prepare_data(todo)
        returned = run_executor.run(plan, store, todo, devices=devices, workers=n_workers, observer=observer,
                                    job_timeout=job_timeout, params=executor_params)
        job_results.update(checked_reports(plan, store, executor_results(executor, todo, returned, observer), observer))
        job_results = {key: job_results[key] for key in plan.jobs if key in job_results}  # the plan's order
        failed = {k: r.error or r.status for k, r in job_results.items() if r.status in ("failed", "skipped")}
        results = RunResults(
            suite=suite.name, title=suite.title, profile=profile, files=suite.files, description=suite.description,
            provenance={"packages": package_versions(third_party(suite)), "plugins": plugin_versions(suite),
                        "devices": devices, "workers": n_workers,
                        "precision": suite.precision,
                        "files": digests,
                        "store": str(store.root), "finished": now_iso()},
            tables=assemble(plan, store, failed),
            published=suite.published, published_docs=suite.published_docs, only=list(suite.tables) if only else [],
            jobs={k: {"label": r.label, "status": r.status, "seconds": round(r.seconds, 3), "device": r.device,
                      "error": r.error, "deps": list(plan.jobs[k].deps),
                      **({"computed": computed_where(store, k)} if r.status == "cached" else {}),
                      **({"sha256": store.read_checksum(k)} if r.status in ("done", "cached") else {})}
                  for k, r in job_results.items()},
        )
        _check_run_folder_kept(run_dir)
        try:
            problems = write_run_dir(results, run_dir, store, resolved)
        except (RbenchError, OSError):  # a file that could not be written: because the folder went meanwhile, or
            _check_run_folder_kept(run_dir)  # else as it is
            raise
        _check_run_folder_kept(run_dir)  # went while a figure reporter wrote (its failure is a note), or made again
        for note in problems:
            observer.warning(note)
        notes = suite.warning_lines() + problems
    return RunOutcome(results, run_dir, job_results, time.perf_counter() - started, notes,
                      tuple(suite.tables) if only else ())


def _check_run_folder_kept(run_dir: Path) -> None:
    """:class:`RunFolderRemoved` if the run folder went, or was made again without the lock this run holds (made
    again here, its files would be unguarded against another run or report): not the user's input (exit 1)."""
    if not folder_kept(run_dir):
        raise RunFolderRemoved(f"run folder {run_dir} was removed while the suite ran: nothing was written there; "
                               "the results are stored: run the same command again to write them (nothing is "
                               "recomputed)")


#: the suite a run ran, flattened, in its run folder (``rbench run RUN_DIR/suite.resolved.toml`` runs it again)
RESOLVED_SUITE = "suite.resolved.toml"
RESOLVED_HEADER = ("The suite this run ran, as rbench ran it: its includes merged, its profile and --precision\n"
                   "applied, its paths absolute (rbench run on this file runs it again; results.json's\n"
                   "provenance.files holds the SHA-256 of the files it was read from).")


def resolved_suite(path: str | Path, profile: str | None, suite: Suite, only: list[str] | None = None) -> str:
    """The text of :data:`RESOLVED_SUITE`: the suite at ``path`` with ``profile`` as one self-contained document
    (:func:`rbench.flatten.flatten_suite`), with the run's precision (``--precision`` overrides the suite's)."""
    doc = flatten_suite(path, profile)
    if suite.precision != "fp32" or "precision" in doc.get("suite", {}):
        doc.setdefault("suite", {})["precision"] = suite.precision
    header = RESOLVED_HEADER + (f"\nThe run computed only what --only {' --only '.join(only)} reads: give it again."
                                if only else "")
    return suite_text(doc, header, RESOLVED_SUITE)


def computed_where(store: Store, key: str) -> dict[str, Any]:
    """Where and when a stored output was computed, from the provenance it records (a cached job's own ``device``
    and ``seconds`` are this run's: nothing): device (with its torch threads), host, time, seconds, precision, and
    the rbench and torch versions. The entry passed its checks in this run, and its checksum covers this record."""
    provenance = store.recorded_meta(key).get("provenance")
    if not isinstance(provenance, dict):
        return {}
    recorded = provenance.get("packages")
    packages: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    out = {name: provenance.get(name) for name in ("device", "host", "created", "seconds", "precision")}
    out.update({name: packages.get(name) for name in ("rbench", "torch")})
    return {name: value for name, value in out.items() if value is not None}


def file_digests(suite: Suite) -> dict[str, str]:
    """The SHA-256 of every file a suite was read from (itself, its includes, its published files): what a run's
    numbers were made from, to tell later whether those files changed."""
    digests = {}
    for name in (*suite.files, *suite.published):
        try:
            digests[name] = hashlib.sha256(Path(name).read_bytes()).hexdigest()
        except OSError:
            digests[name] = "unreadable"
    return digests


def executor_results(executor: str, todo: list[Job], returned: dict[str, JobResult], observer: RunEvents
                     ) -> dict[str, JobResult]:
    """The result of every job handed to ``executor``, as it reported them: a job it returned no result for failed
    (the observers hear it finish so). Results for jobs it was not handed are ignored: the runner's own trusted
    results stand. (What a job reported done stored is checked next: :func:`rbench.trust.checked_reports`.)"""
    out: dict[str, JobResult] = {}
    for job in todo:
        result = returned.get(job.key)
        if result is None:
            result = JobResult(job.key, job.label, "failed",
                               error=f"{job.label}: executor {executor!r} returned no result for this job")
            observer.finished(job, result)
        out[job.key] = result
    return out


def third_party(suite: Suite) -> tuple[str, ...]:
    """The distributions, other than rbench, of the plugins ``suite`` calls."""
    return tuple(sorted({dist for _, dist in suite.plugins.values() if dist != BUILTIN_DISTRIBUTION}))


def plugin_versions(suite: Suite) -> dict[str, str]:
    """``{"attack pgd": "1.0 (rbench)", ...}``: each plugin ``suite`` calls, its version and distribution, so that a
    run folder says which version of a third-party plugin made its numbers."""
    return {f"{kind} {name}": f"{version} ({dist})" for (kind, name), (version, dist) in suite.plugins.items()}


def prepare_data(jobs: list[Job]) -> None:
    """Check (or download) the data of every job to compute, so bad data fails the run before any work; and
    ``RBENCH_DATA``, when set, names a folder even where every job is stored (a typo served a warm run, exit 0)."""
    from rbench.data import check_user_folder

    check_user_folder()
    wanted: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
    for job in jobs:
        slices = job.spec.slices()  # a monitored model's per-epoch data too
        if isinstance(job.spec, TrainSpec) and job.spec.trainer is not None:  # data a trainer loads (outliers)
            trainer, tparams = plugin_params("trainer", job.spec.trainer)
            if not getattr(trainer, "reads_data", True):  # a loaded model: its training split is not read
                slices = [s for s in slices if s is not job.spec.data]
            for name, split in trainer.extra_data(tparams):
                call = {"plugin": name, "params": {}}
                wanted[(canonical(call), split)] = (call, split)
        for data in slices:
            call = data.dataset.to_dict()
            wanted[(canonical(call), data.split)] = (call, data.split)
    for call, split in wanted.values():
        plugin = get_registry().get("dataset", call["plugin"]).obj
        plugin.prepare(split, plugin.Params.model_validate(call["params"]))


def write_run_dir(results: RunResults, run_dir: Path, store: Store, resolved: str | None = None) -> list[str]:
    """Every reporter writes its files into ``run_dir`` (atomically): text reporters first, then the figure
    reporters (which read stored outputs), by their ``order`` (the html report, 10, embeds the others' PNGs). A
    figure that cannot be drawn does not fail the run: the returned notes say why. A folder a run wrote into
    before holds only this run's files afterwards: what that run's reporters wrote is removed first (text reports
    excepted: they are replaced, and so is ``resolved``, the text of :data:`RESOLVED_SUITE`, written first), see
    :func:`rbench.rundir.remove_previous_outputs`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    reporters = sorted((info.obj for info in get_registry().plugins["reporter"].values()),
                       key=lambda r: (not renders_text(r), getattr(r, "order", 0)))
    marker = run_dir / WRITING_MARK  # until every file is written (a run stopped meanwhile leaves it)
    marker.write_bytes(b"")
    remove_previous_outputs(run_dir, keep={r.suffix for r in reporters if renders_text(r)} | {RESOLVED_SUITE})
    record_outputs(run_dir, [], merge=False)  # a run's folder from now on; each file is noted as it is written
    if resolved is not None:
        write_output(run_dir / RESOLVED_SUITE, lambda tmp: tmp.write_text(resolved, encoding="utf-8"))
    notes, written = [], []
    for reporter in reporters:
        if renders_text(reporter):  # a file that cannot be written is a one-line RbenchError (write_output)
            written.append(write_text_report(reporter, results, run_dir))
            continue
        try:
            written += reporter.write(results, run_dir, store) or []
        except Exception as exc:
            notes.append(f"reporter {reporter.name!r}: {type(exc).__name__}: {exc}")
    record_outputs(run_dir, written)
    marker.unlink(missing_ok=True)
    return notes


def summarize(outcome: RunOutcome, console: Console) -> None:
    print_tables(outcome.results, console)
    if outcome.results.published:
        rows, claims = compare(outcome.results), check_claims(outcome.results)
        if rows or claims or not outcome.only:
            print_comparison(rows, console, claims=claims)
    counts: dict[str, int] = {}
    for r in outcome.job_results.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    console.print(f"{len(outcome.job_results)} jobs: {parts}; {outcome.seconds:.1f}s. Run folder: "
                  f"{escape(str(outcome.run_dir))}")
    skipped = [r for r in outcome.failed if r.status == "skipped"]
    for r in outcome.failed:
        if r.status == "failed":
            console.print(f"[red]failed:[/] {escape(str(r.error))}", highlight=False)
    if skipped:  # consequences of the failures above: a count, not one line each (results.json lists them)
        console.print(f"[yellow]skipped:[/] {len(skipped)} {'job' if len(skipped) == 1 else 'jobs'} needing a failed "
                      f"job (e.g. {escape(skipped[0].label)}; each is listed in results.json)", highlight=False)
    cells = outcome.failed_cells
    if cells:
        more = f" (and {len(cells) - 1} more: see results.json)" if len(cells) > 1 else ""
        console.print(f"[red]{len(cells)} {'cell' if len(cells) == 1 else 'cells'} failed:[/] {escape(cells[0])}"
                      f"{more}", highlight=False)
    for note in outcome.notes:
        console.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
