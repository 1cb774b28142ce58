"""The run folder: made (or found) and proved writable before any work, so a bad ``--run-dir`` is one line."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from rbench.errors import RbenchError
from rbench.results import WRITING_MARK
from rbench.store import TMP_MARK, atomic_write
from rbench.tomlfile import Unreadable, read_small_file


def write_output(path: Path, write: Callable[[Path], object]) -> None:
    """Write a run folder's file: ``write(tmp)`` on a temporary sibling, renamed to ``path`` (never a partial
    file), without the fsyncs of a store entry: a run folder is rebuilt from the store by running the suite again
    (warm) or from its results.json by ``rbench report``, and each fsync cost ~0.1 s on the test machines, a
    tenth of a warm run. Reporters (built-in and plugins) write through it. A folder that cannot be written (no
    permission, a full disk) is a one-line :class:`RbenchError` naming the file; so is a folder that does not exist
    (the run or report writing into it made it, and holds its lock: one that went meanwhile is not made again)."""
    try:
        atomic_write(path, write, durable=False, make_folder=False)
        note_output(Path(path))
    except OSError as exc:
        raise RbenchError(f"{path}: {_why(exc)}") from None


#: the run folder's record of the files its last run's reporters wrote (plain names, each with the SHA-256 of what
#: was written), so that the next run into the same folder first removes those that are not rewritten every time
#: (figures, tidy files): a figure of a table that is gone or not drawn this time would otherwise stay beside the new
#: tables, and report.html embed it
OUTPUTS_FILE = ".rbench-outputs.json"
#: a folder holding one of these is a run folder rbench wrote: a later run may write into it again
RUN_MARKS = ("results.json", OUTPUTS_FILE, WRITING_MARK)
#: files a desktop leaves in any folder it shows, or a user puts in a folder made for runs (to keep it in git, or
#: its contents out): they do not make a folder someone else's
IGNORED_HIDDEN = frozenset({".DS_Store", ".directory", ".localized", ".gitignore", ".gitkeep", ".keep",
                            ".ipynb_checkpoints"})


#: held (flock) by the one rbench process writing into a run folder: a run for its whole length, ``rbench report``
#: while it draws; left in place after (removing a lock file another process may have opened would let two hold it)
LOCK_FILE = ".rbench-lock"


def folder_kept(run_dir: Path) -> bool:
    """Whether ``run_dir`` still holds the :data:`LOCK_FILE` of the run or report writing into it: a folder removed
    meanwhile (or made again without it) does not, and is not to be written into unguarded."""
    return (run_dir / LOCK_FILE).is_file()


@contextlib.contextmanager
def writing_into(run_dir: Path, option: str = "--run-dir", *, new: bool = False) -> Iterator[None]:
    """Hold ``run_dir``'s :data:`LOCK_FILE` inside the block (again, in a process that holds it: ``rbench eval``
    writes its suite into the folder, then runs it); another process holding it is a one-line
    :class:`RbenchError` naming ``option`` (two runs writing one folder deleted each other's files and records).
    ``new``: the folder was made for this block, and goes if the block fails before writing into it
    (:func:`remove_folders`): its lock file is removed then, by its holder, before it lets go."""
    lock = FileLock(run_dir / LOCK_FILE, is_singleton=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RbenchError(f"{option} {run_dir}: another rbench run or report is writing into it; wait for it to "
                          "end, or give another folder") from None
    except OSError as exc:
        raise RbenchError(f"{option} {run_dir}: {_why(exc)}") from None
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):  # the block's own error is the one to report
            if new and lock.lock_counter == 1 and {p.name for p in run_dir.iterdir()} == {LOCK_FILE}:
                (run_dir / LOCK_FILE).unlink(missing_ok=True)
        raise
    finally:
        lock.release()


def remove_previous_outputs(run_dir: Path, keep: set[str]) -> None:
    """Remove the files the last run into ``run_dir`` recorded in :data:`OUTPUTS_FILE`, except the names in
    ``keep`` (the text reports, rewritten atomically every run, so an interrupted run leaves the previous ones
    whole). Only plain names of regular files in the folder are removed, and only while they hold what was
    written (their SHA-256 as recorded): a file the user has since replaced or edited under a recorded name, or a
    name an edited record adds, is left. A record written by an rbench older than the checksums (a plain list of
    names) is followed by name; a folder without the record, or with an unreadable one, is left as it is.
    Temporary files a killed run left (``<name>.tmp-<id>``: :func:`write_output`'s) go too."""
    for leftover in run_dir.glob(f"*{TMP_MARK}*"):
        if leftover.is_file() and not leftover.is_symlink():
            leftover.unlink(missing_ok=True)
    for name, digest in _recorded(run_dir).items():
        if Path(name).name != name or name in keep or name in (OUTPUTS_FILE, ".", ".."):
            continue
        path = run_dir / name
        if path.is_file() and not path.is_symlink() and (digest is None or _digest(path) == digest):
            path.unlink(missing_ok=True)


def _digest(path: Path) -> str | None:
    """The SHA-256 of the regular file at ``path``; None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _recorded(run_dir: Path) -> dict[str, str | None]:
    """The record: name -> the SHA-256 written (None: removed by name, as an old record's plain list of names
    meant; written as "")."""
    try:
        record = json.loads(read_small_file(run_dir / OUTPUTS_FILE, "outputs record", limit=None))
    except (Unreadable, ValueError):
        return {}
    if isinstance(record, list):
        return {n: None for n in record if isinstance(n, str)}
    if isinstance(record, dict):
        return {n: d or None for n, d in record.items() if isinstance(n, str) and isinstance(d, str)}
    return {}


def record_outputs(run_dir: Path, written: list[Path], *, merge: bool = True) -> None:
    """Record the files a run's reporters wrote into ``run_dir`` (see :data:`OUTPUTS_FILE`), with those recorded
    already unless ``merge`` is false (a run starting anew)."""
    run_dir = Path(run_dir)
    record = _recorded(run_dir) if merge else {}
    for p in written:
        if Path(p).parent.resolve() == run_dir.resolve():
            digest = _digest(Path(p))
            if digest is not None:  # a file gone meanwhile has nothing to match: not recorded
                record[Path(p).name] = digest
    _write_record(run_dir, record)


def _write_record(run_dir: Path, record: dict[str, str | None]) -> None:
    # a name an older record listed without a digest is kept, as "" (removed by name, as that record meant)
    text = json.dumps({n: d or "" for n, d in sorted(record.items())}, indent=0) + "\n"
    atomic_write(run_dir / OUTPUTS_FILE, lambda tmp: tmp.write_text(text), durable=False, make_folder=False)


def note_output(path: Path) -> None:
    """Add ``path`` to its folder's record where the folder has one (a run folder): every file a reporter writes
    through :func:`write_output` is recorded as it is written, so a run stopped midway, a reporter that fails
    after some of its figures, or ``rbench report -f`` leave no file the next run does not know of."""
    if not (path.parent / OUTPUTS_FILE).exists():
        return
    record = _recorded(path.parent)
    digest = _digest(path)
    if digest is not None and record.get(path.name) != digest:
        _write_record(path.parent, {**record, path.name: digest})


def _why(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "not writable (permission denied)"
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return "a folder above it is a file"
    return f"cannot be written ({exc.strerror or exc})"


def check_could_write(path: Path, option: str) -> None:
    """Refuse, writing nothing (``rbench run --dry-run``), a folder ``path`` that a run could not create or write
    into: the nearest existing path at or above it is a file (``a folder above it is a file``), or this user may
    not create files in it (``os.access``; a read-only mount or an ACL can still refuse the real run, which
    checks by creating a file: :func:`prepare_run_dir`). One line naming ``option``, the path and the problem."""
    path = Path(path)
    try:
        nearest = next(p for p in (path, *path.parents) if p.exists())
    except ValueError as exc:  # "embedded null byte"
        raise RbenchError(f"{option} {path}: not a usable path ({exc})") from None
    if not nearest.is_dir():
        why = "is a file, not a folder" if nearest == path else _why(FileExistsError())
        raise RbenchError(f"{option} {path}: {why}")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise RbenchError(f"{option} {path}: {_why(PermissionError())}" + (
            "" if nearest == path else f" ({nearest} is not writable)"))


def check_run_dir(path: Path, store_root: Path, option: str = "--run-dir", own: tuple[str, ...] = ()) -> None:
    """Refuse, writing nothing, a run folder that is a file, that is the store or lies inside it (the store holds
    its entries only: ``rbench cache gc`` and ``verify`` would meet a run's files there), or that is a folder
    of other files, not a run's (``--run-dir /`` or ``--run-dir ~`` wrote results.json, tables.md ... among the
    user's files, overwriting any of those names): a run folder is new, empty, or an earlier run's (it holds one
    of :data:`RUN_MARKS`); ``own`` names files the caller put there itself (``rbench eval``'s suite.toml). One
    line naming ``option``, the path and the problem."""
    path = Path(path)
    run, store = path.resolve(), Path(store_root).resolve()
    if run == store or store in run.parents:
        raise RbenchError(f"{option} {path}: {'is' if run == store else 'lies inside'} the store {store_root}; "
                          "put run folders outside it")
    if path.exists() and not path.is_dir():
        raise RbenchError(f"{option} {path}: is a file, not a folder")
    try:
        names = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    except OSError as exc:
        raise RbenchError(f"{option} {path}: {_why(exc)}") from None
    if run == Path.home().resolve():  # a home of dotfiles only would pass the check below
        raise RbenchError(f"{option} {path}: is your home folder; give a new or empty folder, or an earlier run's")
    # hidden files count (a home's .bashrc, a project's .git), but for rbench's own (.rbench-*) and a desktop's
    foreign = [n for n in names if n not in own and n not in IGNORED_HIDDEN and not n.startswith(".rbench")]
    if foreign and not set(names) & set(RUN_MARKS):
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise RbenchError(f"{option} {path}: holds other files ({shown}), not an earlier run's (no results.json): "
                          "give a new or empty folder, or an earlier run's")


def remove_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (made by :func:`prepare_run_dir`, deepest first) as far as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def prepare_run_dir(path: Path, option: str = "--run-dir") -> list[Path]:
    """Create the folder ``path`` if need be and check that a file can be created in it (a probe file, created
    exclusively and removed). Otherwise a one-line :class:`RbenchError` naming ``option`` (the command-line
    option, or e.g. ``"run folder"`` for the default one), the path and the problem: ``is a file``,
    ``a folder above it is a file``, ``not writable (permission denied)``, ... Call it before any work.
    Returns the folders it created, deepest first (for :func:`remove_folders` when the run stops before it
    writes anything); a failure here removes them itself."""
    path = Path(path)
    try:
        created = [folder for folder in (path, *path.parents) if not folder.exists()]
    except ValueError as exc:  # "embedded null byte"
        raise RbenchError(f"{option} {path}: not a usable path ({exc})") from None
    try:
        _make_writable_folder(path, option)
    except RbenchError:
        remove_folders(created)
        raise
    return created


def _make_writable_folder(path: Path, option: str) -> None:
    where = f"{option} {path}"
    try:
        if path.exists() and not path.is_dir():
            raise RbenchError(f"{where}: is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
    except RbenchError:
        raise
    except FileExistsError:  # raced into a file, or (mkdir's parents) a file in the way
        raise RbenchError(f"{where}: {'is a file, not a folder' if path.exists() else 'a folder above it is a file'}"
                          ) from None
    except OSError as exc:
        raise RbenchError(f"{where}: {_why(exc)}") from None
    except ValueError as exc:  # "embedded null byte"
        raise RbenchError(f"{where}: not a usable path ({exc})") from None
    probe = path / f".rbench-probe-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise RbenchError(f"{where}: {_why(exc)}") from None
    try:
        os.close(fd)
    finally:
        probe.unlink(missing_ok=True)
