"""Reading a suite-like TOML file (a suite, an included suite, a published-table file) as untrusted input.

:func:`read_toml` reads only a regular file of at most :data:`MAX_FILE_BYTES` (checked before and after it is
opened), parses it with :mod:`tomllib`, and refuses a document nesting deeper than :data:`MAX_DEPTH` or holding a
number that is not finite; every refusal is a one-line :class:`~rbench.errors.SuiteError` naming the file and,
where there is one, the key path (:func:`key_path`).
"""

from __future__ import annotations

import math
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from rbench.errors import SuiteError

#: a suite, included or published file is read only if it is a regular file of at most this many bytes
#: (the largest shipped suite is 20 kB; a device or a huge file is refused before it is read)
MAX_FILE_BYTES = 1 << 20
#: tables and arrays nest at most this deep in a document (shipped suites: 8 levels)
MAX_DEPTH = 32
#: the longest name: suite, section entries (datasets, models, attacks, evaluations, tables, profiles)
MAX_NAME = 64


def shown(value: str, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters (the length said) so a message stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(value)} characters)"


def key_part(key: Any) -> str:
    """One component of a key path as written in a message: as is if short and printable, else quoted."""
    key = str(key)
    return key if key.isprintable() and len(key) <= MAX_NAME else shown(key)


_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link"}


def not_regular(mode: int) -> str:
    return f"is {_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a regular file"


class Unreadable(Exception):
    """Why a file was not read (:func:`read_small_file`); the caller adds the file's name and context. ``errno``:
    the operating system's error, where one was the reason (EACCES: the machine's, not the file's content)."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


def os_problem(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "not readable (permission denied)"
    return f"cannot be read ({exc.strerror or exc})"


def read_small_file(path: Path, what: str = "suite file", limit: int | None = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes (None: any size), else
    :class:`Unreadable`.

    Type and size are checked before the file is opened (a device, FIFO or socket is never opened), and again
    on the descriptor (opened non-blocking), and at most the cap plus one byte is read, so a file swapped or
    grown meanwhile cannot be read past the cap.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise Unreadable(os_problem(exc), exc.errno) from None
    except ValueError as exc:  # "embedded null byte"
        raise Unreadable(f"not a usable path ({exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise Unreadable(not_regular(st.st_mode))
    if limit is not None and st.st_size > limit:
        raise Unreadable(f"is {st.st_size} bytes, more than the {limit} a {what} may have")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise Unreadable(os_problem(exc), exc.errno) from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise Unreadable(not_regular(mode))
        try:
            data = f.read() if limit is None else f.read(limit + 1)
        except OSError as exc:
            raise Unreadable(os_problem(exc), exc.errno) from None
    if limit is not None and len(data) > limit:
        raise Unreadable(f"is more than the {limit} bytes a {what} may have")
    return data


def key_path(path: tuple[str | int, ...]) -> str:
    """A key path as messages write it: ``attacks.pgd.grid.eps[0]`` (array indices in brackets)."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{key_part(p)}" for p in path).lstrip(".")


def too_deep(doc: Any, limit: int = MAX_DEPTH) -> str | None:
    """The key path (cut short) of a table or array nested deeper than ``limit`` levels in ``doc``, or None.
    Iterative, so it works whatever the depth."""
    todo: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
    while todo:
        value, path = todo.pop()
        if not isinstance(value, dict | list):
            continue
        if len(path) >= limit:
            return key_path(path[:6]) + ("..." if len(path) > 6 else "")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        todo.extend((item, (*path, key)) for key, item in items)
    return None


#: the largest float32, and the smallest normal one: the models and attacks compute in float32 (or less)
FLOAT32_MAX, FLOAT32_TINY = float(np.finfo(np.float32).max), float(np.finfo(np.float32).tiny)


def unrepresentable(value: float) -> bool:
    """Whether ``value`` is not finite or is one a 32-bit float cannot hold (beyond 3.4e38, or nonzero below
    1.2e-38)."""
    return not math.isfinite(value) or abs(value) > FLOAT32_MAX or 0 < abs(value) < FLOAT32_TINY


def non_finite(doc: Any) -> tuple[str, float] | None:
    """The key path and value of the first number of ``doc`` (in document order) that is not finite -- TOML's
    ``inf``, ``-inf`` and ``nan``, or a literal too large for a float (``1e400`` reads as inf) -- or that a 32-bit
    float cannot hold (beyond 3.4e38: inf there; nonzero below 1.2e-38: 0 or a subnormal, an eps of 1e-320 made
    an attack do nothing), or None. Iterative; call it on a document :func:`too_deep` accepted."""
    todo: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
    while todo:
        value, path = todo.pop()
        if isinstance(value, float) and unrepresentable(value):
            return key_path(path), value
        if isinstance(value, dict | list):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            todo.extend(reversed([(item, (*path, key)) for key, item in items]))  # popped in document order
    return None


def non_finite_problem(doc: Any) -> str | None:
    """``"<key path>: inf is not a finite number"`` for the first non-finite number of ``doc``, or None. No suite or
    published value needs one, and a field's own check misses them (a lower bound alone, ``gt=0``, lets inf
    through; a field without bounds lets NaN through), so they are refused here, in every file, whatever the field."""
    found = non_finite(doc)
    if found is None:
        return None
    path, value = found
    if math.isfinite(value):
        side = "beyond" if abs(value) > FLOAT32_MAX else "nonzero but below"
        return (f"{path}: {value} is {side} what a 32-bit float holds (magnitudes {FLOAT32_TINY:.2g} to "
                f"{FLOAT32_MAX:.2g}), "
                "the arithmetic the models and attacks run in")
    # ART's norm takes np.inf: in TOML it is spelt as the string "inf" (rbench.plugins.attacks.art_adapter)
    hint = '; write an infinite norm as the string "inf"' if path.rsplit(".", 1)[-1] == "norm" else ""
    return f"{path}: {value} is not a finite number{hint}"


def read_toml(path: Path, referrer: str | None = None, *, what: str = "suite file") -> dict[str, Any]:
    """The TOML document at ``path``; a one-line :class:`SuiteError` if it cannot be read or parsed, is not a
    regular file of at most :data:`MAX_FILE_BYTES`, is not UTF-8, nests deeper than :data:`MAX_DEPTH`, or holds
    a number that is not finite (:func:`non_finite`; anywhere: profiles too, used or not).
    ``referrer`` (e.g. ``"a.toml: suite.include[0]"``) prefixes every message."""
    where = f"{referrer}: " if referrer else ""
    try:
        data = read_small_file(Path(path), what)
    except Unreadable as exc:
        problem = str(exc).replace("is a directory, not a regular file", f"is a directory, not a {what}")
        raise SuiteError(f"{where}{path}: {problem}") from None
    try:
        doc = tomllib.loads(data.decode("utf-8-sig"))  # a byte-order mark (Windows editors write one) is not TOML
    except UnicodeDecodeError:
        raise SuiteError(f"{where}{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{where}{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise SuiteError(f"{where}{path}: nests deeper than {MAX_DEPTH} levels of tables or arrays") from None
    deep = too_deep(doc)
    if deep is not None:
        raise SuiteError(f"{where}{path}: {deep}: nests deeper than {MAX_DEPTH} levels of tables or arrays")
    unfinite = non_finite_problem(doc)
    if unfinite is not None:
        raise SuiteError(f"{where}{path}: {unfinite}")
    return doc
