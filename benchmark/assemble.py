"""Assembly: result tables computed by metric plugins from the stored job outputs of a plan."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from rbench.estimate import Estimate, mcnemar
from rbench.metric import CellData
from rbench.plan import CLEAN, Plan
from rbench.results import Cell, ResultTable
from rbench.store import Store
from rbench.suite import CellSpec, Table


def _cached(loader: Callable[[str], Any], cache: dict[str, Any]) -> Callable[[str], Any]:
    def load(key: str) -> Any:
        if key not in cache:
            cache[key] = loader(key)
        return cache[key]
    return load


def assemble_table(plan: Plan, table: Table, store: Store, failed: dict[str, str],
                   loaders: dict[str, Callable[[str], Any]]) -> ResultTable:
    """Compute every cell of ``table``. ``failed`` maps job keys that failed (or were skipped) to a message."""
    computed = {(row, column): _cell(plan, spec, row, column, loaders, failed)
                for (row, column), spec in table.cells.items()}
    cells = [cell for cell, _ in computed.values()]
    metrics = table.metrics
    units = {m.label: m.call.obj.unit for m in metrics}
    formats = {m.label: m.call.obj.fmt for m in metrics}
    by_cell = {f"{c.row}|{c.column}": table.cells[(c.row, c.column)].metric.label for c in cells}
    # which plugin and params each metric label stands for, so reporters can tell e.g. calibration cells apart
    calls = {m.label: {"plugin": m.call.name, "params": m.call.params.model_dump(mode="json")} for m in metrics}
    result = ResultTable(table.name, table.title, list(table.rows), list(table.columns), table.row_axis,
                         table.column_axis, units, formats, cells, table.file, metric_of=by_cell, metric_calls=calls,
                         figure=table.figure, attack_calls=_attack_calls(plan, table),
                         paired=_paired(table, {k: est for k, (_, est) in computed.items()}))
    result.samples = {f"{row}|{column}": est.samples for (row, column), (_, est) in computed.items()
                      if est is not None and est.samples is not None}
    return result


def _attack_calls(plan: Plan, table: Table) -> dict[str, dict[str, Any]]:
    """The plugin call behind every attack label the table's cells use."""
    out: dict[str, dict[str, Any]] = {}
    for spec in table.cells.values():
        if spec.attack == CLEAN or spec.attack in out:
            continue
        instance = plan.suite.evaluations[spec.evaluation].attacks[spec.attack]
        out[spec.attack] = {"plugin": instance.call.name, "params": instance.call.params.model_dump(mode="json")}
        if instance.base_label is not None:
            out[spec.attack]["input"] = instance.base_label
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


def _cell(plan: Plan, spec: CellSpec, row: str, column: str, loaders: dict[str, Any], failed: dict[str, str]
          ) -> tuple[Cell, Estimate | None]:
    ev, source, attack, target = spec.evaluation, spec.source, spec.attack, spec.target
    where = {"evaluation": ev, "source": source, "attack": attack, "target": target}
    keys = {"adv": None if attack == CLEAN else plan.attacked[(ev, source, attack)],
            "predictions": plan.evaluated[(ev, source, attack, target)],
            "clean": plan.evaluated[(ev, source, CLEAN, target)],
            "model": plan.trained[target], "training": plan.trained[target]}
    broken = [failed[k] for k in dict.fromkeys(keys.values()) if k in failed]
    data = CellData(source, attack, target, keys, loaders, ev)
    try:
        value = spec.metric.call.obj.compute(data, spec.metric.call.params)
    except Exception as exc:
        broken += [failed[k] for k in data.used if k in failed and failed[k] not in broken]  # other evaluations'
        if broken:  # the metric needed an output that was not computed
            return Cell(row, column, None, [k for k in dict.fromkeys(keys.values()) if k], error=broken[0],
                        **where), None
        return Cell(row, column, None, data.used, error=f"metric {spec.metric.call.name!r}: "
                                                        f"{type(exc).__name__}: {exc}", **where), None
    estimate = value if isinstance(value, Estimate) else None
    number = None if value is None else float(value)
    finite = number is None or (math.isfinite(number) and (estimate is None or all(
        e is None or math.isfinite(e) for e in (estimate.low, estimate.high))))
    if not finite:  # nothing non-finite is scored
        return Cell(row, column, None, data.used, error=f"metric {spec.metric.call.name!r} returned {value}",
                    **where), None
    if estimate is None:
        return Cell(row, column, number, data.used, **where), None
    return Cell(row, column, number, data.used, n=estimate.n, low=estimate.low, high=estimate.high,
                interval=estimate.method, **where), estimate


def assemble(plan: Plan, store: Store, failed: dict[str, str] | None = None) -> list[ResultTable]:
    """Every table of ``plan``'s suite; outputs shared by several cells are loaded once."""
    from rbench.inputs import load_model, load_slice
    from rbench.plan import data_spec

    cache: dict[str, Any] = {}
    loaders = {"adv": _cached(store.load_advset, cache), "predictions": _cached(store.load_predictions, cache),
               "clean": _cached(store.load_predictions, cache),
               "model": _cached(lambda key: load_model(store, key, "cpu"), cache),
               # keyed by the same store key as "model": a cache of its own
               "training": _cached(lambda key: store.load_checkpoint(key)[1].get("stats", {}), {}),
               "inputs": _cached(lambda ev: load_slice(data_spec(plan.suite.evaluations[ev].data,
                                                                 plan.suite.seed))[:2], {})}
    def locate_clean(where: tuple[str, str]) -> str:
        evaluation, model = where
        key = plan.evaluated.get((evaluation, model, CLEAN, model))
        if key is None:
            raise KeyError(f"evaluation {evaluation!r} does not evaluate {model!r} on its clean inputs")
        return key

    def locate_predictions(where: tuple[str, str, str, str]) -> str:
        evaluation, source, attack, target = where
        key = plan.evaluated.get(where)
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

    loaders["locate_clean"] = locate_clean
    loaders["locate_predictions"] = locate_predictions
    return [assemble_table(plan, t, store, failed or {}, loaders) for t in plan.suite.tables.values()]
