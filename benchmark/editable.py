"""What a third-party plugin's version is keyed with: an editable install's source, a released install's files.

Plugins under development: an editable install keys its plugins' jobs on their source as well as their version.

A plugin's version enters the keys of the jobs that call it, so a changed plugin gets new jobs only when its
author bumps the version. A distribution installed editable (``pip install -e``, PEP 660; pip records it in the
dist-info's ``direct_url.json``, PEP 610) is one being worked on: its code changes between runs while its version
stays, and the store would serve the outputs of the code as it was. For such a distribution the version a plugin
enters keys with gets ``+src.<digest>``: the SHA-256 (first 12 hex digits) of the files holding its entry
point's code, data files inside its packages included, and the project's code beside it (:func:`package_files`),
so any edit there computes the plugin's jobs afresh (an edit that changes nothing a job computes costs a
recomputation, never a stale result).
A released (not editable) install is keyed on its version and on the files pip installed: ``+files.<digest>`` of
the hashes pip recorded for them in the dist-info's ``RECORD`` (:func:`installed_digest`), so a reinstall of
changed code under the same version (``pip install --force-reinstall .``) computes its jobs afresh, while the same
files give the same key on every machine. An install without such a record (copied by hand, an egg) keeps its
version alone. The built-in plugins keep their versions as they are (the project bumps them by review,
CONTRIBUTING.md): rbench's own checkout is installed editable, and keying the built-ins on their source would make
every checkout's keys differ.
"""

from __future__ import annotations

import hashlib
import json
import sys
from functools import cache
from importlib import metadata
from pathlib import Path


def is_editable(dist: metadata.Distribution | None) -> bool:
    """Whether pip installed ``dist`` editable (its ``direct_url.json`` says ``dir_info.editable``)."""
    if dist is None:
        return False
    try:
        record = json.loads(dist.read_text("direct_url.json") or "null")
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and bool((record.get("dir_info") or {}).get("editable"))


def package_files(module_name: str) -> tuple[Path, list[Path]]:
    """(a folder, its files) holding the code of the already imported module ``module_name`` and of the
    project beside it: the folder holding its top-level package (or module), with the ``.py`` files there (sibling
    modules such as a ``utils.py`` the plugin imports) and every file of every regular package there (a folder with
    an ``__init__.py``; its data files too, byte-code caches aside), all the way down, its own package too even as
    a namespace package; for a namespace package spread over several folders, the folder of the module itself,
    its ``.py`` files all the way down. Only regular files, no hidden ones (an editor's lock file ``.#mod.py`` is a
    dangling link)."""
    top = sys.modules.get(module_name.split(".", 1)[0])
    folders = [Path(p) for p in getattr(top, "__path__", [])]
    if len(folders) > 1:
        source = getattr(sys.modules.get(module_name), "__file__", None) or ""
        if not source.endswith(".py"):
            return Path(), []
        return _python_files(Path(source).parent, "**/*.py")
    if folders:
        root, own = folders[0].parent, [folders[0]]
    else:
        source = getattr(top, "__file__", None) or ""
        if not source.endswith(".py"):
            return Path(), []
        root, own = Path(source).parent, []
    packages = own + [d for d in root.iterdir() if d not in own and not d.name.startswith(".") and d.is_dir()
                      and (d / "__init__.py").is_file()]
    # inside a package every file counts (a defaults.json, weights, a compiled extension the code reads), beside
    # it only modules (the folder may be a whole project's, with its data and virtual environments)
    files = _python_files(root, "*.py")[1] + [f for d in packages for f in _python_files(d, "**/*")[1]
                                              if "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo")]
    return root, sorted(set(files))


def _python_files(root: Path, pattern: str) -> tuple[Path, list[Path]]:
    files = [f for f in root.glob(pattern) if not any(part.startswith(".") for part in f.relative_to(root).parts)
             and f.is_file()]
    return root, sorted(files)


@cache
def source_digest(module_name: str) -> str:
    """SHA-256 (12 hex digits) of the package's files (:func:`package_files`), each with its path relative to the
    package, in order; "" without files. Cached for the process: the registry is built once per process."""
    root, files = package_files(module_name)
    if not files:
        return ""
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def installed_digest(dist: metadata.Distribution | None) -> str:
    """SHA-256 (12 hex digits) of the hashes pip recorded in ``dist``'s ``RECORD`` for the files it installed beside
    the dist-info, each with its path, sorted; "" without a record or a hashed file. Left out: the dist-info's own
    files (``direct_url.json`` names the folder it was installed from, ``REQUESTED`` how it was asked for), files
    outside the installation folder (a console script's first line holds the interpreter's path) and byte-code
    caches (recorded without a hash): the same files give the same digest on any machine. Trusts pip's record: a
    file edited in place after the install is not seen (an editable install is for code being edited)."""
    try:
        files = (dist.files or []) if dist is not None else []
    except (OSError, ValueError):  # an unreadable or malformed RECORD: keyed on the version alone
        return ""
    rows = sorted(f"{f.as_posix()}\0{f.hash.mode}:{f.hash.value}" for f in files
                  if f.hash is not None and f.parts and f.parts[0] != ".." and not f.parts[0].endswith(".dist-info"))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:12] if rows else ""


def development_version(version: str, dist: metadata.Distribution | None, module_name: str) -> str:
    """``version``, with ``+src.<digest>`` of the plugin's package where ``dist`` is installed editable, else with
    ``+files.<digest>`` of the files pip installed (:func:`installed_digest`) where it recorded them."""
    if not is_editable(dist):
        digest = installed_digest(dist)
        return f"{version}+files.{digest}" if digest else version
    digest = source_digest(module_name)
    return f"{version}+src.{digest}" if digest else version
