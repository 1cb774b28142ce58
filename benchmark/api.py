"""The Python API: :func:`evaluate` an in-memory model (a notebook's), and the :class:`Results` it returns.

    import rbench
    results = rbench.evaluate(model, dataset="mnist", n=1000)   # FGSM, PGD (Linf 0.1, 0.3), noise, clean
    print(results)                 # the leaderboard; results.to_markdown(), results.records()

:func:`run_generated` is what ``rbench eval`` and :func:`evaluate` share: write a generated suite into the run
folder (so ``rbench run RUN_DIR/suite.toml`` repeats the run), check it, run it.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from rbench.devices import resolve_devices
from rbench.errors import RbenchError
from rbench.executors import configure
from rbench.flatten import write_suite
from rbench.manager import get_registry
from rbench.own_model import (
    DEFAULT_N,
    attack_entries,
    checkpoint_entry,
    dataset_plugin,
    default_attacks,
    standalone_suite,
)
from rbench.precision import check_precision
from rbench.report.terminal import output_console
from rbench.results import RESULTS_FILE, RunResults
from rbench.rundir import check_run_dir, prepare_run_dir, remove_folders
from rbench.runner import RunOutcome, default_run_dir, run_suite
from rbench.store import Store
from rbench.suite import load_suite

SUITE_FILE = "suite.toml"


def run_generated(doc: dict[str, Any], run_dir: Path | None, *, header: str, store: Store, device: str | None,
                  workers: int | None, job_timeout: float | None, console: Console, quiet: bool,
                  executor: str = "local", executor_options: dict | None = None) -> RunOutcome:
    """Write ``doc`` to ``RUN_DIR/suite.toml`` (``header`` as its comment), check it (a problem is one line and
    leaves no run folder behind), then run it into that folder (with ``executor`` and its command-line
    ``executor_options``, as :func:`rbench.runner.run_suite`)."""
    resolve_devices(device, workers)  # bad options fail before the run folder is touched
    configure(executor, executor_options)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(doc["suite"]["name"])
    check_run_dir(run_dir, store.root)
    store.check_layout()  # run_suite makes the store, once the generated suite and its data have passed
    created = prepare_run_dir(run_dir, "--run-dir")
    path = run_dir / SUITE_FILE
    draft = run_dir / f".{SUITE_FILE}.{uuid.uuid4().hex[:12]}"  # a suite.toml already there stays until this passes
    try:
        write_suite(doc, draft, header)
        try:
            load_suite(draft)
        except RbenchError as exc:  # name what the user gave, not a draft that is about to go (as given or absolute)
            message = str(exc)
            for spelling in (str(draft.absolute()), str(draft.resolve()), str(draft)):
                message = message.replace(spelling, "the suite rbench eval generates")
            raise RbenchError(message) from None
        os.replace(draft, path)
        return run_suite(path, profile=None, store=store, run_dir=run_dir, device=device, workers=workers,
                         executor=executor, console=console, quiet=quiet, job_timeout=job_timeout,
                         executor_options=executor_options, own=(SUITE_FILE,))
    except RbenchError:  # refused before any work (missing data, ...): no run folder was made
        draft.unlink(missing_ok=True)
        if created and not (run_dir / RESULTS_FILE).exists():
            path.unlink(missing_ok=True)
            remove_folders(created)
        raise
    except BaseException:
        draft.unlink(missing_ok=True)
        raise


@dataclass
class Results:
    """What :func:`evaluate` returns: the run's tables, with each cell's provenance.

    ``str(results)`` (or ``print``) is the terminal table; :meth:`to_markdown` markdown (notebooks render it:
    ``_repr_markdown_``); :meth:`records` one dict per cell; :meth:`value` one cell's number."""

    run: RunResults
    #: the run folder (None: a temporary one, removed after the run)
    run_dir: Path | None
    #: messages of the jobs that failed (their cells read "failed")
    errors: list[str]

    @property
    def tables(self) -> list[Any]:
        return self.run.tables

    def lineage(self, keys: Iterable[str]) -> list[str]:
        """``keys`` and every job they depend on, directly or not (each once, inputs after their users)."""
        seen: list[str] = []
        todo = list(keys)
        while todo:
            key = todo.pop(0)
            if key not in seen:
                seen.append(key)
                todo.extend(self.run.jobs.get(key, {}).get("deps", []))
        return seen

    def records(self) -> list[dict[str, Any]]:
        """One dict per cell: table, row, column, metric, value, unit, n and its 95% interval (``low``, ``high``,
        ``interval``: the method; None / "" where the metric gives none), error, and its provenance -- the jobs
        behind it (the ones it was computed from and everything they depend on: the model's training, the attack),
        each with its store key, label, status, seconds and device; the store; the precision; the package
        versions."""
        out = []
        packages = self.run.provenance.get("packages", {})
        for t in self.run.tables:
            for c in t.cells:
                jobs = [{"key": k, **{f: self.run.jobs.get(k, {}).get(f) for f in ("label", "status", "seconds",
                                                                                     "device")}}
                        for k in self.lineage(c.jobs)]
                out.append({"table": t.name, "row": c.row, "column": c.column, "metric": t.metric(c),
                            "value": c.value, "unit": t.unit(c), "n": c.n, "low": c.low, "high": c.high,
                            "interval": c.interval, "error": c.error,
                            "provenance": {"jobs": jobs, "store": self.run.provenance.get("store"),
                                           "precision": self.run.provenance.get("precision"),
                                           "packages": packages, "suite": self.run.suite}})
        return out

    def value(self, row: str, column: str, table: str | None = None) -> float | None:
        """The value of cell (``row``, ``column``) of ``table`` (default: the first table)."""
        t = next((t for t in self.run.tables if table in (None, t.name)), None)
        if t is None:
            raise KeyError(f"no table {table!r}; tables: {', '.join(t.name for t in self.run.tables)}")
        return t.cell(row, column).value

    def to_markdown(self) -> str:
        return get_registry().get("reporter", "md").obj.render(self.run)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __str__(self) -> str:
        from rbench.report.terminal import print_tables

        console = Console(file=io.StringIO(), width=120, force_terminal=False, color_system=None)
        print_tables(self.run, console)
        for error in self.errors:
            console.print(f"failed: {error}", highlight=False, markup=False)
        return console.file.getvalue()  # type: ignore[attr-defined]


