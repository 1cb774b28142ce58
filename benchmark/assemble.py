"""Assembly: result tables computed by metric plugins from the stored job outputs of a plan."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from rbench.artifacts import AdvSet, Predictions
from rbench.attack import resolved_params
from rbench.estimate import Estimate, distinct_samples, interval_holds, mcnemar, mean
from rbench.inputs import load_model, load_slice
from rbench.metric import CellData, CellKeys, CellOutputs, Reference, declared_references, metric_number
from rbench.plan import CLEAN, Plan, data_spec
from rbench.results import BOUNDS, Cell, ResultTable, cell_problem, outcomes_digest, samples_digest, unit_problem
from rbench.store import Store
from rbench.suite import CellSpec, Table
from rbench.suite_types import AttackCall, DataRef, Metric, PluginCall


def assemble_table(plan: Plan, table: Table, store: Store, failed: dict[str, str],
                   outputs: CellOutputs) -> ResultTable:
    """Compute every cell of ``table``. ``failed`` maps job keys that failed (or were skipped) to a message."""
    computed = {(row, column): _cell(plan, spec, row, column, outputs, failed)
                for (row, column), spec in table.cells.items()}
    cells = [cell for cell, _ in computed.values()]
    metrics = _metric_keys(table)
    units = {key: m.call.obj.unit for key, m in metrics.items()}
    formats = {key: m.call.obj.fmt for key, m in metrics.items()}
    for c in cells:
        metric = table.cells[(c.row, c.column)].metric
        c.metric, c.call = metric.label, next(key for key, m in metrics.items() if m == metric)
    cells += mean_cells(table, {(c.row, c.column): c for c in cells}, units,
                        {k: est for k, (_, est) in computed.items() if est is not None})
    rows, columns = table.shape()
    # which plugin and params each cell's metric stands for, so reporters can tell e.g. calibration cells apart
    calls = {key: _call(m.call) for key, m in metrics.items()}
    declared = _declared(table)
    result = ResultTable(table.name, table.title, list(rows), list(columns), table.row_axis,
                         table.column_axis, units, formats, cells, table.file, metric_calls=calls,
                         figure=table.figure, attack_calls=_attack_calls(plan, table, declared),
                         model_calls=_model_calls(plan, table, declared),
                         data_calls={ev: data_record(plan, ev) for ev in dict.fromkeys(
                             spec.evaluation for spec in table.cells.values())},
                         paired=_paired(table, {k: est for k, (_, est) in computed.items()}),
                         mean_row=table.mean_row, mean_column=table.mean_column)
    result.samples = {(row, column): est.samples for (row, column), (_, est) in computed.items()
                      if est is not None and est.samples is not None}
    for (row, column), values in result.samples.items():
        computed[(row, column)][0].samples_sha256 = samples_digest(values)
    for (row, column), (cell, est) in computed.items():
        kept = est.outcomes if est is not None and est.method == "wilson" else None
        if kept is not None and distinct_samples(kept[0]):  # a generated set's: nothing to pair runs on
            result.outcomes[(row, column)] = kept
            cell.outcomes_sha256 = outcomes_digest(*kept)
    return result


def mean_cells(table: Table, cells: dict[tuple[str, str], Cell], units: dict[str, str],
               estimates: dict[tuple[str, str], Estimate] | None = None) -> list[Cell]:
    """The cells of ``table``'s mean row (or column): along each column (row), the mean of the other rows' (columns')
    values, with a Student t interval over them (:func:`rbench.estimate.mean`, clipped to where the averaged
    quantity lies: its ``estimates``' bounds, else its interval method's or unit's) and n = how many were
    averaged. Such an interval is about the spread between the lines (models alike but for their seeds, say), not
    about the images: every line is measured on the same ones. A line without a value fails the mean's cell, naming
    it (a mean over the others would be another mean under the same label).
    The cell keeps the coordinates (evaluation, source, attack, target) its lines share, and every line's jobs."""
    label, lines, others, by_rows = ((table.mean_row, table.rows, table.columns, True) if table.mean_row else
                                     (table.mean_column, table.columns, table.rows, False))
    if label is None:
        return []
    estimates = estimates or {}
    out = []
    for other in others:
        averaged = [cells[(line, other) if by_rows else (other, line)] for line in lines]
        first = averaged[0]
        shared: dict[str, Any] = {name: getattr(first, name) if all(getattr(c, name) == getattr(first, name)
                                                                 for c in averaged) else ""
                                  for name in ("evaluation", "source", "attack", "target")}
        jobs = list(dict.fromkeys(k for c in averaged for k in c.jobs))
        row, column = (label, other) if by_rows else (other, label)
        missing = next((c for c in averaged if c.value is None), None)
        if missing is not None:
            why = f": {missing.error}" if missing.error else ""
            out.append(Cell(row, column, None, jobs, error=f"the mean over the {'rows' if by_rows else 'columns'} "
                            f"lacks {missing.row if by_rows else missing.column!r}{why}", metric=first.metric,
                            call=first.call, **shared))
            continue
        known = [e.bounds for line in lines
                 if (e := estimates.get((line, other) if by_rows else (other, line))) and e.bounds]
        bounds = known[0] if known else BOUNDS.get(first.interval, (0.0, 100.0) if units.get(first.call) == "%"
                                                   else (-math.inf, math.inf))
        estimate = mean(np.array([c.value for c in averaged], dtype=np.float64), bounds=bounds)
        assert estimate is not None  # two or more values (checked with the suite)
        out.append(Cell(row, column, estimate.value, jobs, n=estimate.n, low=estimate.low, high=estimate.high,
                        interval=f"t over {'rows' if by_rows else 'columns'}" if estimate.method else "",
                        metric=first.metric, call=first.call, **shared))
    return out


def _metric_keys(table: Table) -> dict[str, Metric]:
    """The key each metric call of ``table`` is recorded under (:attr:`rbench.results.Cell.call`) -> the call: its
    label, or, where calls with other params share a label (``robust accuracy`` of the worst of FGSM and PGD at
    three budgets), the label and its place among them, ``robust accuracy [2]``."""
    by_label: dict[str, list[Metric]] = {}
    for cell in table.cells.values():
        same = by_label.setdefault(cell.metric.label, [])
        if cell.metric not in same:  # by value (a Metric holds unhashable params)
            same.append(cell.metric)
    keys: dict[str, Metric] = {}
    for label, same in by_label.items():
        if len(same) == 1:
            keys[label] = same[0]
            continue
        numbered = (f"{label} [{i}]" for i in itertools.count(1))
        for metric, key in zip(same, (k for k in numbered if k not in by_label), strict=False):  # a label may read so
            keys[key] = metric
    return keys


def _attack_calls(plan: Plan, table: Table, declared: dict[int, list[Reference]]) -> dict[str, dict[str, Any]]:
    """The plugin call behind every attack label the table's cells use, and those their metrics declare they read
    (:meth:`rbench.metric.Metric.references`, ``declared`` by :func:`_declared`: ``worst_case``'s attacks, on cells
    whose own attack is clean)."""
    out: dict[str, dict[str, Any]] = {}
    for spec in table.cells.values():
        read = [(spec.evaluation, spec.attack)] + [(ref.evaluation or spec.evaluation, ref.name)
                                                    for ref in declared[id(spec.metric.call)]
                                                    if ref.kind == "attack" and ref.name]
        for evaluation, label in read:
            if label != CLEAN and label not in out:
                out[label] = _attack_call(plan.suite.evaluations[evaluation].attacks[label])
    return out


def _declared(table: Table) -> dict[int, list[Reference]]:
    """id of each metric call of ``table`` -> the references it declares (cells share their metric calls)."""
    out: dict[int, list[Reference]] = {}
    for spec in table.cells.values():
        call = spec.metric.call
        if id(call) not in out:
            out[id(call)] = declared_references(call.obj, call.params)
    return out


def _model_calls(plan: Plan, table: Table, declared: dict[int, list[Reference]]) -> dict[str, dict[str, Any]]:
    """How every model the table's cells read (sources, targets and the models their metrics declare they read)
    is made, and the models those are made from (a defended model's base or members, an ensemble's members, a
    fine-tuned model's ``init``): a plugin with its params, trained by a trainer on a data slice; or a chain of
    defenses (each plugin with its params, and its trainer where it is trained) in front of a base model or
    members."""
    suite = plan.suite
    out: dict[str, dict[str, Any]] = {}
    todo = list(dict.fromkeys(
        name for spec in table.cells.values()
        for name in (spec.source, spec.target,
                     *(ref.name for ref in declared[id(spec.metric.call)] if ref.kind == "model" and ref.name))))
    while todo:
        name = todo.pop(0)
        if name in out or name not in suite.models:
            continue
        model = suite.models[name]
        made: dict[str, Any] = {}
        if model.defended is not None:
            made["defenses"] = [{"name": d.name, **_call(d.call), **_training(d.trainer, d.data, d.seed)}
                                 for d in suite.chain_of(name)]
            if model.defended.base is not None:
                made["base"] = model.defended.base
        else:
            made.update(_call(model.call) if model.call is not None else {})
            made.update(_training(model.trainer, model.data, model.seed))
            if model.init is not None:
                made["init"] = model.init
        if model.members:
            made["members"] = list(model.members)
        out[name] = made
        todo += [m for m in (made.get("base"), model.init, *model.members) if m is not None]
    return out


def _training(trainer: PluginCall | None, data: DataRef | None, seed: int | None) -> dict[str, Any]:
    """``{"trainer": call, "data": {...}, "seed": n}`` of a trained model or defense: the data slice as it is keyed
    (the dataset plugin and its params, split, n, and ``parts``/``part`` where the split is cut in parts), the
    seed where it sets its own; what is absent left out. Two models differing in any of these differ in their
    lines (Szegedy's M1 and M2 train on two halves of the split)."""
    out: dict[str, Any] = {} if trainer is None else {"trainer": _call(trainer)}
    if data is not None:
        out["data"] = {"dataset": data.dataset, "split": data.split, "n": data.n,
                       **({"params": data.call.params.model_dump(mode="json")} if data.call.params.model_fields_set
                          else {}),
                       **({"parts": list(data.parts), "part": data.part} if data.parts else {})}
    if seed is not None:
        out["seed"] = seed
    return out


def data_record(plan: Plan, evaluation: str) -> dict[str, Any]:
    """The images ``evaluation``'s cells are computed on, as its slice is keyed: the dataset plugin with all its
    params, version and distribution (the suite's name for it, which another suite may give another plugin, only
    beside them), split, ``n``
    (None: the whole split), subset seed and, where the dataset gives one, the split's content digest, so that two
    runs' per-sample outcomes are paired only on the same images (``rbench compare --run``)."""
    ref = plan.suite.evaluations[evaluation].data
    keyed = data_spec(ref, plan.suite.seed)
    return {"dataset": ref.dataset, "plugin": ref.call.name, "params": ref.call.params.model_dump(mode="json"),
            "version": ref.call.version, "distribution": ref.call.distribution,
            "split": keyed.split, "n": keyed.n, "subset_seed": keyed.subset_seed,
            **({"content": keyed.content} if keyed.content is not None else {})}


def _call(call: PluginCall) -> dict[str, Any]:
    """A plugin call as reports show it: ``{"plugin": name, "params": validated params as JSON}``."""
    return {"plugin": call.name, "params": call.params.model_dump(mode="json")}


def _attack_call(instance: AttackCall) -> dict[str, Any]:
    """One attack label's plugin, its params as keyed, what it resolves of them and the label it transforms."""
    out = _call(instance.call)
    resolved = resolved_params(instance.call.obj, instance.call.params)
    if resolved:
        out["resolved"] = resolved
    if instance.base_label is not None:
        out["input"] = instance.base_label
    return out


def _paired(table: Table, estimates: dict[tuple[str, str], Estimate | None]) -> list[dict[str, Any]]:
    """McNemar's test for each pair of rows (columns) the table names, in every column (row) where both cells
    kept their per-sample outcomes."""
    out = []
    for a, b in table.paired:
        by_rows = a in table.rows and b in table.rows
        for line in table.columns if by_rows else table.rows:
            ka, kb = ((a, line), (b, line)) if by_rows else ((line, a), (line, b))
            ea, eb = estimates.get(ka), estimates.get(kb)
            test = None if ea is None or eb is None or ea.outcomes is None or eb.outcomes is None \
                else mcnemar(ea.outcomes, eb.outcomes)
            if test is not None:
                out.append({"a": a, "b": b, "along": line, "axis": "rows" if by_rows else "columns",
                            "metric": table.cells[ka].metric.label, **asdict(test)})
    return out


def _cell(plan: Plan, spec: CellSpec, row: str, column: str, outputs: CellOutputs, failed: dict[str, str]
          ) -> tuple[Cell, Estimate | None]:
    ev, source, attack, target = spec.evaluation, spec.source, spec.attack, spec.target
    where: dict[str, Any] = {"evaluation": ev, "source": source, "attack": attack, "target": target}
    keys = CellKeys(adv=None if attack == CLEAN else plan.attacked[(ev, source, attack)],
                    predictions=plan.evaluated[(ev, source, attack, target)],
                    clean=plan.evaluated[(ev, source, CLEAN, target)], model=plan.trained[target])
    own = [k for k in (keys.adv, keys.predictions, keys.clean, keys.model) if k]
    broken = [failed[k] for k in dict.fromkeys(own) if k in failed]
    data = CellData(source, attack, target, keys, outputs, ev, crafted_on=plan.crafted_on.get((ev, source), source))
    try:
        value = spec.metric.call.obj.compute(data, spec.metric.call.params)
    except Exception as exc:
        broken += [failed[k] for k in data.used if k in failed and failed[k] not in broken]  # other evaluations'
        if broken:  # the metric needed an output that was not computed
            return Cell(row, column, None, list(dict.fromkeys(own)), error=broken[0],
                        **where), None
        return Cell(row, column, None, data.used, error=f"metric {spec.metric.call.name!r}: "
                                                        f"{type(exc).__name__}: {exc}", **where), None
    read = [failed[k] for k in dict.fromkeys(data.used) if k in failed]
    if read:  # it read an output whose job failed in this run (stored anyway, by an executor or another run)
        return Cell(row, column, None, data.used, error=read[0], **where), None
    estimate = value if isinstance(value, Estimate) else None
    number = float(estimate) if estimate is not None else metric_number(value)
    if value is not None and number is None:
        text = repr(value)
        text = text if len(text) <= 60 else f"{text[:60]}..."
        return Cell(row, column, None, data.used, error=f"metric {spec.metric.call.name!r} returned "
                    f"{type(value).__name__} {text}: a metric returns a number, an rbench.Estimate or None",
                    **where), None
    finite = number is None or (math.isfinite(number) and (estimate is None or all(
        e is None or math.isfinite(e) for e in (estimate.low, estimate.high))))
    if not finite:  # nothing non-finite is scored
        return Cell(row, column, None, data.used, error=f"metric {spec.metric.call.name!r} returned {value}",
                    **where), None
    if estimate is None:
        problem = None if number is None else unit_problem(number, spec.metric.call.obj.unit)
        return (Cell(row, column, number, data.used, **where) if problem is None else Cell(
            row, column, None, data.used, error=f"metric {spec.metric.call.name!r} returned {number:g}: {problem}",
            **where)), None
    if not interval_holds(estimate.low, number, estimate.high):
        return Cell(row, column, None, data.used, error=f"metric {spec.metric.call.name!r} returned {number} with "
                    f"an interval [{estimate.low}, {estimate.high}] that does not hold it", **where), None
    cell = Cell(row, column, number, data.used, n=estimate.n, low=estimate.low, high=estimate.high,
                interval=estimate.method, **where)
    kept = None if estimate.samples is None else np.asarray(estimate.samples).size
    problem = cell_problem(cell)  # what reading results.json back checks: found here, named, not on every read
    if problem is None and kept is not None and estimate.n != kept:
        problem = f"its n = {estimate.n} but it kept {kept} samples"
    if problem is not None:
        return Cell(row, column, None, data.used, error=f"metric {spec.metric.call.name!r} returned an estimate "
                    f"rbench cannot stand behind: {problem}", **where), None
    return cell, estimate


class StoreOutputs:
    """The :class:`rbench.metric.CellOutputs` of a run: outputs read from ``store`` once and shared by every cell,
    located through ``plan``'s index."""

    def __init__(self, plan: Plan, store: Store):
        self.plan, self.store = plan, store
        self._loaded: dict[tuple[str, str], Any] = {}

    def _once(self, what: str, key: str, load: Callable[[str], Any]) -> Any:
        if (what, key) not in self._loaded:
            self._loaded[(what, key)] = load(key)
        return self._loaded[(what, key)]

    def advset(self, key: str) -> AdvSet:
        return self._once("entry", key, self.store.load_advset)

    def predictions(self, key: str) -> Predictions:
        return self._once("entry", key, self.store.load_predictions)

    def model(self, key: str) -> torch.nn.Module:
        return self._once("entry", key, lambda k: load_model(self.store, k, "cpu"))

    def training(self, key: str) -> dict:
        return self._once("training", key, lambda k: self.store.load_checkpoint(k)[1].get("stats", {}))

    def inputs(self, evaluation: str) -> tuple[torch.Tensor, torch.Tensor]:
        suite = self.plan.suite
        return self._once("inputs", evaluation,
                          lambda ev: load_slice(data_spec(suite.evaluations[ev].data, suite.seed))[:2])

    def locate_clean(self, evaluation: str, model: str) -> str:
        key = self.plan.evaluated.get((evaluation, model, CLEAN, model))
        if key is None:
            raise KeyError(f"evaluation {evaluation!r} does not evaluate {model!r} on its clean inputs")
        return key

    def locate_predictions(self, evaluation: str, source: str, attack: str, target: str) -> str:
        plan = self.plan
        key = plan.evaluated.get((evaluation, source, attack, target))
        if key is None and attack == CLEAN:  # clean outputs do not depend on the source
            key = next((k for (e, _, a, t), k in plan.evaluated.items()
                        if (e, a, t) == (evaluation, CLEAN, target)), None)
        if key is None:
            if evaluation not in plan.suite.evaluations:
                raise KeyError(f"there is no evaluation {evaluation!r}")
            need = f"evaluate {target!r} on its clean inputs" if attack == CLEAN else (
                f"list {source!r} in its sources, {target!r} among its targets and {attack!r} in its attacks")
            raise KeyError(f"evaluation {evaluation!r} has no cell (source {source!r}, attack {attack!r}, target "
                           f"{target!r}): it must {need}")
        return key


def assemble(plan: Plan, store: Store, failed: dict[str, str] | None = None) -> list[ResultTable]:
    """Every table of ``plan``'s suite; outputs shared by several cells are loaded once."""
    outputs = StoreOutputs(plan, store)
    return [assemble_table(plan, t, store, failed or {}, outputs) for t in plan.suite.tables.values()]
