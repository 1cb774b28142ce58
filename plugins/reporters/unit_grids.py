"""Unit inspection grids (Szegedy et al. 2013, figures 1-2): the ``unit_grids`` file reporter.

For every result table with ``unit_purity`` cells, one PNG per basis in the run folder,
``units_<table>_<basis>.png`` (``natural``: single units; ``random``: random directions). Its cells are grouped by
what decides their images (row, stored model and data slice, layer, k, number of directions, seed: e.g. a row's
mean and spread columns form one group); each group contributes :data:`SHOWN` grid rows, the first directions of
the metric's seeded order (units of a seeded permutation, or random directions as drawn), each showing the
direction's top-k test images left to right (highest activation first), captioned with their true labels, and
labelled with the table row, the layer, the direction and its label purity. The images are recomputed with the
metric's own code (:func:`rbench.plugins.metrics.unit_inspection.inspect_units`) from the stored model and the
stored predictions' data slice that each cell names in its provenance (``Cell.jobs``), so they are exactly the
ones scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rbench.errors import RbenchError
from rbench.inputs import load_model, load_slice
from rbench.plugins.metrics.unit_inspection import UnitPurity, inspect_units
from rbench.report.images import save_image_grid
from rbench.report.reporters import Reporter, safe_name
from rbench.results import Cell, ResultTable, RunResults
from rbench.specs import DataSlice

if TYPE_CHECKING:
    from rbench.store import Store

#: directions drawn per group of cells. Drawing costs about 30 ms per image on a 2-core CPU (matplotlib axes), so
#: a suite's figures stay within seconds: 3 directions x 10 images x (2 models x 2 layers) x 2 bases = 240 images.
SHOWN = 3
#: the params that decide which images a cell scores (all but ``statistic``)
GROUP_BY = ("layer", "basis", "k", "directions", "seed")


def figure_name(table: str, basis: str) -> str:
    """The file name of a table's grid for ``basis`` (characters other than letters, digits, ``_.-`` become
    ``_``)."""
    return safe_name(f"units_{table}_{basis}") + ".png"


def _stored(table: ResultTable, cell: Cell, store: Store) -> tuple[str, str]:
    """(model checkpoint key, clean predictions key) among the cell's provenance."""
    found: dict[str, str] = {}
    for key in cell.jobs:
        if not store.has(key):
            raise RbenchError(f"table {table.name!r}: the stored output {key} of cell ({cell.row}, {cell.column}) "
                              f"is not in the store {store.root}; pass --store, or run the suite again")
        found.setdefault(store.entry(key).kind, key)
    if "checkpoint" not in found or "predictions" not in found:
        raise RbenchError(f"table {table.name!r}: cell ({cell.row}, {cell.column}) names no stored model and "
                          "clean predictions, so its images cannot be found")
    return found["checkpoint"], found["predictions"]


def groups(table: ResultTable) -> dict[str, list[Cell]]:
    """Per basis: one valued ``unit_purity`` cell per (row, provenance, params but the statistic), in row, then
    column order."""
    seen: dict[tuple, Cell] = {}
    for cell in table.cells:
        call = table.metric_call(cell)
        if cell.value is None or call.get("plugin") != UnitPurity.name or table.is_mean(cell):  # a mean: no units
            continue
        params = call.get("params", {})
        seen.setdefault((cell.row, tuple(cell.jobs), *(params.get(p) for p in GROUP_BY)), cell)
    out: dict[str, list[Cell]] = {}
    for cell in seen.values():
        out.setdefault(table.metric_call(cell)["params"]["basis"], []).append(cell)
    return out


def grid_rows(table: ResultTable, cell: Cell, store: Store, cache: dict[str, Any]
              ) -> tuple[list[list[np.ndarray]], list[list[str]], list[str]]:
    """(images, captions, row labels) of one group's first :data:`SHOWN` directions, recomputed from the store;
    ``cache`` keeps the models and data slices loaded for earlier groups."""
    params = UnitPurity.Params.model_validate(table.metric_call(cell)["params"])
    model_key, predictions_key = _stored(table, cell, store)
    if predictions_key not in cache:
        cache[predictions_key] = load_slice(DataSlice.from_dict(
            store.load_meta(predictions_key)["spec"]["input"]["clean"]))
    if model_key not in cache:
        cache[model_key] = load_model(store, model_key, "cpu")
    x, y, _ = cache[predictions_key]
    found = inspect_units(cache[model_key], x, y, params.layer, params.basis, params.k, params.directions,
                          params.seed)
    shown = range(min(SHOWN, len(found.names)))
    images = [[x[i].numpy() for i in found.top[d].tolist()] for d in shown]
    captions = [[str(int(y[i])) for i in found.top[d].tolist()] for d in shown]
    labels = [f"{cell.row} L{params.layer}\n{found.names[d]}\n{100 * float(found.purity[d]):.0f}% pure"
              for d in shown]
    return images, captions, labels


def draw(table: ResultTable, basis: str, cells: list[Cell], store: Store, run_dir: Path, cache: dict[str, Any]
         ) -> Path:
    """Draw the grid of ``table``'s ``basis`` cell groups; returns the PNG's path."""
    images: list[list[np.ndarray]] = []
    captions: list[list[str]] = []
    labels: list[str] = []
    for cell in cells:
        more = grid_rows(table, cell, store, cache)
        images, captions, labels = images + more[0], captions + more[1], labels + more[2]
    what = "single units (natural basis)" if basis == "natural" else "random directions"
    title = (f"{table.name}: {what} of phi(x): the top test images along {SHOWN} of them per table row and hidden "
             "layer (L1: the first), highest activation first; row labels: label purity, captions: true labels")
    return save_image_grid(Path(run_dir) / figure_name(table.name, basis), images, title=title, row_labels=labels,
                           captions=captions)


class UnitGrids(Reporter):
    """Top-k image grids of every table's ``unit_purity`` cells, one per basis (``units_<table>_<basis>.png``)."""

    name = "unit_grids"
    suffix = None

    def figures_of(self, table: ResultTable) -> list[str]:
        """The files :meth:`write` draws of ``table`` (tables.md links them)."""
        return [figure_name(table.name, basis) for basis in groups(table)]

    def write(self, results: RunResults, run_dir: Path, store: Store) -> list[Path]:
        written: list[Path] = []
        cache: dict[str, Any] = {}
        for table in results.tables:
            for basis, cells in groups(table).items():
                written.append(draw(table, basis, cells, store, run_dir, cache))
        return written
