"""The content-addressed artifact store.

Layout under the store root::

    objects/<key[:2]>/<key>.safetensors + <key>.json   a checkpoint (weights + JSON sidecar, no pickle)
    objects/<key[:2]>/<key>.h5                          an adversarial set or a set of predictions
    locks/<key>.lock                                    held while a process computes <key>
    quarantine/                                         entries that failed their checksum, moved aside

Guarantees:

- Every file is written to a temporary name in the same folder, fsync'd, then renamed, so a reader never
  sees a partial file under a final name. A checkpoint counts as stored only once its sidecar (written
  last, holding the weights' SHA-256) exists.
- Every load checks a checksum (the sidecar's SHA-256 of the weights; the SHA-256 of all HDF5 arrays kept in
  the file's attributes). A mismatch raises :class:`CorruptEntry` after moving the entry to ``quarantine/``.
- The default root is the platform cache dir; ``RBENCH_STORE`` or ``--store`` override it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import platformdirs
import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

from rbench.artifacts import AdvSet, Predictions
from rbench.errors import StoreError

CHECKSUM_ATTR = "rbench_sha256"
META_ATTR = "rbench_meta"
TMP_MARK = ".tmp-"


class CorruptEntry(Exception):
    """A stored entry failed its checksum or could not be read; it has been moved to quarantine."""

    def __init__(self, key: str, reason: str, moved_to: Path | None):
        self.key, self.reason, self.moved_to = key, reason, moved_to
        super().__init__(f"store entry {key} is corrupt ({reason}); moved to {moved_to}")


def default_root() -> Path:
    env = os.environ.get("RBENCH_STORE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("rbench")) / "store"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``arrays`` in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_fault_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Fault injection for the kill tests: ``RBENCH_FAULT_KILL=name:n`` SIGKILLs this process the n-th time
    it passes the point ``name`` (``mid-write``: the temporary file is written but not renamed;
    ``between-weights-and-sidecar``: a checkpoint's weights are in place, its sidecar is not). Unset: no-op."""
    spec = os.environ.get("RBENCH_FAULT_KILL")
    if not spec:
        return
    want, _, count = spec.partition(":")
    if want == name:
        _fault_counts[name] = _fault_counts.get(name, 0) + 1
        if _fault_counts[name] == int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, fsync it, and rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        fault_point("mid-write")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@dataclass(frozen=True)
class Entry:
    """One stored artifact, for ``rbench cache ls``."""

    key: str
    kind: str
    label: str
    bytes: int
    created: str
    paths: tuple[Path, ...]


