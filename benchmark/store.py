"""The content-addressed artifact store.

Layout under the store root::

    objects/<key[:2]>/<key>.safetensors + <key>.json   a checkpoint (weights + JSON sidecar, no pickle)
    objects/<key[:2]>/<key>.h5                          an adversarial set or a set of predictions
    locks/<key>.lock                                    held while a process writes, quarantines or deletes <key>
    gates/<key>.json                                    memo of the last validity-gate pass (see rbench.gates)
    leases/<id>.json + <id>.lock                        the keys a live run uses (gc keeps them)
    quarantine/                                         entries that failed a check, moved aside

Guarantees:

- **Every entry is bound to its key.** Each records the key and the job spec it was made for; a load checks that
  the recorded key is the key asked for and that the recorded spec hashes to it, so an entry copied or moved
  under another key is never served.
- **Checksums.** A checkpoint's sidecar holds its weights' SHA-256 and the SHA-256 of the rest of the sidecar (its
  training statistics and per-epoch measurements feed tables too); an HDF5 file holds the SHA-256 of all its arrays
  and of its metadata. A sidecar without its own checksum (``meta_sha256``: written before 2026-12-01, or removed to
  pass an edit) is corrupt: the entry is recomputed once. Any failure to load an entry (checksum, binding, a
  malformed file or sidecar, a missing array, non-finite values) raises :class:`CorruptEntry` after moving the entry
  to ``quarantine/``; a failure of the machine (too many open files, a stale NFS handle, permissions) raises
  :class:`StoreReadError` and leaves the entry where it is.
- **Nothing partial, nothing non-finite.** A file is built in memory, written to a temporary sibling, fsync'd
  and renamed; a checkpoint counts as stored only once its sidecar (written last) exists (weights whose writer
  was killed before it are removed by :meth:`Store.discard_incomplete` or gc). A write that does not
  fit on the disk fails with :class:`StoreWriteError` (one line) before anything is renamed. Non-finite floats
  are refused at write time.
- **Locks.** Writers, ``quarantine``, ``verify`` and gc take the same per-key file lock; nobody touches an entry
  another process is writing.
- **Links.** A store whose folders are symbolic links is refused (:meth:`Store.check_layout`): no operation
  follows a link out of the store; an entry file that is a link is corrupt.
- **Only regular files are read** (:func:`read_file`, and HDF5 files are checked before libhdf5 opens them): a
  FIFO or device in place of an entry's file or a gate memo makes the entry corrupt instead of a read that blocks.
- **Only its own files.** An entry's files are named by its key (40 hex digits) in the shard of its first two;
  nothing else in the folder is an entry, and no operation touches it. ``cache verify`` and ``cache gc`` refuse a
  folder that is not a store (:meth:`Store.check_is_store`).
- The default root is the platform cache dir; ``RBENCH_STORE`` or ``--store`` override it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat as stat_module
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import h5py
import numpy as np
import platformdirs
from filelock import FileLock, Timeout

from rbench.artifacts import AdvSet, Predictions
from rbench.errors import StoreError
from rbench.keys import content_key
from rbench.specs import ENTRY_KINDS
from rbench.tomlfile import Unreadable, not_regular, read_small_file

if TYPE_CHECKING:
    import torch

CHECKSUM_ATTR = "rbench_sha256"
#: The checkpoint sidecar's own checksum field (see :func:`sidecar_digest`).
SIDECAR_DIGEST = "meta_sha256"
META_ATTR = "rbench_meta"
TMP_MARK = ".tmp-"
#: how old a library cache's temporary file must be to be a killed process's (:meth:`Store.stale_cache_temporaries`)
STALE_CACHE_TEMPORARY_S = 3600.0
FOLDERS = ("objects", "locks", "gates", "leases", "quarantine", "library-cache")
#: where libraries rbench uses keep their own caches, inside the store (see :meth:`Store.library_caches`)
LIBRARY_CACHES = {"MPLCONFIGDIR": "matplotlib", "TORCHINDUCTOR_CACHE_DIR": "torch", "RBENCH_DATA_CACHE": "data",
                  "RBENCH_FIGURE_CACHE": "figures", "RBENCH_LIBRARY_CACHE": "."}
#: Free space a write leaves on the disk at least (so the run folder and lock files still fit).
RESERVE_BYTES = 1 << 20


class StoreLock(FileLock):
    """A store lock file: what keeps it from being taken (a folder at its path, an unwritable ``locks/``) is a
    one-line :class:`StoreError` naming the path, not an internal error; a lock another process holds is still
    :class:`filelock.Timeout`."""

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().acquire(*args, **kwargs)
        except Timeout:  # a subclass of OSError: another holder, not a broken path
            raise
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # the store, not something in it (the audit)
                raise StoreError(f"store lock {self.lock_file}: cannot be taken ({exc.strerror or exc}): the store's "
                                 f"folder {Path(self.lock_file).parent} is not writable by this process; a run, "
                                 "verify and gc need to write lock files there") from None
            raise StoreError(f"store lock {self.lock_file}: cannot be taken ({exc.strerror or exc}); the store "
                             "makes and holds only lock files there: move away what is in the way") from None


class CorruptEntry(Exception):
    """A stored entry failed a check or could not be read; it has been moved to quarantine (``moved_to``), or
    left in place (``moved_to`` None, or some of its files, ``stuck``) when another process holds its lock or a
    file cannot be moved; ``where`` says which."""

    def __init__(self, key: str, reason: str, moved_to: Path | None, *, held: bool = False,
                 stuck: tuple[str, ...] = ()):
        self.key, self.reason, self.moved_to, self.stuck = key, reason, moved_to, stuck
        if held:
            self.where = "left in place (another process holds it)"
        elif stuck:
            self.where = f"could not be moved to quarantine ({'; '.join(stuck)})" + (
                f"; its other files were moved to {moved_to}" if moved_to else "")
        elif moved_to:
            self.where = f"moved to {moved_to}"
        else:
            self.where = "already gone from the store"
        super().__init__(f"store entry {key} is corrupt ({reason}); {self.where}")


class EntryMissing(Exception):
    """An entry a job needs is not in the store (removed while the run was using it, or ``quarantined``: the
    folder it was moved to as corrupt, earlier in this run or by another process)."""

    def __init__(self, key: str, quarantined: Path | None = None):
        self.key, self.quarantined = key, quarantined
        why = "removed while this run needed it" if quarantined is None else \
            f"found corrupt and moved to {quarantined}"
        super().__init__(f"store entry {key} is missing ({why}); re-run to recompute it")

    def __reduce__(self) -> tuple[Any, ...]:  # from a worker process: rebuilt from its key, not its message
        return type(self), (self.key, self.quarantined)


class EntryReplaced(EntryMissing):
    """The entry a reader found failing its checks was replaced by another process after the reader began (a
    recomputed entry in place of a quarantined one): it is not quarantined; read it again."""

    def __init__(self, key: str, quarantined: Path | None = None):
        Exception.__init__(self, f"store entry {key} was replaced while it was read; read it again")
        self.key, self.quarantined = key, quarantined


class StoreWriteError(Exception):
    """A write to the store failed (disk full, I/O error); nothing was left under a final name."""


class StoreReadError(Exception):
    """An entry could not be read for a reason of the machine, not of its content (too many open files, the
    kernel's memory, a stale handle on a network filesystem, permissions): it is left in place, not quarantined,
    so that a passing failure never sends intact work to quarantine, where ``cache gc`` would delete it."""


#: errors of the machine a read may meet (content failures carry no errno, or one of a file's own: ENOENT ...)
MACHINE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ESTALE, errno.EAGAIN, errno.EINTR,
                            errno.ETIMEDOUT, errno.ENOBUFS, errno.EACCES, errno.EPERM})


def _machine_failure(key: str, exc: BaseException) -> StoreReadError | None:
    """The error to raise instead of quarantining ``key`` when ``exc`` is the machine's, not the entry's."""
    if isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS:  # not MemoryError: a corrupt header can ask
        # for a huge array, and an entry never quarantined could never be repaired by cache verify
        return StoreReadError(f"cannot read store entry {key} ({_reason(exc)}): left in place, not judged")
    return None


def default_root() -> Path:
    """``RBENCH_STORE`` (a leading ``~`` is the home folder, as a shell would expand it unquoted) or the platform
    cache; set but empty is a StoreError (it silently meant the default store, where ``--store ''`` is refused)."""
    env = os.environ.get("RBENCH_STORE")
    if env is not None and not env.strip():
        raise StoreError("RBENCH_STORE is set but empty: unset it for the default store, or name a folder ('.' "
                         "for the current one)")
    return Path(os.path.expanduser(env)) if env else Path(platformdirs.user_cache_dir("rbench")) / "store"


def arrays_digest(arrays: dict[str, np.ndarray], meta_json: str | None = None) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``arrays`` in name order (and ``meta_json`` if given)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    if meta_json is not None:
        h.update(b"meta|" + meta_json.encode())
    return h.hexdigest()


def check_binding(key: str, meta: Any) -> None:
    """Raise ValueError unless ``meta`` records ``key`` and a spec whose content key is ``key``."""
    if not isinstance(meta, dict):
        raise ValueError(f"its metadata is a {type(meta).__name__}, not a JSON object")
    if meta.get("key") != key:
        raise ValueError(f"it records the key {meta.get('key')!r}: it is another job's entry")
    spec = meta.get("spec")
    if not isinstance(spec, dict) or content_key(spec) != key:
        raise ValueError("its recorded job spec does not hash to its key")


def sidecar_digest(sidecar: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint sidecar's canonical JSON (sorted keys, no NaN), its own checksum field left out;
    ValueError naming the field when a number in it is not finite."""
    body = {k: v for k, v in sidecar.items() if k != SIDECAR_DIGEST}
    _require_finite_json(body, "sidecar")
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _require_finite_json(value: Any, where: str) -> None:
    if isinstance(value, float) and not np.isfinite(value):
        raise ValueError(f"{where} is {value} (not finite)")
    if isinstance(value, dict):
        for k, v in value.items():
            _require_finite_json(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _require_finite_json(v, f"{where}[{i}]")


def _require_kind(key: str, holds: str, asked: str) -> None:
    if holds != asked:
        raise ValueError(f"store entry {key} holds {holds}, not {asked}: load it with load_{holds}")


def _require_finite(name: str, values: np.ndarray | torch.Tensor) -> None:
    torch = sys.modules.get("torch")  # not imported for it: where torch is not imported, nothing is a tensor
    if torch is not None and isinstance(values, torch.Tensor):
        bad = values.is_floating_point() and not bool(torch.isfinite(values).all())
    else:
        array = cast(np.ndarray, values)
        bad = np.issubdtype(array.dtype, np.floating) and not bool(np.isfinite(array).all())
    if bad:
        raise ValueError(f"{name!r} holds non-finite values")


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
    ``between-weights-and-sidecar``: a checkpoint's weights are in place, its sidecar is not). Unset: no-op.
    With ``RBENCH_FAULT_ONCE=path`` only the first process to get there dies (it creates ``path``): a job retried
    in a fresh process (a Ray task) then succeeds."""
    spec = os.environ.get("RBENCH_FAULT_KILL")
    if not spec:
        return
    want, _, count = spec.partition(":")
    if want == name:
        _fault_counts[name] = _fault_counts.get(name, 0) + 1
        if _fault_counts[name] == int(count or 1) and _first_fault(os.environ.get("RBENCH_FAULT_ONCE")):
            os.kill(os.getpid(), signal.SIGKILL)


def _first_fault(marker: str | None) -> bool:
    """True unless ``marker`` names a file that already exists (else it is created now)."""
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


#: temporary files this process is writing now (removed by :func:`remove_partial_writes` on a signal)
_writing: set[Path] = set()


def remove_partial_writes() -> None:
    """Delete the temporary files this process is in the middle of writing (for signal handlers that end the
    process without unwinding, e.g. a worker told to stop)."""
    for tmp in list(_writing):
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write(path: Path, write: Callable[[Path], object], durable: bool = True, make_folder: bool = True) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, fsync it, and rename it to ``path``. Whatever
    happens (an exception, a signal that unwinds), no partial file is left under either name. ``durable=False``
    skips the fsyncs (file and folder), for memos a crash of the machine may lose or truncate harmlessly.
    ``make_folder=False``: a missing parent folder is an OSError, not made."""
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")
    _writing.add(tmp)
    try:
        write(tmp)
        fault_point("mid-write")
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        _writing.discard(tmp)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`), first checking that it fits: a full disk is
    one :class:`StoreWriteError` line (never a crash of a native library half-way through a file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(path.parent).free
        if free < len(data) + RESERVE_BYTES:
            raise StoreWriteError(f"cannot write {path.name} ({len(data) / 1e6:.2f} MB) to {path.parent}: only "
                                  f"{free / 1e6:.2f} MB free on its disk")
        atomic_write(path, lambda tmp: tmp.write_bytes(data), durable)
    except OSError as exc:
        raise StoreWriteError(f"cannot write {path.name} to the store: {exc.strerror or exc}") from None


#: a file's (inode, modification time, size, change time): :func:`_signature`
Signature = tuple[int, int, int, int]
#: the signatures of an entry's files by name (:meth:`Store.signatures`)
Judged = dict[str, Signature]
#: reads of an entry that another process replaced while it was read, before the last one's failure stands
READ_ATTEMPTS = 3


def _signature(stat: os.stat_result) -> Signature:
    """What tells one version of a file from another: a store file is only ever replaced by a rename (a new inode);
    an edit in place changes the change time, which, unlike the modification time, nothing can set back."""
    return stat.st_ino, stat.st_mtime_ns, stat.st_size, stat.st_ctime_ns


def _file_digest(path: Path) -> tuple[str, Signature] | None:
    """SHA-256 of the bytes of the regular file at ``path`` and the signature of the file they were read from
    (None: no such file, or a link, which is never followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # never blocks on a FIFO (refused below)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        stat = os.fstat(fd)
        if not stat_module.S_ISREG(stat.st_mode):
            return None
        return hashlib.file_digest(f, "sha256").hexdigest(), _signature(stat)


def read_file(path: Path) -> bytes:
    """The bytes of the store's regular file at ``path``; anything else (a FIFO, a device: opening one would block
    or never end) is a ValueError, as a malformed file is, and a missing one an OSError (FileNotFoundError)."""
    try:
        return read_small_file(path, "store file", limit=None)
    except Unreadable as exc:
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(f"{path}: {exc}") from None
        if exc.errno in MACHINE_ERRNOS:  # permissions, the kernel's limits: not the file's content
            raise OSError(exc.errno, f"{path.name} {exc}") from None
        raise ValueError(f"{path.name} {exc}") from None


def _open_h5(path: Path) -> Any:
    """The HDF5 file at ``path`` opened read-only through h5py's low-level API (an ``h5py.h5f.FileID``); a path
    that is not a regular file is a ValueError (libhdf5 would wait for ever on a FIFO), a link too: nothing reads
    through a link out of the store, ``cache ls`` included."""
    mode = os.lstat(path).st_mode
    if not stat_module.S_ISREG(mode):
        raise ValueError(f"{path.name} {not_regular(mode)}")
    access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    access.set_fclose_degree(h5py.h5f.CLOSE_STRONG)  # as h5py.File does: closing the file closes all of it
    return h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY, fapl=access)


def read_h5(path: Path, legacy_ok: Callable[[], bool] | None = None) -> tuple[dict[str, np.ndarray], Any, Any]:
    """Every dataset of the HDF5 file at ``path`` (by its path inside the file) but the metadata, the metadata JSON
    (its byte dataset, or the attribute of entries written before) and the checksum attribute, as ``h5py.File``
    gives them (``dataset[()]``, ``attrs[name]``; strings as ``str``), read through h5py's low-level API: for the
    small files a store holds, h5py's high-level objects cost several times the reads themselves (a set of
    8 samples: ~3.5 ms the high-level way, ~1 ms so). Whatever the direct path does not cover (a dataset that is not
    a numeric array of at least one dimension, an attribute that is not a scalar) is read the high-level way.
    ``legacy_ok`` is asked before the metadata attribute of a set written before it was a dataset is read (a
    variable-length string, in the heap whose corruption can hang libhdf5): False refuses it (ValueError)."""
    fid = _open_h5(path)
    try:
        names: list[bytes] = []
        h5py.h5o.visit(fid, lambda name, info: names.append(name) if info.type == h5py.h5o.TYPE_DATASET else None,
                       info=True)
        arrays: dict[str, np.ndarray] = {}
        for name in names:
            dataset = h5py.h5d.open(fid, name)
            shape, dtype = dataset.shape, dataset.dtype
            if not shape or dtype.kind not in "biuf" or dtype.metadata:
                value = h5py.Dataset(dataset)[()]
            else:
                value = np.empty(shape, dtype)
                if value.size:
                    dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, value)
            arrays[name.decode()] = value
        return arrays, _meta(fid, arrays.pop(META_ATTR, None), legacy_ok), _h5_attribute(fid, CHECKSUM_ATTR)
    finally:
        fid.close()


def _meta(fid: Any, stored: np.ndarray | None, legacy_ok: Callable[[], bool] | None) -> Any:
    """An entry's metadata JSON: its byte dataset, or (entries written before there was one) its attribute, read
    only if ``legacy_ok`` (when given) allows it (see :func:`read_h5`)."""
    if stored is None:
        if legacy_ok is not None and not legacy_ok():
            raise ValueError("its bytes changed since it last passed every check, and it was written before sets "
                             "held no variable-length data (reading its metadata could hang libhdf5)")
        return _h5_attribute(fid, META_ATTR)
    if stored.dtype != np.uint8 or stored.ndim != 1:
        raise ValueError(f"its {META_ATTR!r} dataset is {stored.dtype} of shape {stored.shape}, not bytes")
    return stored.tobytes().decode("utf-8", "surrogateescape")


def read_h5_meta(path: Path, legacy_ok: Callable[[], bool] | None = None) -> Any:
    """The metadata JSON of the HDF5 entry at ``path``, without its arrays (``legacy_ok``: as :func:`read_h5`)."""
    fid = _open_h5(path)
    try:
        stored = None
        if fid.links.exists(META_ATTR.encode()):
            dataset = h5py.h5d.open(fid, META_ATTR.encode())
            stored = np.empty(dataset.shape, dataset.dtype)
            dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, stored)
        return _meta(fid, stored, legacy_ok)
    finally:
        fid.close()


def read_h5_attribute(path: Path, name: str) -> Any:
    """The attribute ``name`` of the HDF5 file at ``path`` (``h5py.File(path).attrs[name]``), nothing else read."""
    fid = _open_h5(path)
    try:
        return _h5_attribute(fid, name)
    finally:
        fid.close()


def _h5_attribute(fid: Any, name: str) -> Any:
    """``h5py.File(...).attrs[name]`` of the open file ``fid``, read directly when it is a scalar; a string, of
    fixed length (what the store writes) or variable (entries written before), as ``str``."""
    attr = h5py.h5a.open(fid, name.encode())
    dtype = attr.dtype
    if attr.shape != () or dtype.subdtype is not None:
        return h5py.File(fid).attrs[name]
    value = np.zeros((), dtype=dtype)
    attr.read(value, mtype=h5py.h5t.py_create(dtype))
    value = value[()]
    if h5py.h5t.check_string_dtype(dtype) is not None and isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")  # a string, fixed-length or not: str
    return value


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
    #: checksums of entries verified in this process, kept longer (for :meth:`checksum`; a few strings each)
    DIGEST_ENTRIES = 1 << 17

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_root()
        self._loaded: OrderedDict[str, tuple[dict[str, np.ndarray], str, Signature, str]] = OrderedDict()
        #: key -> (the file it was read from: ".json" sidecar or ".h5", that file's signature, its checksum)
        self._digests: OrderedDict[str, tuple[str, Signature, str]] = OrderedDict()
        #: key -> the checksum a finished run recorded for it (:meth:`expect`)
        self._expected: dict[str, str] = {}
        #: when this store was opened (a run's start): only quarantines since then explain a missing entry
        self._opened = int(time.time())

    # -- layout --------------------------------------------------------------------------------------
    def _path(self, key: str, suffix: str) -> Path:
        return self.root / "objects" / key[:2] / f"{key}{suffix}"

    def library_caches(self) -> dict[str, str]:
        """The folders, inside the store's ``library-cache/``, for the caches of libraries rbench uses, by the
        environment variable naming each: matplotlib's font cache and config (else ``~/.cache/matplotlib`` and
        ``~/.config/matplotlib``), torch's compile-cache folder, which an optimizer's first step makes (else
        ``$TMPDIR/torchinductor_<user>``), downloaded data files (:func:`rbench.data.data_cache_dir`, else
        ``~/.cache/rbench/data``), the figures reporters drew (:mod:`rbench.report.figure_cache`: a warm run copies
        them; else each is drawn), and the folder itself (``RBENCH_LIBRARY_CACHE``: for a library with no
        variable of its own, e.g. ART's ``~/.art``, see the ``art`` adapter). Nothing a job reads is kept there; gc
        leaves it, but for the temporary files a killed process left in rbench's own folders
        (:meth:`stale_cache_temporaries`)."""
        return {var: str(self.root.absolute() / "library-cache" / name) for var, name in LIBRARY_CACHES.items()}

    def check_layout(self) -> None:
        """Refuse (one-line :class:`StoreError`) a store whose folders are symbolic links or not folders: no
        store operation may follow a link out of the store; or a store root that is a file."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store {self.root}: is a file, not a folder")
        for sub in FOLDERS:
            self._check_folder(self.root / sub)
        objects = self.root / "objects"
        if objects.is_dir():
            for shard in objects.iterdir():
                if shard.is_symlink():  # a plain file there (a desktop's .DS_Store) holds no entry: ignored
                    self._check_folder(shard)

    def check_is_store(self) -> None:
        """Refuse (one-line :class:`StoreError`) a folder that holds files but is not a store: a store holds
        only its own folders (:data:`FOLDERS`), and files in ``objects`` only if some are named as entries.
        ``cache verify`` moves files and ``cache gc`` deletes them (the quarantine's whole content): a mistyped
        ``--store`` must not aim them at someone else's folder. An absent or empty folder is an empty store."""
        self.check_layout()
        if not self.root.is_dir():
            return
        others = sorted(p.name for p in self.root.iterdir() if p.name not in FOLDERS and not p.name.startswith("."))
        files = list((self.root / "objects").glob("*/*"))
        if others or (files and not any(_is_entry_name(p.name.split(".", 1)[0], p.parent.name) for p in files)):
            why = f"it holds {', '.join(others[:3])}" if others else "none of the files in its objects/ is an entry"
            raise StoreError(f"store {self.root}: not an rbench store ({why}); check --store or RBENCH_STORE")

    def _check_folder(self, path: Path) -> None:
        if path.is_symlink():
            raise StoreError(f"store {self.root}: {path.relative_to(self.root)} is a symbolic link (to "
                             f"{os.readlink(path)}); rbench never follows links out of its store: make it a real "
                             "folder or use another store")
        if path.exists() and not path.is_dir():
            raise StoreError(f"store {self.root}: {path.relative_to(self.root)} is not a folder")

    def ensure_writable(self) -> None:
        """Check the layout and create the store folders; a clear :class:`StoreError` if not writable."""
        self.check_layout()
        try:
            for sub in FOLDERS:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            probe = self.root / "locks" / f".probe{TMP_MARK}{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"store {self.root}: not writable ({exc.strerror or exc}); "
                             "pass --store or set RBENCH_STORE to a writable folder") from None

    def lock(self, key: str) -> StoreLock:
        """The inter-process lock of ``key``, held while it is written, quarantined or deleted. One object per
        lock file in this process, so a holder may take it again (e.g. to quarantine what it holds)."""
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        return StoreLock(self.root / "locks" / f"{key}.lock", is_singleton=True)

    @contextlib.contextmanager
    def try_lock(self, key: str) -> Iterator[bool]:
        """Hold ``key``'s lock inside the block if it is free now; yields False (and holds nothing) when another
        process holds it."""
        lock = self.lock(key)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def paths(self, key: str) -> list[Path]:
        """Every final (non-temporary) file of ``key`` that exists."""
        folder = self.root / "objects" / key[:2]
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob(f"{key}.*") if TMP_MARK not in p.name)

    def has(self, key: str) -> bool:
        """True when ``key`` is completely stored (its sidecar or HDF5 file exists)."""
        return self._path(key, ".json").exists() or self._path(key, ".h5").exists()

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, key: str, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Store weights as safetensors, then the JSON sidecar (``meta`` plus the weights' SHA-256 and its own,
        :func:`sidecar_digest`). ``meta`` must record ``key`` and its spec; non-finite weights or numbers in
        ``meta`` are refused (ValueError)."""
        check_binding(key, meta)
        _require_finite_json(meta, "sidecar")
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        for name, tensor in tensors.items():
            _require_finite(name, tensor)
        from safetensors.torch import save as save_safetensors

        data = save_safetensors(tensors)
        weights, sidecar_path = self._path(key, ".safetensors"), self._path(key, ".json")
        try:  # the weights' write too: a signal after their rename, while their folder is synced, left them alone
            atomic_write_bytes(weights, data)
            fault_point("between-weights-and-sidecar")
            sidecar = dict(meta, kind="checkpoint", sha256=hashlib.sha256(data).hexdigest())
            sidecar[SIDECAR_DIGEST] = sidecar_digest(sidecar)
            atomic_write_bytes(sidecar_path, json.dumps(sidecar, indent=1).encode())
        except BaseException:  # a full disk, a signal: no weights without their sidecar (a process killed outright
            if not sidecar_path.exists():  # leaves them: :meth:`discard_incomplete`); a signal after the rename
                weights.unlink(missing_ok=True)  # leaves a complete checkpoint
            raise

    def expect(self, checksums: dict[str, str]) -> None:
        """Read the entries named in ``checksums`` only as they were when a finished run read them: loading one
        whose checksum is now another (recomputed since, or another store's under the same key) raises a one-line
        :class:`StoreError`. What ``rbench report`` does before a reporter reads the store for a run's figures,
        so that they are drawn from the entries the run's cells were computed from."""
        self._expected.update(checksums)

    def _as_run_read(self, key: str) -> None:
        want = self._expected.get(key)
        if want is not None and self.checksum(key) != want:
            raise StoreError(f"store entry {key} holds other contents than the run read (recomputed since, or "
                             f"{self.root} is not the run's store): run the suite again to draw from it")

    def load_checkpoint(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Weights and sidecar of ``key``, checked (else :class:`CorruptEntry`, or :class:`EntryMissing`)."""
        loaded = self._load_checkpoint(key)
        self._as_run_read(key)
        return loaded

    def _load_checkpoint(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return self.reread(key, self._read_checkpoint)

    def reread(self, key: str, read: Callable[[str, Judged], Any]) -> Any:
        """``read(key, judged)``, where ``judged`` are the signatures of ``key``'s files taken before it reads
        them: read again when it finds them failing only because another process replaced them meanwhile
        (:class:`EntryReplaced`; :meth:`quarantine` tells under the key's lock)."""
        for _ in range(READ_ATTEMPTS - 1):
            try:
                return read(key, self.signatures(key))
            except EntryReplaced:
                continue
        return read(key, self.signatures(key))

    def _read_checkpoint(self, key: str, judged: Judged) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        # imported here, not at the top (``import rbench.store`` needs no torch), and outside the ``try`` below:
        # a torch that fails to import is the machine's fault, never the entry's
        from safetensors.torch import load as load_safetensors

        weights, sidecar = self._path(key, ".safetensors"), self._path(key, ".json")
        if not sidecar.exists() and not sidecar.is_symlink():
            raise self.missing(key)
        try:
            self._refuse_links(weights, sidecar)
            signature = _signature(sidecar.lstat())  # before reading: a sidecar renamed in meanwhile is not it
            meta = json.loads(read_file(sidecar))
            check_binding(key, meta)
            recorded = meta.get(SIDECAR_DIGEST)
            if recorded is None:  # before sidecar checksums (2026-12-01), or removed: an edit would be served
                raise ValueError("its sidecar has no SHA-256 of its own (written before sidecars had one, or "
                                 "removed), so its statistics cannot be checked")
            if recorded != sidecar_digest(meta):
                raise ValueError("its sidecar does not match the sidecar's SHA-256 (edited or corrupted)")
            data = read_file(weights)
            digest = hashlib.sha256(data).hexdigest()
            if digest != meta.get("sha256"):
                raise ValueError("weights do not match the sidecar's SHA-256")
            state = load_safetensors(data)
            for name, tensor in state.items():
                _require_finite(name, tensor)
            self._remember(key, ".json", signature, digest)
            return state, meta
        except Exception as exc:  # any other failure to read an entry makes it corrupt, whatever raised it
            raise _machine_failure(key, exc) or self.quarantine(key, _reason(exc), judged) from None

    # -- HDF5 sets -----------------------------------------------------------------------------------
    def save_arrays(self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Store named arrays (float arrays kept at their dtype, never quantized) and JSON ``meta`` (which must
        record ``key`` and its spec). The file is built in memory, then written atomically; non-finite floats
        are refused (ValueError)."""
        check_binding(key, meta)
        if META_ATTR in arrays:
            raise ValueError(f"array name {META_ATTR!r} is the store's own (the entry's metadata)")
        for name, array in arrays.items():
            _require_finite(name, array)
        meta_json = json.dumps(meta)
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as f:
            for name, array in arrays.items():
                f.create_dataset(name, data=array, fletcher32=array.size > 0, chunks=array.size > 0 or None)
            # no variable-length string: it lives in the file's global heap, and one flipped bit in that heap's
            # length field sends libhdf5's reader into a loop no signal can stop (found by fuzzing every byte of a
            # stored set). The metadata is a byte dataset (it can pass the 64 KiB an attribute may hold: a
            # checkpoint model's spec records its source), the checksum a fixed-length string attribute.
            f.create_dataset(META_ATTR, data=np.frombuffer(meta_json.encode(), dtype=np.uint8), fletcher32=True,
                             chunks=True)
            f.attrs[CHECKSUM_ATTR] = np.bytes_(arrays_digest(arrays, meta_json).encode())
        path = self._path(key, ".h5")
        atomic_write_bytes(path, buffer.getvalue())
        with contextlib.suppress(OSError):  # the file this process just wrote: its checksum is known
            self._remember(key, ".h5", _signature(path.lstat()), str(arrays_digest(arrays, meta_json)))

    def _load_h5(self, key: str, parse: Callable[[dict[str, np.ndarray], dict[str, Any]], Any],
                 kind: str | None) -> Any:
        """The HDF5 entry ``key`` parsed by ``parse(arrays, meta)``, every check passed (else CorruptEntry); a sound
        entry of another kind than ``kind`` (None: any) is a ValueError (the caller's mistake: it stays)."""
        return self.reread(key, lambda k, judged: self._read_h5(k, parse, kind, judged))

    def _read_h5(self, key: str, parse: Callable[[dict[str, np.ndarray], dict[str, Any]], Any], kind: str | None,
                 judged: Judged) -> Any:
        path = self._path(key, ".h5")
        try:
            stat = path.lstat()
        except FileNotFoundError:
            raise self.missing(key) from None
        cached = self._loaded.get(key)
        if cached is not None and cached[2] == _signature(stat):
            self._loaded.move_to_end(key)
            meta = json.loads(cached[1])
            _require_kind(key, meta["kind"], kind or meta["kind"])
            return parse(cached[0], meta)  # fresh objects: callers may change them
        try:
            self._refuse_links(path)
            arrays, meta_json, expected = read_h5(path, lambda: self._unchanged_since_checked(key, path))
            if arrays_digest(arrays, meta_json) != expected:
                raise ValueError("arrays or metadata do not match the stored SHA-256")
            meta = json.loads(meta_json)
            check_binding(key, meta)
            holds = meta.get("kind")
            if holds not in ("advset", "predictions"):
                raise ValueError(f"it holds {holds!r}, not a kind of HDF5 entry")
            made = ENTRY_KINDS.get(meta["spec"].get("kind"), holds)  # a spec of no engine job (a test's) as it says
            if holds != made:
                raise ValueError(f"it holds {holds!r}, but its job spec makes {made!r}")
            for name, array in arrays.items():
                _require_finite(name, array)
                array.flags.writeable = False
            value = parse(arrays, meta) if kind in (None, made) else None
        except Exception as exc:  # any other failure to read an entry makes it corrupt, whatever raised it
            raise _machine_failure(key, exc) or self.quarantine(key, _reason(exc), judged) from None
        _require_kind(key, made, kind or made)  # a sound entry asked for as another kind is the caller's mistake
        self._loaded[key] = (arrays, meta_json, _signature(stat), str(expected))
        while len(self._loaded) > self.CACHE_ENTRIES:
            self._loaded.popitem(last=False)
        self._remember(key, ".h5", _signature(stat), str(expected))
        return value

    def _remember(self, key: str, suffix: str, signature: Signature, digest: str) -> None:
        """Keep the checksum of ``key``, just verified, read from its file ``suffix`` of that signature."""
        self._digests[key] = (suffix, signature, digest)
        self._digests.move_to_end(key)
        while len(self._digests) > self.DIGEST_ENTRIES:
            self._digests.popitem(last=False)

    def _verified_checksum(self, key: str, suffix: str) -> str | None:
        """The checksum of ``key`` as verified in this process, if its file ``suffix`` is still the one read."""
        known = self._digests.get(key)
        if known is None or known[0] != suffix:
            return None
        try:
            return known[2] if _signature(self._path(key, suffix).lstat()) == known[1] else None
        except OSError:
            return None

    def read_checksum(self, key: str) -> str | None:
        """The checksum of ``key`` as this process last verified it when it read the entry (even if the file was
        replaced since), else its stored checksum (:meth:`checksum`): what a job that read ``key`` was made from."""
        known = self._digests.get(key)
        return known[2] if known is not None else self.checksum(key)

    def file_digest(self, key: str) -> str | None:
        """SHA-256 of the bytes of ``key``'s HDF5 file, if that file is the one whose checksum this process verified
        (or wrote); None otherwise. A gate pass records it (see :mod:`rbench.gates`) to recognise the same bytes."""
        known = self._digests.get(key)
        found = _file_digest(self._path(key, ".h5"))
        if known is None or found is None or known[0] != ".h5" or known[1] != found[1]:
            return None
        return found[0]

    def vouch(self, key: str, file_digest: str, checksum: str) -> bool:
        """True when ``key``'s HDF5 file is, byte for byte, the file of SHA-256 ``file_digest`` (a link never is);
        its checksum is then taken to be ``checksum``, the checksum recorded with that digest, without parsing it."""
        found = _file_digest(self._path(key, ".h5"))
        if found is None or found[0] != file_digest:
            return False
        self._remember(key, ".h5", found[1], checksum)
        return True

    def save_advset(self, key: str, adv: AdvSet) -> None:
        self.save_arrays(key, adv.arrays(), dict(adv.meta, kind="advset"))

    def load_advset(self, key: str) -> AdvSet:
        adv = self._load_h5(key, AdvSet.from_arrays, "advset")
        self._as_run_read(key)
        return adv

    def save_predictions(self, key: str, pred: Predictions) -> None:
        self.save_arrays(key, pred.arrays(), dict(pred.meta, kind="predictions"))

    def load_predictions(self, key: str) -> Predictions:
        pred = self._load_h5(key, Predictions.from_arrays, "predictions")
        self._as_run_read(key)
        return pred

    def load_meta(self, key: str) -> dict[str, Any]:
        """The metadata of ``key`` (the checkpoint's sidecar, or the HDF5 set's), fully checked."""
        if self._path(key, ".json").exists():
            return self.load_checkpoint(key)[1]
        kind = self.entry(key).kind
        loaders: dict[str, Callable[[str], AdvSet | Predictions]] = {"advset": self.load_advset,
                                                                     "predictions": self.load_predictions}
        loader = loaders.get(kind)
        if loader is None:
            if not self.paths(key):
                raise self.missing(key)
            h5 = self._path(key, ".h5")
            if kind == "unreadable" and (h5.exists() or h5.is_symlink()):
                # its metadata did not read unchecked: the checked read says why, and a machine's failure (a
                # permission) leaves it in place
                return dict(self._load_h5(key, lambda arrays, meta: meta, None))
            raise self.quarantine(key, f"unknown entry kind {kind!r}")
        return loader(key).meta

    def checksum(self, key: str) -> str | None:
        """The stored checksum of ``key`` (a checkpoint's weights SHA-256, or an HDF5 file's digest); reads
        metadata only. None if ``key`` is not stored or unreadable."""
        try:  # first the checksum verified in this process, if the file is still the one it was read from
            if self._path(key, ".json").exists():
                known = self._verified_checksum(key, ".json")
                return known if known is not None else str(json.loads(read_file(self._path(key, ".json")))["sha256"])
            path = self._path(key, ".h5")
            known = self._verified_checksum(key, ".h5")
            if known is not None:
                return known
            if path.exists():
                return str(read_h5_attribute(path, CHECKSUM_ATTR))
        except Exception:  # an unreadable entry has no checksum; loading it will quarantine it
            return None
        return None

    def _unchanged_since_checked(self, key: str, path: Path) -> bool:
        """False when ``key``'s gate memo records the SHA-256 of the file that last passed every check and the file
        at ``path`` has other bytes; True where nothing is recorded (nothing to tell)."""
        memo = self.gate_stamp(key)
        if memo is None or memo.get("key") != key or not isinstance(memo.get("file"), str):
            return True
        found = _file_digest(path)
        return found is not None and found[0] == memo["file"]

    def gate_stamp(self, key: str) -> dict[str, Any] | None:
        """The record of the last validity-gate pass of ``key`` (see :mod:`rbench.gates`)."""
        try:
            stamp = json.loads(read_file(self.root / "gates" / f"{key}.json"))
        except (OSError, ValueError):
            return None
        return stamp if isinstance(stamp, dict) else None

    def write_gate_stamp(self, key: str, stamp: dict[str, Any]) -> None:
        """Record a gate pass. The stamp is a memo: when it cannot be written (a full disk), or a crash of the
        machine loses or truncates it (it is not fsync'd: two fsyncs cost more than an empty job), the gates run
        again in full next time, so a failure here is ignored."""
        with contextlib.suppress(StoreWriteError):
            atomic_write_bytes(self.root / "gates" / f"{key}.json", json.dumps(stamp).encode(), durable=False)

    # -- integrity -----------------------------------------------------------------------------------
    def verify(self, key: str) -> Literal["ok", "busy", "incomplete"]:
        """Load ``key`` fully under its lock; raise :class:`CorruptEntry` (and quarantine it) if any check fails.
        ``busy``: another process holds the key's lock (it is being written): nothing was touched. ``incomplete``:
        a checkpoint's weights whose writer died before its sidecar: not an entry (:meth:`has` is False, nothing
        reads them), left for ``cache gc``, which removes them as the debris of an interrupted write."""
        with self.try_lock(key) as locked:
            if not locked:
                return "busy"
            if self._path(key, ".json").exists() or self._path(key, ".h5").exists():
                self.load_meta(key)
            elif self.paths(key):
                return "incomplete"
            return "ok"

    def discard_incomplete(self, key: str) -> bool:
        """Remove the files of ``key`` if it is not completely stored (a checkpoint's weights whose sidecar its
        writer, killed, never wrote) and no process holds its lock; True if any were. For the runner, after a job
        failed: the next run would compute it afresh anyway, but ``cache verify`` would call the weights corrupt.
        Not for a key the calling thread is writing: its own lock is re-entrant, so it would not stop this."""
        with self.try_lock(key) as free:
            if not free or self.has(key):
                return False
            found = self.paths(key)
            for path in found:
                path.unlink(missing_ok=True)
            return bool(found)

    def missing(self, key: str) -> EntryMissing:
        """The error for an absent entry ``key``, naming the quarantine folder it went to if it went to one
        since this store was opened (by this process or another: a run's workers, a ``cache verify``); an older
        quarantine of the key says nothing of why it is missing now."""
        moved = [(int(stamp), p) for p in (self.root / "quarantine").glob(f"{key}-*")
                 if (stamp := p.name.split("-")[1]).isdigit() and int(stamp) >= self._opened]
        return EntryMissing(key, max(moved)[1] if moved else None)

    def signatures(self, key: str) -> Judged:
        """The signatures of ``key``'s files now, by name: what a reader judged, for :meth:`quarantine`."""
        found = {}
        for path in self.paths(key):
            with contextlib.suppress(FileNotFoundError):
                found[path.name] = _signature(path.lstat())
        return found

    def quarantine(self, key: str, reason: str, judged: Judged | str | None = None) -> CorruptEntry:
        """Move every file of ``key`` (and its gate stamp) to ``quarantine/`` under the key's lock; the returned
        error says where and why. An entry whose lock another process holds is left in place. ``judged``: what
        the caller found failing, read without the lock (the files' :meth:`signatures` before reading them, or
        the checksum of the entry it read): if the store holds another entry now (another process quarantined
        the one read and stored a new one meanwhile), nothing is moved and :class:`EntryReplaced` is raised."""
        self._loaded.pop(key, None)
        self._digests.pop(key, None)
        dest = self.root / "quarantine" / f"{key}-{int(time.time())}-{uuid.uuid4().hex[:6]}"
        moved, stuck = None, []
        with self.try_lock(key) as locked:
            if locked and judged is not None and \
                    (self.checksum(key) if isinstance(judged, str) else self.signatures(key)) != judged:
                raise EntryReplaced(key)
            if locked:
                stamp = self.root / "gates" / f"{key}.json"
                for path in [*self.paths(key), *([stamp] if stamp.exists() else [])]:
                    if path.is_dir() and not path.is_symlink():  # never the store's: gc would delete what it holds
                        stuck.append(f"{path.name}: a folder, left where it is")
                        continue
                    try:
                        dest.mkdir(parents=True, exist_ok=True)
                        os.replace(path, dest / path.name)  # a rename: a link is moved, never followed
                        moved = dest
                    except OSError as exc:
                        stuck.append(f"{path.name}: {exc.strerror or exc}")
        return CorruptEntry(key, reason, moved, held=not locked, stuck=tuple(stuck))

    def _refuse_links(self, *paths: Path) -> None:
        for path in paths:
            if path.is_symlink():
                raise ValueError(f"{path.name} is a symbolic link; the store never follows links")

    # -- leases: what live runs use ------------------------------------------------------------------
    def registry_lock(self) -> StoreLock:
        """Held by gc while it decides and deletes, and by a run while it registers its lease."""
        (self.root / "leases").mkdir(parents=True, exist_ok=True)
        return StoreLock(self.root / "leases" / "registry.lock", is_singleton=True)

    @contextlib.contextmanager
    def lease(self, keys: set[str], label: str) -> Iterator[None]:
        """Declare, for the duration of the block, that this process uses ``keys``: ``rbench cache gc`` keeps
        them. The lease is a JSON file whose lock this process holds; a lease whose holder died is stale."""
        lease_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        record = self.root / "leases" / f"{lease_id}.json"
        hold = StoreLock(self.root / "leases" / f"{lease_id}.lock", is_singleton=True)
        with self.registry_lock():
            hold.acquire()
            try:
                atomic_write_bytes(record, json.dumps({"label": label, "pid": os.getpid(),
                                                       "keys": sorted(keys)}).encode())
            except StoreWriteError as exc:  # before any work: one line, as any store that cannot be used
                hold.release()
                raise StoreError(f"the run cannot lease its entries in the store: {exc}") from None
            except BaseException:
                hold.release()
                raise
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                record.unlink()
            hold.release()

    def live_keys(self, tidy: bool = True) -> set[str]:
        """The keys every live run's lease names (call with :meth:`registry_lock` held); stale leases are
        removed (``tidy``; a dry run's gc leaves them)."""
        keys: set[str] = set()
        folder = self.root / "leases"
        if not folder.is_dir():
            return keys
        for record in folder.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                # its own open of the file, not the singleton: flock locks belong to an open file, so the lease
                # of a run in this very process reads as held (live), as another process's does
                holder = FileLock(record.with_suffix(".lock"), is_singleton=False)
                try:
                    holder.acquire(timeout=0)
                except Timeout:  # the run is alive
                    keys |= set(json.loads(read_file(record))["keys"])
                    continue
                if not tidy:
                    holder.release()
                    continue
                try:  # its run died without removing it
                    record.unlink()
                finally:
                    holder.release()
        for lock in folder.glob("*-*.lock") if tidy else ():  # a finished lease's lock file (made under this lock)
            if _LEASE_LOCK.fullmatch(lock.name) and not lock.with_suffix(".json").exists():
                with contextlib.suppress(OSError, Timeout):
                    holder = FileLock(lock, is_singleton=False)
                    holder.acquire(timeout=0)
                    try:
                        lock.unlink()
                    finally:
                        holder.release()
        return keys

    # -- listing and cleaning ------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Every key with at least one final file. Only files named as entries are (a key, 40 hex digits, in the
        shard of its first two): anything else in the folder is not the store's, and no store operation (``cache
        verify``'s quarantine, ``cache gc``) touches it."""
        objects = self.root / "objects"
        if not objects.is_dir():
            return []
        return sorted({key for p in objects.glob("*/*") if TMP_MARK not in p.name
                       and _is_entry_name(key := p.name.split(".", 1)[0], p.parent.name)})

    def recorded_meta(self, key: str) -> dict[str, Any]:
        """The metadata ``key`` records (a checkpoint's sidecar, an HDF5 set's attributes: label, spec, provenance
        with the job's ``seconds``), read without any check and without the arrays: for listings and estimates,
        never to serve a result. {} when absent or unreadable."""
        meta: Any = {}
        with contextlib.suppress(Exception):
            if self._path(key, ".json").exists():
                meta = json.loads(read_file(self._path(key, ".json")))
            elif self._path(key, ".h5").exists():
                path = self._path(key, ".h5")
                meta = json.loads(read_h5_meta(path, lambda: self._unchanged_since_checked(key, path)))
        return meta if isinstance(meta, dict) else {}

    def entry(self, key: str) -> Entry:
        """Summary of ``key`` (reads only metadata, not the arrays)."""
        paths = tuple(self.paths(key))
        size = 0
        for path in paths:
            with contextlib.suppress(FileNotFoundError):  # removed since it was listed (a gc, a quarantine)
                size += path.lstat().st_size
        meta = self.recorded_meta(key)
        kind = meta.get("kind", "incomplete" if not self.has(key) else "unreadable")
        if kind == "checkpoint" and not self._path(key, ".safetensors").exists():  # listed as 0 MB of weights
            kind = "checkpoint, weights missing"
        provenance = meta.get("provenance")
        created = provenance.get("created", "") if isinstance(provenance, dict) else ""
        return Entry(key, str(kind), str(meta.get("label", "")), size, str(created), paths)

    def entries(self) -> Iterator[Entry]:
        for key in self.keys():
            yield self.entry(key)

    @contextlib.contextmanager
    def run_marker(self) -> Iterator[tuple[Path, str]]:
        """A file ``locks/.marker-<token>`` holding a random token, there for the block's duration (for other
        machines to tell this store from another folder at its path): (its path, the token). This process holds
        an ``flock`` on it meanwhile, so :meth:`stale_markers` tells one whose process died. Hand-written: filelock
        empties the file it locks, and the token must be read from the file itself."""
        folder = self.root / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            token = uuid.uuid4().hex
            path = folder / f"{MARKER_PREFIX}{token}"
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:  # gc removed none between open and flock
                    break
            os.close(fd)
        try:
            os.write(fd, token.encode())
            yield path, token
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    def abandoned_temporaries(self) -> list[Path]:
        """The :meth:`temporaries` whose key's lock nobody holds: a killed writer's (a live one holds its key's
        lock while it writes, and its temporary file goes with its write)."""
        abandoned = []
        for tmp in self.temporaries():
            try:
                with self.try_lock(tmp.name.split(".", 1)[0]) as free:
                    if free:
                        abandoned.append(tmp)
            except OSError:  # a lock this process may not take (a read-only store): nobody writes there either
                abandoned.append(tmp)
        return abandoned

    def stale_cache_temporaries(self, max_age: float = STALE_CACHE_TEMPORARY_S) -> list[Path]:
        """Temporary files older than ``max_age`` seconds in the library cache's folders rbench itself writes
        (``answers``, ``figures``): a killed process's. No lock guards those small files (a lost answer or figure
        is made again), so a live writer's is told from a dead one's by its age: each is written in well under a
        second. The other libraries' folders (matplotlib's, torch's, the data cache) are theirs and left alone."""
        cutoff = time.time() - max_age
        found = []
        for folder in ("answers", "figures"):
            for path in (self.root / "library-cache" / folder).glob(f"*{TMP_MARK}*"):
                with contextlib.suppress(FileNotFoundError):  # its writer finished, or another gc removed it
                    if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                        found.append(path)
        return sorted(found)

    def stale_markers(self) -> Iterator[Path]:
        """The :meth:`run_marker` files whose process is gone (nobody holds their lock), each yielded while this
        process holds its lock: removed in the loop, none can be one a run has just made and not locked yet. And
        the :func:`write_probe` files a killed node left beside a marker that is gone or yielded here (a live run's
        are kept: its node may be between making and removing one)."""
        dead: set[str] = set()
        for path in sorted((self.root / "locks").glob(f"{MARKER_PREFIX}*")):  # a marker before its probes
            if _WRITE_PROBE.fullmatch(path.name):
                marker = path.name.rsplit("-", 1)[0]
                if marker in dead or not (path.parent / marker).exists():
                    yield path
                continue
            if not _MARKER.fullmatch(path.name):
                continue
            try:
                fd = os.open(path, os.O_RDWR)  # NFS emulates flock with POSIX locks: write access for LOCK_EX
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its process holds it
                os.close(fd)
                continue
            try:
                dead.add(path.name)
                yield path
            finally:
                os.close(fd)  # and its lock with it

    def unlisted(self) -> list[Path]:
        """The folders of ``objects/`` this process cannot list (no read or search permission): :meth:`keys` sees
        none of their entries, so ``cache verify`` and ``cache ls`` name them rather than report a store they did
        not see whole as sound."""
        objects = self.root / "objects"
        folders = [objects] if objects.is_dir() and not objects.is_symlink() else []
        found = []
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(folder) as listing:
                    inside = [Path(e.path) for e in listing if folder == objects and e.is_dir(follow_symlinks=False)]
            except OSError:
                found.append(folder)
                continue
            folders += inside
        return sorted(found)

    def quarantined(self) -> list[tuple[Path, list[Path]]]:
        """The folders :meth:`quarantine` made (``<key>-<time>-<id>``), each with the files it moved there (named
        by that key: the entry's files, its gate stamp). Anything else under ``quarantine/`` is not the store's:
        ``cache gc`` leaves it (a user's notes there were deleted)."""
        folder = self.root / "quarantine"
        if not folder.is_dir() or folder.is_symlink():
            return []
        found = []
        for sub in sorted(folder.iterdir()):
            made = _QUARANTINED.fullmatch(sub.name)
            if made is None or sub.is_symlink() or not sub.is_dir():
                continue
            try:
                files = sorted(f for f in sub.iterdir() if f.name.split(".", 1)[0] == made.group(1)
                               and (f.is_symlink() or f.is_file()))
            except OSError:  # a folder this process cannot list: nothing of it is judged, so nothing goes
                continue
            found.append((sub, files))
        return found

    def lease_temporaries(self) -> list[Path]:
        """Leftover temporary files of lease records (a run killed while writing its lease)."""
        return sorted((self.root / "leases").glob(f"*.json{TMP_MARK}*"))

    def temporaries(self) -> list[Path]:
        """Leftover temporary files (from interrupted writes) of entries (named as :meth:`keys` says) and of their
        gate memos (``gates/<key>.json``, written under the key's lock, as entries are); each name starts with its
        key."""
        found = (self.root / "objects").glob(f"*/*{TMP_MARK}*")  # nothing where there is no such folder
        memos = (self.root / "gates").glob(f"*.json{TMP_MARK}*")
        return sorted([p for p in found if _is_entry_name(p.name.split(".", 1)[0], p.parent.name)]
                      + [p for p in memos if _KEY.fullmatch(p.name.split(".", 1)[0])])


_KEY = re.compile(r"[0-9a-f]{40}")
#: a folder :meth:`Store.quarantine` made: ``<key>-<unix time>-<6 hex digits>``
_QUARANTINED = re.compile(r"([0-9a-f]{40})-[0-9]+-[0-9a-f]{6}")
#: the name of a :meth:`Store.run_marker` file, before its token
MARKER_PREFIX = ".marker-"
_MARKER = re.compile(re.escape(MARKER_PREFIX) + r"[0-9a-f]{32}")
_WRITE_PROBE = re.compile(_MARKER.pattern + r"-[0-9a-f]{8}")


def write_probe(marker: Path) -> Path:
    """A file a node makes and removes beside the run's ``marker`` (:meth:`Store.run_marker`) to show it can write
    the store; one a killed node left is removed by ``rbench cache gc`` (:meth:`Store.stale_markers`)."""
    return marker.with_name(f"{marker.name}-{uuid.uuid4().hex[:8]}")
#: a lease's lock file: ``<pid>-<8 hex digits>.lock`` (:meth:`Store.lease`)
_LEASE_LOCK = re.compile(r"[0-9]+-[0-9a-f]{8}\.lock")


def _is_entry_name(key: str, shard: str) -> bool:
    """Whether a file whose name starts with ``key`` in the folder ``objects/<shard>`` is named as an entry."""
    return bool(_KEY.fullmatch(key)) and key[:2] == shard


def _reason(exc: BaseException) -> str:
    """One line for why an entry could not be loaded."""
    text = " ".join(str(exc).split()) or "(no message)"
    return text if isinstance(exc, ValueError) and type(exc) is ValueError else f"{type(exc).__name__}: {text}"
