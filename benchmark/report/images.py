"""Image grids as PNG: the shared drawing behind every figure that shows images (fooling images, the inputs
that excite a hidden unit most). matplotlib is imported only to draw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rbench.report.figure_cache import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_image_grid(path: Path, images: Sequence[Sequence[np.ndarray | None]], *, title: str,
                    row_labels: Sequence[str] = (), column_labels: Sequence[str] = (),
                    captions: Sequence[Sequence[str]] | None = None) -> Path:
    """Draw ``images[r][c]`` (each (H, W), (1, H, W) or (3, H, W), values in [0, 1]; None leaves the place empty)
    as a grid with the given row and column labels and an optional caption under each image, and write it to
    ``path`` atomically (:func:`rbench.report.figure_cache.save_figure`). Returns ``path``."""
    if len(images) == 0 or max((len(r) for r in images), default=0) == 0:
        raise ValueError(f"no images to draw for {path.name}")
    return save_figure(path, image_grid, images, title=title, row_labels=row_labels, column_labels=column_labels,
                       captions=captions)


def image_grid(images: Sequence[Sequence[np.ndarray | None]], *, title: str, row_labels: Sequence[str] = (),
               column_labels: Sequence[str] = (), captions: Sequence[Sequence[str]] | None = None) -> Figure:
    """The figure :func:`save_image_grid` writes."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    rows = len(images)
    cols = max(len(r) for r in images)
    size = 1.1
    fig = Figure(figsize=(max(cols * size, 4), rows * size + 0.8), dpi=110)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            image = images[r][c] if c < len(images[r]) else None
            if image is not None:
                img = np.asarray(image, dtype=np.float32)
                if img.ndim == 3 and img.shape[0] == 1:
                    img = img[0]
                elif img.ndim == 3:
                    img = img.transpose(1, 2, 0)
                ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.axis("off")
            if captions is not None and c < len(captions[r]) and captions[r][c]:
                ax.set_xlabel(captions[r][c], fontsize=6)
            if c == 0 and r < len(row_labels):
                ax.set_ylabel(row_labels[r], fontsize=7)
            if r == 0 and c < len(column_labels):
                ax.set_title(column_labels[c], fontsize=7)
    fig.suptitle(title, fontsize=8, wrap=True)
    fig.tight_layout()
    return fig
