"""Assembly: result tables computed by metric plugins from the stored job outputs of a plan."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

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
    cells = [_cell(plan, spec, row, column, loaders, failed) for (row, column), spec in table.cells.items()]
    metrics = table.metrics
    units = {m.label: m.call.obj.unit for m in metrics}
    formats = {m.label: m.call.obj.fmt for m in metrics}
    by_cell = {f"{c.row}|{c.column}": table.cells[(c.row, c.column)].metric.label for c in cells}
    # which plugin and params each metric label stands for, so reporters can tell e.g. calibration cells apart
    calls = {m.label: {"plugin": m.call.name, "params": m.call.params.model_dump(mode="json")} for m in metrics}
    return ResultTable(table.name, table.title, list(table.rows), list(table.columns), table.row_axis,
                       table.column_axis, units, formats, cells, table.file, metric_of=by_cell, metric_calls=calls,
                       figure=table.figure)


def _cell(plan: Plan, spec: CellSpec, row: str, column: str, loaders: dict[str, Any], failed: dict[str, str]
          ) -> Cell:
    ev, source, attack, target = spec.evaluation, spec.source, spec.attack, spec.target
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
            return Cell(row, column, None, [k for k in dict.fromkeys(keys.values()) if k], error=broken[0])
        return Cell(row, column, None, data.used, error=f"metric {spec.metric.call.name!r}: "
                                                       f"{type(exc).__name__}: {exc}")
    if value is not None and not math.isfinite(value):  # nothing non-finite is scored
        return Cell(row, column, None, data.used, error=f"metric {spec.metric.call.name!r} returned {value}")
    return Cell(row, column, value, data.used)


def assemble(plan: Plan, store: Store, failed: dict[str, str] | None = None) -> list[ResultTable]:
    """Every table of ``plan``'s suite; outputs shared by several cells are loaded once."""
    from rbench.jobs import load_model, load_slice
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