class Store:
    """A content-addressed artifact store rooted at ``root`` (created on first use)."""

    #: verified HDF5 entries kept in memory (read-only arrays), so a run reads and hashes each file once
    CACHE_ENTRIES = 64

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_root()
        self._loaded: OrderedDict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = OrderedDict()

    # -- layout --------------------------------------------------------------------------------------
    def _path(self, key: str, suffix: str) -> Path:
        return self.root / "objects" / key[:2] / f"{key}{suffix}"

    def ensure_writable(self) -> None:
        """Create the store folders; a clear :class:`StoreError` if the location is not writable."""
        try:
            for sub in ("objects", "locks", "quarantine"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            probe = self.root / "locks" / f".probe{TMP_MARK}{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"store {self.root}: not writable ({exc.strerror or exc}); "
                             "pass --store or set RBENCH_STORE to a writable folder") from None

    def lock(self, key: str) -> FileLock:
        """An inter-process lock held while computing ``key`` (so two runs never compute it twice)."""
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / "locks" / f"{key}.lock")

    def paths(self, key: str) -> list[Path]:
        """Every final (non-temporary) file of ``key`` that exists."""
        folder = self.root / "objects" / key[:2]
        if not folder.exists():
            return []
        return sorted(p for p in folder.glob(f"{key}.*") if TMP_MARK not in p.name)

    def has(self, key: str) -> bool:
        """True when ``key`` is completely stored (its sidecar or HDF5 file exists)."""
        return self._path(key, ".json").exists() or self._path(key, ".h5").exists()

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, key: str, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Store weights as safetensors, then the JSON sidecar (``meta`` plus the weights' SHA-256)."""
        weights = self._path(key, ".safetensors")
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        atomic_write(weights, lambda tmp: save_file(tensors, str(tmp)))
        fault_point("between-weights-and-sidecar")
        sidecar = dict(meta, kind="checkpoint", sha256=sha256_file(weights))
        atomic_write(self._path(key, ".json"), lambda tmp: tmp.write_text(json.dumps(sidecar, indent=1)))

    def load_checkpoint(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Weights and sidecar of ``key``, checksum-verified (else :class:`CorruptEntry`)."""
        weights, sidecar = self._path(key, ".safetensors"), self._path(key, ".json")
        try:
            meta = json.loads(sidecar.read_text())
            if sha256_file(weights) != meta["sha256"]:
                raise ValueError("weights do not match the sidecar's SHA-256")
            return load_file(str(weights)), meta
        except (OSError, ValueError, KeyError) as exc:
            raise self.quarantine(key, f"{type(exc).__name__}: {exc}") from None

    # -- HDF5 sets -----------------------------------------------------------------------------------
    def save_arrays(self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Store named arrays (float arrays kept at their dtype, never quantized) and JSON ``meta``."""
        digest = arrays_digest(arrays)

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                for name, array in arrays.items():
                    f.create_dataset(name, data=array, fletcher32=array.size > 0, chunks=array.size > 0 or None)
                f.attrs[META_ATTR] = json.dumps(meta)
                f.attrs[CHECKSUM_ATTR] = digest

        atomic_write(self._path(key, ".h5"), write)

    def load_arrays(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays (read-only) and meta of ``key``, checksum-verified (else :class:`CorruptEntry`)."""
        path = self._path(key, ".h5")
        stat = path.stat() if path.exists() else None
        cached = self._loaded.get(key)
        if cached is not None and stat is not None and cached[1].get("_stat") == (stat.st_mtime_ns, stat.st_size):
            self._loaded.move_to_end(key)
            return cached[0], {k: v for k, v in cached[1].items() if k != "_stat"}
        try:
            with h5py.File(path, "r") as f:
                arrays: dict[str, np.ndarray] = {}
                f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                             if isinstance(obj, h5py.Dataset) else None)
                meta = json.loads(f.attrs[META_ATTR])
                expected = f.attrs[CHECKSUM_ATTR]
            if arrays_digest(arrays) != expected:
                raise ValueError("arrays do not match the stored SHA-256")
            for array in arrays.values():
                array.flags.writeable = False
            if stat is not None:
                self._loaded[key] = (arrays, {**meta, "_stat": (stat.st_mtime_ns, stat.st_size)})
                while len(self._loaded) > self.CACHE_ENTRIES:
                    self._loaded.popitem(last=False)
            return arrays, meta
        except (OSError, ValueError, KeyError) as exc:
            raise self.quarantine(key, f"{type(exc).__name__}: {exc}") from None

    def save_advset(self, key: str, adv: AdvSet) -> None:
        self.save_arrays(key, adv.arrays(), dict(adv.meta, kind="advset"))

    def load_advset(self, key: str) -> AdvSet:
        return AdvSet.from_arrays(*self.load_arrays(key))

    def save_predictions(self, key: str, pred: Predictions) -> None:
        self.save_arrays(key, pred.arrays(), dict(pred.meta, kind="predictions"))

    def load_predictions(self, key: str) -> Predictions:
        return Predictions.from_arrays(*self.load_arrays(key))

    def checksum(self, key: str) -> str | None:
        """The stored checksum of ``key`` (a checkpoint's weights SHA-256, or an HDF5 file's arrays digest);
        reads metadata only. None if ``key`` is not stored."""
        try:
            if self._path(key, ".json").exists():
                return json.loads(self._path(key, ".json").read_text())["sha256"]
            if self._path(key, ".h5").exists():
                with h5py.File(self._path(key, ".h5"), "r") as f:
                    return str(f.attrs[CHECKSUM_ATTR])
        except (OSError, ValueError, KeyError):
            return None
        return None

    def gate_stamp(self, key: str) -> dict[str, Any] | None:
        """The record of the last validity-gate pass of ``key`` (see :func:`rbench.jobs.gate_stored_advset`)."""
        try:
            return json.loads((self.root / "gates" / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def write_gate_stamp(self, key: str, stamp: dict[str, Any]) -> None:
        atomic_write(self.root / "gates" / f"{key}.json", lambda tmp: tmp.write_text(json.dumps(stamp)))

    # -- integrity -----------------------------------------------------------------------------------
    def verify(self, key: str) -> None:
        """Load ``key`` fully; raise :class:`CorruptEntry` (and quarantine it) if it fails its checksum."""
        if self._path(key, ".json").exists():
            self.load_checkpoint(key)
        elif self._path(key, ".h5").exists():
            self.load_arrays(key)
        elif self._path(key, ".safetensors").exists():
            raise self.quarantine(key, "weights without a sidecar (interrupted write)")

    def quarantine(self, key: str, reason: str) -> CorruptEntry:
        """Move every file of ``key`` to ``quarantine/``; the returned error says where and why."""
        dest = self.root / "quarantine" / f"{key}-{int(time.time())}"
        moved = None
        for path in self.paths(key):
            dest.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.move(str(path), dest / path.name)
                moved = dest
        return CorruptEntry(key, reason, moved)

    # -- listing and cleaning ------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Every key with at least one final file."""
        objects = self.root / "objects"
        if not objects.exists():
            return []
        return sorted({p.name.split(".", 1)[0] for p in objects.glob("*/*") if TMP_MARK not in p.name})

    def entry(self, key: str) -> Entry:
        """Summary of ``key`` (reads only metadata, not the arrays)."""
        paths = tuple(self.paths(key))
        size = sum(p.stat().st_size for p in paths)
        meta: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            if self._path(key, ".json").exists():
                meta = json.loads(self._path(key, ".json").read_text())
            elif self._path(key, ".h5").exists():
                with h5py.File(self._path(key, ".h5"), "r") as f:
                    meta = json.loads(f.attrs[META_ATTR])
        kind = meta.get("kind", "incomplete" if not self.has(key) else "unreadable")
        created = meta.get("provenance", {}).get("created", "")
        return Entry(key, kind, meta.get("label", ""), size, created, paths)

    def entries(self) -> Iterator[Entry]:
        for key in self.keys():
            yield self.entry(key)

    def temporaries(self) -> list[Path]:
        """Leftover temporary files (from interrupted writes)."""
        objects = self.root / "objects"
        return sorted(objects.glob(f"*/*{TMP_MARK}*")) if objects.exists() else []
