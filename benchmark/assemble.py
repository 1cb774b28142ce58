"""Assembly: result tables computed by metric plugins from the stored job outputs of a plan."""

from __future__ import annotations

from typing import Any

from rbench.metric import CellData
from rbench.plan import CLEAN, Plan
from rbench.results import Cell, ResultTable
from rbench.store import Store
from rbench.suite import Table


def _axis_values(plan: Plan, table: Table) -> dict[str, list[str]]:
    ev = plan.suite.evaluations[table.evaluation]
    attacks = ([CLEAN] if table.clean else []) + list(ev.attacks)
    targets = list(dict.fromkeys(t for s in ev.sources for t in ev.targets_of(s)))
    return {
        "source": list(ev.sources),
        "target": targets,
        "model": [s for s in ev.sources if s in ev.targets_of(s)],
        "attack": attacks,
        "metric": [m.label for m in table.metrics],
    }


def assemble_table(plan: Plan, table: Table, store: Store, failed: dict[str, str]) -> ResultTable:
    """Compute every cell of ``table``. ``failed`` maps job keys that failed to their error message."""
    values = _axis_values(plan, table)
    metrics = {m.label: m for m in table.metrics}
    cache: dict[str, Any] = {}

    def cached(loader):
        def load(key: str):
            if key not in cache:
                cache[key] = loader(key)
            return cache[key]
        return load

    loaders = {"adv": cached(store.load_advset), "predictions": cached(store.load_predictions),
               "clean": cached(store.load_predictions)}
    cells = []
    for row in values[table.rows]:
        for column in values[table.columns]:
            coords = dict(table.where, **{table.rows: row, table.columns: column})
            if "model" in coords:
                coords["source"] = coords["target"] = coords["model"]
            coords.setdefault("target", coords["source"])
            metric = metrics[coords["metric"]] if "metric" in coords else table.metrics[0]
            cells.append(_cell(plan, table, coords, row, column, metric, loaders, failed))
    units = {m.label: m.call.obj.unit for m in table.metrics}
    formats = {m.label: m.call.obj.fmt for m in table.metrics}
    if len(table.metrics) == 1:
        formats["*"] = table.metrics[0].call.obj.fmt
    return ResultTable(table.name, table.title, values[table.rows], values[table.columns], table.rows,
                       table.columns, units, formats, cells, table.file)


def _cell(plan: Plan, table: Table, coords: dict[str, str], row: str, column: str, metric: Any,
          loaders: dict[str, Any], failed: dict[str, str]) -> Cell:
    ev, source, attack, target = table.evaluation, coords["source"], coords["attack"], coords["target"]
    evaluated = plan.evaluated.get((ev, source, attack, target))
    if evaluated is None:
        return Cell(row, column, None, error=f"{target} is not evaluated on {attack}@{source} in {ev!r}")
    keys = {"adv": None if attack == CLEAN else plan.attacked[(ev, source, attack)],
            "predictions": evaluated, "clean": plan.evaluated[(ev, source, CLEAN, target)]}
    broken = [failed[k] for k in keys.values() if k in failed]
    if broken:
        return Cell(row, column, None, list(filter(None, keys.values())), error=broken[0])
    data = CellData(source, attack, target, keys, loaders)
    value = metric.call.obj.compute(data, metric.call.params)
    return Cell(row, column, value, data.used)


def assemble(plan: Plan, store: Store, failed: dict[str, str] | None = None) -> list[ResultTable]:
    return [assemble_table(plan, t, store, failed or {}) for t in plan.suite.tables.values()]
