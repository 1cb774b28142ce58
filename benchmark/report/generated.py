"""Image grids of generated (or targeted) sets, e.g. Nguyen et al. 2015's fooling images: the ``images`` file
reporter.

For every result table whose ``figure`` is ``"images"`` (a table option of the suite), one PNG in the run folder,
``images_<table>.png`` (drawn by :func:`rbench.report.images.save_image_grid`): one grid row per table row, one
column per target class, each image the row's best for that class -- the highest softmax probability of its
target class under the model that scored the row -- captioned with that probability. A row's set and scores are
the adversarial set and the predictions on it that the row's first valued cell names in its provenance
(``Cell.jobs``); rows whose cells name no set with targets are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rbench.errors import RbenchError
from rbench.report.images import save_image_grid
from rbench.report.reporters import Reporter, figure_file
from rbench.results import ResultTable, RunResults

if TYPE_CHECKING:
    from rbench.store import Store

FIGURE = "images"


def figure_name(table: ResultTable) -> str:
    """The file name of ``table``'s image grid in the run folder."""
    return figure_file("images", table.name)


@dataclass
class Row:
    """One grid row: ``label`` and, per target class, the best image and its probability of that class."""

    label: str
    best: dict[int, tuple[np.ndarray, float]]


def _probabilities(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def row_images(table: ResultTable, row: str, store: Store) -> Row | None:
    """The best image per target class of the set behind ``row`` (None when its cells name no targeted set)."""
    for column in table.columns:
        try:
            cell = table.cell(row, column)
        except KeyError:
            continue
        if cell.value is None or table.is_mean(cell):  # a mean's jobs are several rows' sets
            continue
        for key in cell.jobs:
            if not store.has(key):
                raise RbenchError(f"table {table.name!r}: the stored output {key} of cell ({row}, {column}) is not in "
                                  f"the store {store.root}; pass --store, or run the suite again to recompute it")
        kinds = {key: store.entry(key).kind for key in cell.jobs}
        sets = [k for k, kind in kinds.items() if kind == "advset"]
        if not sets:
            continue
        adv = store.load_advset(sets[0])
        if (adv.targets < 0).all():
            continue
        scored = [store.load_predictions(k) for k, kind in kinds.items() if kind == "predictions"]
        scored = [p for p in scored if p.meta.get("spec", {}).get("input", {}).get("advset") == sets[0]]
        if not scored:
            continue
        probs = _probabilities(scored[0].logits)[np.arange(len(adv.targets)), np.maximum(adv.targets, 0)]
        best = {}
        for cls in np.unique(adv.targets[adv.targets >= 0]):
            rows = np.flatnonzero(adv.targets == cls)
            top = rows[int(np.argmax(probs[rows]))]
            best[int(cls)] = (adv.x_adv[top], float(probs[top]))
        return Row(row, best)
    return None


def caption(probability: float) -> str:
    """A probability as a percentage with enough digits to tell 99.99% from 99.9999%."""
    return f"{100 * probability:.4f}%" if probability >= 0.999 else f"{100 * probability:.1f}%"


def draw(table: ResultTable, rows: list[Row], path: Path) -> Path:
    classes = sorted({c for r in rows for c in r.best})
    images = [[r.best[c][0] if c in r.best else None for c in classes] for r in rows]
    captions = [[caption(r.best[c][1]) if c in r.best else "" for c in classes] for r in rows]
    return save_image_grid(path, images, title=f"{table.title}: the best image per target class (caption: its "
                           "probability of that class)", row_labels=[r.label for r in rows],
                           column_labels=[str(c) for c in classes], captions=captions)


class Images(Reporter):
    """Image grids of the generated sets behind every table with ``figure = "images"`` (``images_<table>.png``)."""

    name = "images"
    suffix = None

    def write(self, results: RunResults, run_dir: Path, store: Store) -> list[Path]:
        written = []
        for table in results.tables:
            if not table.draws(FIGURE):
                continue
            rows = [r for row in table.rows if (r := row_images(table, row, store)) is not None]
            if rows:
                written.append(draw(table, rows, Path(run_dir) / figure_name(table)))
        return written
