"""Figures kept by what they were drawn from, so that a warm run copies a figure instead of drawing it again.

Drawing was most of a warm run's own time: a whole warm run of mnist_full's quick profile took 44.5-49.0 s when
it drew its 52 figures and 17.4-22.0 s when it copied them (2-core CPU, 2026-12-02). A figure is a function of
what it is drawn from, of the code that draws it and of the libraries that render it, and its cache key hashes
all of them:

- **what it is drawn from**: the arguments of the function that builds the figure (tables with every cell, the
  per-sample values, the curves read from the store, images as arrays), walked field by field
  (:func:`inputs_digest`), and the function's default values. Only a module-level function is cached (a method,
  a closure or a ``functools.partial`` carries state the key would not see: each is drawn every time);
- **the code**: every Python file of the rbench package and of the packages of the building function's module
  (a reporter plugin's; a plugin that is one module: that file alone), so a change to any of them draws every
  figure anew. While any of those files has changed since the process started (modification or change time:
  an edit or a ``git pull`` during a run, where the code drawing is the code it loaded, maybe not the files'),
  nothing is looked up or kept; a function of a module without a file (``python -c``, a
  notebook) is drawn every time;
- **rendering**: matplotlib's version and settings, the versions of numpy, Pillow (which writes the PNG),
  kiwisolver (constrained layout) and Python, and the numeric locale. Where the settings are matplotlib's
  defaults, the files those are made of, read without importing matplotlib, so that a warm run need not import
  it (see :func:`_rendering_digest`); anywhere else (a ``matplotlibrc`` in the working folder, settings changed in
  the process) every rcParam. Fonts installed on the system are not in the key: a missing glyph's fallback font
  could differ between two machines sharing a store (the values drawn cannot).

A building function must draw from nothing else (no store reads, files or environment of its own).

The cache is the folder ``RBENCH_FIGURE_CACHE`` names (the CLI points it at the store's
``library-cache/figures``, beside matplotlib's font cache: nothing a job reads); unset, every figure is drawn.
Each figure is ``<key>.png`` with its SHA-256 in ``<key>.sha256`` (written after it): a PNG that does not match
its checksum, or one without it, is drawn again and replaced, never copied. The folder keeps the
:data:`MAX_FIGURES` figures used last and removes the others, with checksums left alone and temporary files
older than an hour (its size stays bounded without ``cache gc``). A cache that cannot be read or written (a
read-only store), or a key that cannot be computed, only costs the drawing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import inspect
import io
import locale
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rbench.rundir import write_output
from rbench.store import STALE_CACHE_TEMPORARY_S, TMP_MARK, StoreWriteError, atomic_write_bytes, read_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: the environment variable naming the cache folder (see :meth:`rbench.store.Store.library_caches`)
CACHE_VARIABLE = "RBENCH_FIGURE_CACHE"
#: figures the cache keeps (the ones used last); about 60 KB each
MAX_FIGURES = 1000
#: when this module was imported: what a process whose start time cannot be read counts from
_IMPORTED_NS = time.time_ns()


class NotDigestible(TypeError):
    """An argument of a type :func:`inputs_digest` cannot walk: the figure is drawn, not cached."""


def _feed(h: Any, obj: Any) -> None:
    # Hand-written: json cannot hash arrays or tuple-keyed dicts, and pickle's bytes are not canonical. Order is
    # kept (a dict's order is the order a legend or histograms are drawn in).
    if isinstance(obj, (str, bytes, bool, int, float, type(None), np.generic)):
        h.update(f"{type(obj).__name__}:{obj!r}\0".encode())
    elif isinstance(obj, np.ndarray):
        if type(obj) is not np.ndarray or obj.dtype.hasobject:  # a masked array's mask, objects' contents
            raise NotDigestible(f"a {type(obj).__name__} of {obj.dtype}")
        h.update(f"array:{obj.dtype!r}:{obj.shape}\0".encode())  # repr: a structured dtype's fields too
        h.update(np.ascontiguousarray(obj).tobytes())
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


@functools.cache
def _source_files(module: str) -> tuple[Path, ...]:
    """The Python files of ``module`` and of every package above it, each package's whole folder (a drawing may
    call anything there; an editable install maps subpackages, e.g. ``rbench.plugins``, to folders of their
    own); () where ``module`` has no file (``__main__`` of ``python -c``, a notebook)."""
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
    found = (p for folder in folders for p in folder.rglob("*.py") if p.is_file())  # not an editor's lock link
    return tuple(sorted({*files, *found}))


def _started_ns() -> int:
    """When this process started, rounded down to the second (Linux: /proc), else when this module was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return (boot + ticks // os.sysconf("SC_CLK_TCK")) * 10**9
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_NS


@functools.cache
def _started() -> int:
    """The time before which source files must have last changed for this process to cache figures."""
    return min(_started_ns(), _IMPORTED_NS)


@functools.cache
def _digest_files(paths: tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for path in paths:
        data = path.read_bytes()
        h.update(f"{path}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _code_digest(module: str) -> str | None:
    """SHA-256 of the rbench package's Python files and of those of ``module``'s packages (a reporter plugin's);
    None when ``module`` has no file, or when one of those files changed after this process started: its
    modification or change time (a copy that keeps the old modification time still changes the latter), checked
    at every figure, since the code drawing is the code loaded, maybe not the files'."""
    own = _source_files(module)
    if not own:
        return None
    paths = tuple(dict.fromkeys([*_source_files(__name__), *own]))
    started = _started()
    for path in paths:
        stat = path.stat()
        if max(stat.st_mtime_ns, stat.st_ctime_ns) >= started:
            return None
    return _digest_files(paths)


@functools.cache
def _versions() -> str:
    from importlib.metadata import version

    return repr([sys.version, np.__version__, version("pillow"), version("kiwisolver")])


def _rendering_digest(fresh: bool = False) -> str | None:
    """The rendering part of a key: matplotlib and its settings, the versions of what renders, the numeric locale.

    Where matplotlib's settings are its installed defaults, they are hashed as the files that make them
    (:func:`_defaults_digest`), without importing matplotlib: that import cost a warm run whose figures are all
    kept 0.15-0.2 s of its 3 s. That is known without importing it where no rc file is in any place it may read
    one from (:func:`rc_candidates`: it then loads its defaults), and, once imported (for an rc file, say), where
    its rcParams equal its defaults read afresh (:func:`_at_defaults`). Anywhere else (a ``matplotlibrc`` that
    changes a setting, ``rcParams[...] = ...``, a style) every rcParam is hashed."""
    numeric = locale.getlocale(locale.LC_NUMERIC)
    loaded = sys.modules.get("matplotlib")
    if loaded is None and _any_rc_file():
        loaded = importlib.import_module("matplotlib")
    at_defaults = _at_defaults(loaded, fresh) if loaded is not None else True  # no rc file anywhere: its defaults
    defaults = _defaults_digest(loaded, fresh) if at_defaults else None
    if defaults is not None:
        return inputs_digest("matplotlib defaults", defaults, _versions(), numeric)
    matplotlib = loaded if loaded is not None else importlib.import_module("matplotlib")
    # dict.items: the stored values as they are (rcParams' own items() resolves the backend, importing pyplot).
    # The backend is left out: its unresolved value prints with its address, and save_figure draws with Agg
    # whatever the interactive backend.
    settings = sorted((k, v) for k, v in dict.items(matplotlib.rcParams) if not k.startswith("backend"))
    return inputs_digest(matplotlib.__version__, repr(settings), _versions(), numeric)


def _package_folder(matplotlib: Any) -> Path | None:
    """The folder of the matplotlib package imported, or else of the one an import would find (not importing it)."""
    import importlib.util

    origin = getattr(matplotlib, "__file__", None) if matplotlib is not None else \
        getattr(importlib.util.find_spec("matplotlib"), "origin", None)
    return Path(origin).parent if origin else None


def _defaults_digest(matplotlib: Any, fresh: bool = False) -> str | None:
    """What the drawing of matplotlib at its default settings is made of: :func:`_installed_digest` of the package
    imported, or else of the one an import would find (``fresh``: not the process's kept answer); None where it
    cannot be told."""
    folder = _package_folder(matplotlib)
    if folder is None:
        return None
    return (_installed_digest.__wrapped__ if fresh else _installed_digest)(str(folder))


@functools.cache
def _installed_digest(folder: str) -> str | None:
    """SHA-256 of the matplotlib installed at ``folder``: its ``RECORD`` (the SHA-256 of every file the install
    wrote: Python, compiled extensions such as the FreeType it bundles, fonts, ``mpl-data/matplotlibrc``) and each
    listed file's size, modification and change times and inode as they are now (an edit after the install). A
    FreeType linked from the system (conda-forge's builds) is not in it, as system fonts are not. None where the package
    has no single ``RECORD`` beside it (a copy on PYTHONPATH, an unusual install: every rcParam and the version
    are hashed instead), or where one of its files changed after this process started (an upgrade during a run:
    the code in memory would not be the files'). Kept for the process: 5-10 ms, once."""
    package = Path(folder)
    records = list(package.parent.glob(f"{package.name}-*.dist-info/RECORD"))
    if len(records) != 1:
        return None
    started = _started()
    h = hashlib.sha256()
    try:
        record = records[0].read_bytes()
        h.update(record)
        for line in record.decode().splitlines():
            name = line.rsplit(",", 2)[0]
            if not name.startswith(f"{package.name}/"):
                continue
            stat = (package.parent / name).stat()
            if max(stat.st_mtime_ns, stat.st_ctime_ns) >= started:
                return None
            # the change time and inode too: an edit that restores size and modification time (cp -p, touch -r)
            h.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0{stat.st_ino}\0".encode())
    except (OSError, ValueError):
        return None
    return h.hexdigest()


def _any_rc_file() -> bool:
    """Whether anything is at one of the places matplotlib may read an rc file from at import (anything but a
    folder, a dangling link included: this errs towards importing matplotlib)."""
    return any(path is not None and os.path.lexists(path) and not path.is_dir() for _, path in rc_candidates())


def _at_defaults(matplotlib: Any, fresh: bool = False) -> bool:
    """Whether the imported matplotlib's rcParams (the backend aside) equal its defaults read afresh from its files,
    value and type (compared as ``repr``: ``1 == True``, but an int offset is not a bool to matplotlib): then it
    draws as a process that never read an rc file. Read afresh, not ``rcParamsDefault`` nor ``rcParamsOrig``, which
    share their lists with rcParams (an in-place change reaches them too). Any doubt (another matplotlib's private
    reader) is False: every rcParam is then hashed."""
    try:
        read = _fresh_defaults.__wrapped__ if fresh else _fresh_defaults
        defaults = read(str(Path(matplotlib.__file__).parent / "mpl-data" / "matplotlibrc"))
        live = {k: v for k, v in dict.items(matplotlib.rcParams) if not k.startswith("backend")}
        return live.keys() == defaults.keys() and all(repr(v) == repr(defaults[k]) for k, v in live.items())
    except Exception:  # noqa: BLE001 -- a private reader that changed: hash every rcParam instead
        return False


@functools.cache
def _fresh_defaults(path: str) -> dict[str, Any]:
    """matplotlib's default rcParams, parsed from its ``mpl-data/matplotlibrc`` as its import does (every line
    uncommented, then the hard-coded defaults), the backend aside; kept for the process (2 ms a parse)."""
    import matplotlib
    import matplotlib.rcsetup

    # private (no public reader uncomments the defaults file): a matplotlib without it raises, keys every rcParam
    params = matplotlib._rc_params_in_file(  # type: ignore[attr-defined]
        path, transform=lambda line: line[1:] if line.startswith("#") else line, fail_on_error=True)
    params._update_raw(matplotlib.rcsetup._hardcoded_defaults)  # type: ignore[attr-defined]
    return {k: v for k, v in dict.items(params) if not k.startswith("backend")}


def rc_candidates() -> list[tuple[str, Path | None]]:
    """A superset of the places ``matplotlib.matplotlib_fname()`` may take an rc file from, on every platform,
    each named by what it stands for (None where its variable is unset or empty), found without importing
    matplotlib: the working folder's ``matplotlibrc``, ``$MATPLOTLIBRC`` as a file and as a folder, ``matplotlibrc``
    in the configuration folders of ``$MPLCONFIGDIR``, ``$XDG_CONFIG_HOME``, ``%LOCALAPPDATA%``, ``~/.config`` and
    ``~/.matplotlib`` (a configuration folder it cannot write makes it use a new, empty, temporary one)."""
    env = os.environ

    def under(variable: str, *parts: str) -> Path | None:
        return Path(env[variable], *parts).absolute() if env.get(variable) else None

    try:
        home: Path | None = Path.home()
    except RuntimeError:  # no home folder
        home = None
    return [
        ("working folder", Path("matplotlibrc").absolute()),
        ("MATPLOTLIBRC", under("MATPLOTLIBRC")),
        ("MATPLOTLIBRC folder", under("MATPLOTLIBRC", "matplotlibrc")),
        ("MPLCONFIGDIR", under("MPLCONFIGDIR", "matplotlibrc")),
        ("XDG_CONFIG_HOME", under("XDG_CONFIG_HOME", "matplotlib", "matplotlibrc")),
        ("LOCALAPPDATA", under("LOCALAPPDATA", "matplotlib", "matplotlibrc")),
        ("~/.config", home / ".config" / "matplotlib" / "matplotlibrc" if home else None),
        ("~/.matplotlib", home / ".matplotlib" / "matplotlibrc" if home else None),
    ]


def cacheable(build: Callable[..., Any]) -> bool:
    """Whether figures ``build`` makes are cached: a function defined at its module's top level, which its name
    finds (a method, a closure, a lambda or a ``functools.partial`` carries state its name does not tell)."""
    return (inspect.isfunction(build) and build.__closure__ is None
            and getattr(sys.modules.get(build.__module__), build.__qualname__, None) is build)


def figure_key(build: Callable[..., Figure], args: tuple[Any, ...], kwargs: dict[str, Any], *,
               fresh: bool = False) -> str | None:
    """The cache key of the figure ``build(*args, **kwargs)`` makes (see the module); None where it is not cached
    (:func:`cacheable`, the code changed since the process started). :class:`NotDigestible` for an argument of a
    type :func:`inputs_digest` does not walk. ``fresh``: matplotlib's install and defaults read again, not as kept
    for the process (after a drawing, which an upgrade during the run may have made with other files)."""
    code = _code_digest(build.__module__) if cacheable(build) else None
    rendering = _rendering_digest(fresh) if code is not None else None
    if rendering is None:
        return None
    return inputs_digest(f"{build.__module__}.{build.__qualname__}", code, rendering, build.__defaults__,
                         build.__kwdefaults__, args, kwargs)


def _same_key(key: str, build: Callable[..., Figure], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether the figure just drawn has ``key`` still, matplotlib's install and defaults read again: a key made
    before matplotlib was imported said its settings were the defaults, and an rc file that appeared before the
    drawing imported it, or an upgrade during the run, would have changed what it drew with."""
    try:
        return figure_key(build, args, kwargs, fresh=True) == key
    except Exception:  # noqa: BLE001 -- as for the first key: not kept
        return False


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
    """Remove all but the :data:`MAX_FIGURES` figures used last, checksums left without their figure (another
    process trimmed it meanwhile) and temporary files an hour old (a write killed half-way)."""
    used = {}
    for path in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):  # another process trims too
            used[path] = path.stat().st_mtime
    figures = sorted((p for p in used if p.suffix == ".png"), key=used.__getitem__)
    gone = set(figures[:max(0, len(figures) - MAX_FIGURES)])
    gone |= {p for p in used if p.suffix == ".sha256" and p.with_suffix(".png") not in used}
    gone |= {p for p in used if TMP_MARK in p.name and used[p] < time.time() - STALE_CACHE_TEMPORARY_S}
    for path in gone:
        path.unlink(missing_ok=True)
        if path.suffix == ".png":
            path.with_suffix(".sha256").unlink(missing_ok=True)


def save_figure(path: Path, build: Callable[..., Figure], *args: Any, **kwargs: Any) -> Path:
    """Write the PNG of the figure ``build(*args, **kwargs)`` returns to ``path`` (a run folder's file, through
    :func:`rbench.rundir.write_output`), from the cache where it holds that figure (see the module), else drawn
    and kept there. Returns ``path``."""
    folder = os.environ.get(CACHE_VARIABLE)
    try:
        key = figure_key(build, args, kwargs) if folder else None
    except Exception:  # noqa: BLE001 -- an argument it cannot walk, a source file it cannot read: drawn, not cached
        key = None
    png = _cached(Path(folder), key) if folder and key else None
    if png is None:
        buffer = io.BytesIO()
        build(*args, **kwargs).savefig(buffer, format="png", backend="agg")  # as keyed (a pyplot figure's canvas
        # could be another backend's, which the key leaves out; a bare Figure's PNG is Agg's either way)
        png = buffer.getvalue()
        if folder and key and _same_key(key, build, args, kwargs):  # drawing imported matplotlib: as keyed?
            _keep(Path(folder), key, png)
    write_output(path, lambda tmp: tmp.write_bytes(png))
    return Path(path)
