"""What a library answers, kept between processes, so that a run need not import it: an attack library about its
own attacks (below), and scipy.special's few quantiles behind rbench's intervals (:mod:`rbench.estimate`).

An adapter of another library (ART, foolbox) asks it questions while a suite is validated and planned: which
attacks it has, whether a table of kwargs is valid (and in what normal form), what budget an attack declares,
whether it takes gradients. Answering means importing the library: ART takes 1.5-3 s, more than the rest of a
warm run of the suites that use it. :func:`remembered` keeps each answer in the store's library cache
(``$RBENCH_LIBRARY_CACHE/answers/``, set by the CLI) under a key of

- the library's Python files, those of the package Python would import (each file's path, size and modification
  time: a reinstall, an upgrade or an edit changes it; the files are not read, which would cost as much as the
  import);
- the asking module's own source file (an adapter's change of how it asks or answers);
- the versions of Python, pydantic (its wording is in refusals), numpy, scipy, torch, the library and what it
  requires;
- the question and its arguments, in their own order (a refusal names the first bad keyword as written).

An answer is JSON (an adapter encodes a refusal as a value of its own, so refusals are kept too), stored with its
SHA-256 and its key; a file that does not match either, or cannot be read, is answered again and replaced. Without
the variable (the Python API, tests) or its folder (a dry run of a store not made yet writes nothing), for
arguments that are not exactly JSON (tuples, numpy scalars), a library that is not installed, or an answer marked
:class:`Fleeting` (a refusal because an optional package is missing), every question is answered directly. The
folder gains a small file per distinct question of the suites run (and per library version or adapter edit); it is
not trimmed; in the store's own library cache ``rbench cache gc`` removes only the temporary files a killed
process left (an hour old).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rbench.keys import canonical
from rbench.store import StoreWriteError, atomic_write_bytes, read_file

#: the environment variable naming the library cache folder (see :meth:`rbench.store.Store.library_caches`)
CACHE_VARIABLE = "RBENCH_LIBRARY_CACHE"
#: the packages every library's answers may depend on, by version
FOUNDATIONS = ("numpy", "scipy", "torch")


class Fleeting:
    """An answer that holds for this process only (a refusal because an optional package is missing, which
    installing it changes): :func:`remembered` returns its ``value`` and keeps nothing."""

    def __init__(self, value: Any):
        self.value = value


@functools.cache
def library_digest(distribution: str, package: str, asker: str, extras: bool = True) -> str | None:
    """SHA-256 of what a library's answers depend on (see the module): the files of the package ``package`` that
    Python would import (found without importing it), the asking module's source file ``asker``, the versions of
    Python, pydantic (its messages are in refusals), the foundations and the distribution ``distribution`` with
    its own requirements (without ``extras``, only those it needs to import: scipy lists 40 test and doc tools,
    whose 40 version lookups cost more than the answer); None where the package is not found or its files cannot
    be listed. Kept for the process (a library does not change under a running process)."""
    try:
        spec = importlib.util.find_spec(package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if len(locations) != 1 or not Path(locations[0]).is_dir():
            return None
        root = Path(locations[0])
        h = hashlib.sha256(f"{root}\0{sys.version}\0".encode())
        for path in sorted(root.rglob("*.py")):
            stat = path.stat()
            h.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        h.update(Path(asker).read_bytes())
        required = [r for r in importlib.metadata.requires(distribution) or [] if extras or "extra ==" not in r]
        names = [*FOUNDATIONS, "pydantic", distribution,
                 *(re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0] for r in required)]
    except (OSError, ValueError, ImportError, importlib.metadata.PackageNotFoundError):
        return None
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError, ValueError):
            h.update(f"{name}={importlib.metadata.version(name)}\0".encode())
    return h.hexdigest()


def _exact_json(value: Any) -> bool:
    """Whether ``value`` is made of JSON's own types only (a tuple, a numpy scalar or a subclass would come back
    from JSON as something else: such arguments are answered, not kept)."""
    if type(value) in (str, int, float, bool) or value is None:
        return True
    if type(value) is list:
        return all(_exact_json(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _exact_json(v) for k, v in value.items())
    return False


def _value(answer: Any) -> Any:
    return answer.value if isinstance(answer, Fleeting) else answer


def _answer_digest(answer: Any) -> str:
    return hashlib.sha256(canonical(answer).encode()).hexdigest()


def remembered(library: str | None, question: str, args: Any, answer: Callable[[], Any]) -> Any:
    """``answer()`` (a JSON value) for ``question`` with ``args`` about the library of digest ``library``
    (:func:`library_digest`), from the library cache when it holds it, else computed and kept there (see the
    module). Exceptions of ``answer`` propagate and nothing is kept; nor is a :class:`Fleeting` answer."""
    folder = os.environ.get(CACHE_VARIABLE)
    if not folder or not library or not Path(folder).is_dir() or not _exact_json(args):
        return _value(answer())  # no store yet (a dry run of a new one writes nothing), or arguments JSON changes
    # in the arguments' own order (a refusal names the first bad keyword of the table as written)
    key = hashlib.sha256(json.dumps([library, question, args], separators=(",", ":")).encode()).hexdigest()
    path = Path(folder) / "answers" / f"{key}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, RecursionError):
        record = json.loads(read_file(path))
        if record["key"] == key and record["sha256"] == _answer_digest(record["answer"]):
            return record["answer"]
    value = answer()
    if isinstance(value, Fleeting):
        return value.value
    try:
        record = {"key": key, "question": question, "answer": value, "sha256": _answer_digest(value)}
        data = json.dumps(record).encode()
    except (TypeError, ValueError):  # an answer that is not JSON: returned, not kept
        return value
    with contextlib.suppress(OSError, StoreWriteError):  # a cache that cannot be written costs the answer only
        atomic_write_bytes(path, data, durable=False)
    return json.loads(data)["answer"]  # what a later process reads: the same value either way
