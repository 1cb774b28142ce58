"""What an attack library answers about its own attacks, kept between processes, so that a run need not import it.

An adapter of another library (ART, foolbox) asks it questions while a suite is validated and planned: which
attacks it has, whether a table of kwargs is valid (and in what normal form), what budget an attack declares,
whether it takes gradients. Answering means importing the library: ART takes 1.5-3 s, more than the rest of a
warm run of the suites that use it. :func:`remembered` keeps each answer in the store's library cache
(``$RBENCH_LIBRARY_CACHE/answers/``, set by the CLI) under a key of

- the library's installed Python files (each file's path, size and modification time: a reinstall, an upgrade
  or an edit changes it; the files are not read, which would cost as much as the import);
- the asking module's own source file (an adapter's change of how it asks or answers);
- the versions of numpy, scipy and torch (which the libraries build on);
- the question and its arguments (canonical JSON).

An answer is JSON (an adapter encodes a refusal as a value of its own, so refusals are kept too), stored with its
SHA-256 and its key; a file that does not match either, or cannot be read, is answered again and replaced. Without
the variable (the Python API, tests), or for arguments that are not JSON, or a library that is not installed,
every question is answered directly. The folder holds a few hundred small files at most (one per distinct
question of the suites run); ``rbench cache gc`` leaves library caches alone.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rbench.keys import canonical
from rbench.store import StoreWriteError, atomic_write_bytes, read_file

#: the environment variable naming the library cache folder (see :meth:`rbench.store.Store.library_caches`)
CACHE_VARIABLE = "RBENCH_LIBRARY_CACHE"
#: the packages every library's answers may depend on, by version
FOUNDATIONS = ("numpy", "scipy", "torch")


@functools.cache
def library_digest(distribution: str, package: str, asker: str) -> str | None:
    """SHA-256 of what a library's answers depend on (see the module): the files of ``package`` as installed by
    ``distribution``, the asking module's source file ``asker``, the foundations' versions; None where the library
    is not installed. Kept for the process (a library does not change under a running process)."""
    try:
        root = Path(str(importlib.metadata.distribution(distribution).locate_file(package)))
    except importlib.metadata.PackageNotFoundError:
        return None
    if not root.is_dir():
        return None
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        h.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    h.update(Path(asker).read_bytes())
    for name in FOUNDATIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            h.update(f"{name}={importlib.metadata.version(name)}\0".encode())
    return h.hexdigest()


def _answer_digest(answer: Any) -> str:
    return hashlib.sha256(canonical(answer).encode()).hexdigest()


def remembered(library: str | None, question: str, args: Any, answer: Callable[[], Any]) -> Any:
    """``answer()`` (a JSON value) for ``question`` with ``args`` about the library of digest ``library``
    (:func:`library_digest`), from the library cache when it holds it, else computed and kept there (see the
    module). Exceptions of ``answer`` propagate and nothing is kept."""
    folder = os.environ.get(CACHE_VARIABLE)
    try:
        key = hashlib.sha256(canonical([library, question, args]).encode()).hexdigest() if folder and library else None
    except (TypeError, ValueError):  # arguments that are not JSON: answered, not kept
        key = None
    if key is None:
        return answer()
    path = Path(str(folder)) / "answers" / f"{key}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        record = json.loads(read_file(path))
        if record["key"] == key and record["sha256"] == _answer_digest(record["answer"]):
            return record["answer"]
    value = answer()
    try:
        record = {"key": key, "question": question, "answer": value, "sha256": _answer_digest(value)}
        data = json.dumps(record).encode()
    except (TypeError, ValueError):  # an answer that is not JSON: returned, not kept
        return value
    with contextlib.suppress(OSError, StoreWriteError):  # a cache that cannot be written costs the answer only
        atomic_write_bytes(path, data, durable=False)
    return json.loads(data)["answer"]  # what a later process reads: the same value either way