def evaluate(model: nn.Module, dataset: str = "mnist", attacks: Iterable[str | tuple[str, dict[str, Any]]] | None
             = None, n: int = DEFAULT_N, store: str | Path | Store | None = None, device: str | None = None, *,
             name: str | None = None, run_dir: str | Path | None = None, quiet: bool = True,
             precision: str = "fp32") -> Results:
    """Evaluate the in-memory ``model`` (a ``torch.nn.Module`` mapping [0, 1] inputs of ``dataset``'s shape to
    logits) on ``n`` test images of ``dataset``, clean and under ``attacks`` (default: FGSM and PGD Linf at 0.1
    and 0.3 and Gaussian noise; else strings as ``rbench eval --attack`` takes them, ``"pgd:eps=0.3,steps=100"``,
    or ``(plugin, params)`` pairs).

    The model is evaluated as it is (copied now; training it further afterwards makes a new model). Results are
    cached in ``store`` (default: ``$RBENCH_STORE`` or the platform cache) under keys made of the class's module
    source and the state_dict's bytes, so the same model, evaluated again in another session, is read back, and a
    changed one is recomputed. Jobs run in this process (``device``: cpu, cuda, cuda:N; default: a GPU if any).
    ``run_dir``: keep the run folder there (default: a temporary folder, removed afterwards). ``precision``: the
    arithmetic of the attacks and evaluations, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (:mod:`rbench.precision`).
    Raises RbenchError (one line) for bad arguments before any work."""
    if not isinstance(model, nn.Module):
        raise RbenchError(f"evaluate: model must be a torch.nn.Module (got {type(model).__name__})")
    precision = check_precision(precision, "evaluate: precision")
    checkpoint = get_registry().get("model", "checkpoint").obj
    live = checkpoint.register_live(model)
    label = name or type(model).__name__
    data = dataset_plugin(dataset)
    entries = default_attacks(tuple(data.input_shape)) if attacks is None else attack_entries(attacks)
    entry = checkpoint_entry({"live": live}, dataset, Path.cwd())
    doc = standalone_suite(label, entry, dataset, n, entries)
    if precision != "fp32":
        doc["suite"]["precision"] = precision
    header = ("Generated by rbench.evaluate for an in-memory model (checkpoint param 'live'): it runs again only\n"
              "in a process that holds that model, through rbench.evaluate.")
    store_obj = store if isinstance(store, Store) else Store(Path(store) if store is not None else None)
    temporary = run_dir is None
    folder = Path(tempfile.mkdtemp(prefix="rbench-evaluate-")) / "run" if temporary else Path(run_dir)  # type: ignore[arg-type]
    console = output_console(quiet=quiet, stderr=True)
    try:
        outcome = run_generated(doc, folder, header=header, store=store_obj, device=device, workers=1,
                                job_timeout=None, console=console, quiet=quiet)
    finally:
        if temporary:
            shutil.rmtree(folder.parent, ignore_errors=True)
    errors = [str(r.error) for r in outcome.failed]
    return Results(outcome.results, None if temporary else folder, errors)
