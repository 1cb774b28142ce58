"""Figures kept by what they were drawn from, so that a warm run copies a figure instead of drawing it again.

Drawing is most of a warm run's own time (mnist_full's quick profile: 52 figures at about 0.3 s each, against a
second or two for everything else it reads from the store). A figure is a function of what it is drawn from, of
the code that draws it and of matplotlib (its version and settings), and its cache key hashes all of them:

- **what it is drawn from**: the arguments of the function that builds the figure (tables with every cell, the
  per-sample values, the curves read from the store, images as arrays), walked field by field
  (:func:`inputs_digest`);
- **the code**: every Python file of the rbench package and of the building function's top-level package (a
  reporter plugin's), so any change to any of them draws every figure anew;
- **matplotlib**: its version and every rcParam (a ``matplotlibrc`` in the working folder changes them).

The cache is the folder ``RBENCH_FIGURE_CACHE`` names (the CLI points it at the store's
``library-cache/figures``, beside matplotlib's font cache: nothing a job reads); unset, every figure is drawn.
Each figure is ``<key>.png`` with its SHA-256 in ``<key>.sha256`` (written after it): a PNG that does not match
its checksum, or one without it, is drawn again and replaced, never copied. The folder keeps the
:data:`MAX_FIGURES` figures used last and removes the others (its size stays bounded without ``cache gc``). A
cache that cannot be read or written (a read-only store) only costs the drawing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rbench.rundir import write_output
from rbench.store import StoreWriteError, atomic_write_bytes, read_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: the environment variable naming the cache folder (see :meth:`rbench.store.Store.library_caches`)
CACHE_VARIABLE = "RBENCH_FIGURE_CACHE"
#: figures the cache keeps (the ones used last); about 60 KB each
MAX_FIGURES = 1000


class NotDigestible(TypeError):
    """An argument of a type :func:`inputs_digest` cannot walk: the figure is drawn, not cached."""


def _feed(h: Any, obj: Any) -> None:
    # Hand-written: json cannot hash arrays or tuple-keyed dicts, and pickle's bytes are not canonical. Order is
    # kept (a dict's order is the order a legend or histograms are drawn in).
    if isinstance(obj, (str, bytes, bool, int, float, type(None), np.generic)):
        h.update(f"{type(obj).__name__}:{obj!r}\0".encode())
    elif isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        if array.dtype == object:
            raise NotDigestible("an object array")
        h.update(f"array:{array.dtype.str}:{array.shape}\0".encode())
        h.update(array.tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__}({len(dataclasses.fields(obj))}\0".encode())
        for f in dataclasses.fields(obj):
            h.update(f"{f.name}=".encode())
            _feed(h, getattr(obj, f.name))
    elif isinstance(obj, dict):
        h.update(f"dict({len(obj)}\0".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}({len(obj)}\0".encode())
        for item in obj:
            _feed(h, item)
    elif hasattr(obj, "detach") and hasattr(obj, "numpy"):  # a torch tensor (torch is not imported here for it)
        _feed(h, obj.detach().cpu().numpy())
    else:
        raise NotDigestible(type(obj).__name__)


def inputs_digest(*objs: Any) -> str:
    """SHA-256 of ``objs`` walked field by field: plain values by type and repr, arrays (and tensors) by dtype,
    shape and bytes, dataclasses, dicts, lists and tuples in order. :class:`NotDigestible` for anything else."""
    h = hashlib.sha256()
    for obj in objs:
        _feed(h, obj)
    return h.hexdigest()


def _source_files(module: str) -> list[Path]:
    """The Python files of ``module`` and of every package above it, each package's whole folder (a drawing may
    call anything there; an editable install maps subpackages, e.g. ``rbench.plugins``, to folders of their
    own)."""
    folders: list[Path] = []
    files: list[Path] = []
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        where = getattr(sys.modules.get(".".join(parts[:i])), "__file__", None)
        if not where:
            continue
        path = Path(where).resolve()
        if any(path.is_relative_to(folder) for folder in folders):
            continue
        if path.name == "__init__.py":
            folders.append(path.parent)
        else:
            files.append(path)
    return sorted({*files, *(found for folder in folders for found in folder.rglob("*.py"))})


@functools.cache
def _code_digest(module: str) -> str:
    """SHA-256 of the rbench package's Python files and of those of ``module``'s package (a reporter plugin's)."""
    h = hashlib.sha256()
    for path in dict.fromkeys([*_source_files(__name__), *_source_files(module)]):
        h.update(f"{path.name}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _matplotlib_digest() -> str:
    import matplotlib

    # dict.items: the stored values as they are (rcParams' own items() resolves the backend, importing pyplot).
    # The backend is left out: its unresolved value prints with its address, and a PNG is drawn by Agg whatever
    # the interactive backend.
    settings = sorted((k, v) for k, v in dict.items(matplotlib.rcParams) if not k.startswith("backend"))
    return inputs_digest(matplotlib.__version__, repr(settings))


def figure_key(build: Callable[..., Figure], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The cache key of the figure ``build(*args, **kwargs)`` makes (see the module)."""
    return inputs_digest(f"{build.__module__}.{build.__qualname__}", _code_digest(build.__module__),
                         _matplotlib_digest(), args, kwargs)


def _cached(folder: Path, key: str) -> bytes | None:
    try:
        png = read_file(folder / f"{key}.png")
        expected = read_file(folder / f"{key}.sha256").decode("ascii").strip()
    except (OSError, ValueError):
        return None
    if hashlib.sha256(png).hexdigest() != expected:
        return None
    with contextlib.suppress(OSError):
        os.utime(folder / f"{key}.png")  # used now: the last to go when the folder is trimmed
    return png


def _keep(folder: Path, key: str, png: bytes) -> None:
    with contextlib.suppress(OSError, StoreWriteError):  # a cache that cannot be written costs the drawing only
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / f"{key}.png", png, durable=False)
        atomic_write_bytes(folder / f"{key}.sha256", hashlib.sha256(png).hexdigest().encode(), durable=False)
        _trim(folder)


def _trim(folder: Path) -> None:
    """Remove all but the :data:`MAX_FIGURES` figures used last (and checksums left without their figure)."""
    figures = sorted(folder.glob("*.png"), key=lambda p: p.stat().st_mtime if p.exists() else 0.0)
    for old in figures[:max(0, len(figures) - MAX_FIGURES)]:
        old.unlink(missing_ok=True)
        old.with_suffix(".sha256").unlink(missing_ok=True)


def save_figure(path: Path, build: Callable[..., Figure], *args: Any, **kwargs: Any) -> Path:
    """Write the PNG of the figure ``build(*args, **kwargs)`` returns to ``path`` (a run folder's file, through
    :func:`rbench.rundir.write_output`), from the cache where it holds that figure (see the module), else drawn
    and kept there. Returns ``path``."""
    folder = os.environ.get(CACHE_VARIABLE)
    try:
        key = figure_key(build, args, kwargs) if folder else None
    except NotDigestible:
        key = None
    png = _cached(Path(folder), key) if folder and key else None
    if png is None:
        import io

        buffer = io.BytesIO()
        build(*args, **kwargs).savefig(buffer, format="png")
        png = buffer.getvalue()
        if folder and key:
            _keep(Path(folder), key, png)
    write_output(path, lambda tmp: tmp.write_bytes(png))
    return Path(path)
