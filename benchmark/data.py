"""The data files (MNIST, Fashion-MNIST, USPS, notMNIST): where they come from, how they are verified, how IDX files are
read (the USPS plugin parses its own LIBSVM file, :mod:`rbench.plugins.datasets.usps`).

A data file is found, in this order:

1. ``$RBENCH_DATA/<dataset>/<filename>`` when ``RBENCH_DATA`` is set and the file exists. It must match
   its known SHA-256; a mismatch is an error (a corrupt file in the user's own data folder is never
   silently bypassed).
2. ``<cache>/<dataset>/<filename>`` where ``<cache>`` is :func:`data_cache_dir`. A cached file that does
   not match its SHA-256 is deleted and downloaded again.
3. A download into the cache, from ``$RBENCH_DATA_MIRROR`` (``<base>/<dataset>/<filename>``) when set,
   otherwise from the canonical mirrors in order. ``RBENCH_OFFLINE=1`` forbids downloads.

Datasets in :data:`LOCAL_ONLY` (notMNIST) have no canonical checksummed source: their files are read from
``$RBENCH_DATA/<dataset>/<filename>`` only (same IDX file names as MNIST), never downloaded nor checksummed.

Every failure a user can cause raises :class:`~rbench.errors.DataError` with a one-line message.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import stat
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .envflag import flag
from .errors import DataError
from .tomlfile import not_regular, os_problem

#: the checksummed datasets in IDX files (their splits: :data:`_SPLIT_FILES`, :data:`_SPLIT_SIZES`)
DATASET_NAMES = ("mnist", "fashion-mnist")
#: checksummed datasets in other files, which their plugins read themselves through :func:`resolve_file`
OTHER_CHECKSUMMED = ("usps",)
#: Datasets read only from ``$RBENCH_DATA`` (no trusted checksummed download exists); files as MNIST's.
LOCAL_ONLY = ("notmnist",)

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: the number of images of each split of the checksummed datasets (fixed by their SHA-256)
_SPLIT_SIZES = {"train": 60000, "test": 10000}
#: labels of every dataset here are class indices 0..NUM_CLASSES-1
NUM_CLASSES = 10

# dataset -> canonical mirrors (base URLs, the file name is appended) and filename -> (sha256, md5).
_REGISTRY: dict[str, dict] = {
    "mnist": {
        "mirrors": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        "files": {
            "train-images-idx3-ubyte.gz": (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            ),
            "train-labels-idx1-ubyte.gz": (
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "d53e105ee54ea40749a09fcbcd1e9432",
            ),
            "t10k-images-idx3-ubyte.gz": (
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "9fb629c4189551a2d022fa330f9573f3",
            ),
            "t10k-labels-idx1-ubyte.gz": (
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
        },
    },
    "fashion-mnist": {
        "mirrors": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "files": {
            "train-images-idx3-ubyte.gz": (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            ),
            "train-labels-idx1-ubyte.gz": (
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "25c81989df183df01b3e8a0aad5dffbe",
            ),
            "t10k-images-idx3-ubyte.gz": (
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "bef4ecab320f06d8554ea6380940ec79",
            ),
            "t10k-labels-idx1-ubyte.gz": (
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        },
    },
    # LIBSVM's copy of USPS (Hull 1994): the test split only. Its training file usps.bz2 is published with an MD5
    # alone (ec16c51db3855ca6c91edd34d0e9b197) and no copy was at hand to pin its SHA-256, so it is not offered.
    "usps": {
        "mirrors": ("https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/",),
        "files": {
            "usps.t.bz2": (
                "a9c0164e797d60142a50604917f0baa604f326e9a689698763793fa5d12ffc4e",
                "8ea070ee2aca1ac39742fdd1ef5ed118",
            ),
        },
    },
}

_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _check_dataset(dataset: str) -> dict:
    if dataset not in _REGISTRY:
        raise DataError(f"unknown dataset {dataset!r}; known datasets: "
                        f"{', '.join(DATASET_NAMES + OTHER_CHECKSUMMED + LOCAL_ONLY)}")
    return _REGISTRY[dataset]


def check_user_folder() -> None:
    """A DataError when ``RBENCH_DATA`` is set and names no folder (:func:`_user_dir`)."""
    _user_dir()


def _user_dir() -> str | None:
    """``RBENCH_DATA`` when set (and not empty); a DataError when it names no folder (a typo was ignored: the run
    then looked only in the cache and tried to download, and its error never said the folder was missing)."""
    user_dir = os.environ.get("RBENCH_DATA")
    if user_dir and not Path(user_dir).is_dir():
        what = "a file" if Path(user_dir).exists() else "missing"
        raise DataError(f"RBENCH_DATA={user_dir!r} is not a folder ({what}): point it at the folder that holds "
                        "<dataset>/<files>, or unset it")
    return user_dir or None


def local_file(dataset: str, filename: str) -> Path:
    """``$RBENCH_DATA/<dataset>/<filename>`` for a :data:`LOCAL_ONLY` dataset; DataError naming the file and the
    folder when it is missing (such files are never downloaded, and not checksummed)."""
    user_dir = _user_dir()
    folder = Path(user_dir) / dataset if user_dir else None
    if folder is not None:
        _refuse_other_than_file(folder / filename)
    if folder is None or not (folder / filename).is_file():
        where = f"missing from {folder}" if folder else "missing (RBENCH_DATA is not set)"
        raise DataError(f"data file {dataset}/{filename} is {where}; {dataset} is never downloaded: put its IDX "
                        f"files ({', '.join(n for pair in _SPLIT_FILES.values() for n in pair)}) in "
                        f"$RBENCH_DATA/{dataset}/")
    return folder / filename


def _split_paths(dataset: str, split: str) -> list[Path]:
    if dataset not in LOCAL_ONLY:
        _check_dataset(dataset)
        if dataset not in DATASET_NAMES:
            raise DataError(f"dataset {dataset!r} is not in IDX files; its plugin reads it")
    if split not in _SPLIT_FILES:
        raise DataError(f"unknown split {split!r} for dataset {dataset!r}; known splits: train, test")
    find = local_file if dataset in LOCAL_ONLY else resolve_file
    return [find(dataset, name) for name in _SPLIT_FILES[split]]


def _expected_sha256(dataset: str, filename: str) -> str:
    files = _check_dataset(dataset)["files"]
    if filename not in files:
        raise DataError(
            f"unknown data file {filename!r} for dataset {dataset!r}; known files: {', '.join(sorted(files))}"
        )
    return files[filename][0]


def _sha256(path: Path) -> str:
    """SHA-256 of ``path`` computed in 1 MiB chunks, memoized per (path, size, mtime_ns) in this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _HASH_MEMO.get(key)
    if digest is None:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = _HASH_MEMO[key] = h.hexdigest()
    return digest


def _refuse_other_than_file(path: Path) -> None:
    """DataError when something other than a regular file (a FIFO, a device, a folder) is at ``path``: it was
    reported as a missing file (or a FIFO read for ever)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return  # absent: the caller says what is missing
    if not stat.S_ISREG(mode):
        raise DataError(f"data file {path} {not_regular(mode)}; put the data file itself there")


def _verifies(path: Path, expected: str) -> bool:
    try:
        return _sha256(path) == expected
    except OSError:
        return False


def data_cache_dir() -> Path:
    """The download cache root: ``$RBENCH_DATA_CACHE`` if set, else ``<user cache dir of rbench>/data``."""
    env = os.environ.get("RBENCH_DATA_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("rbench")) / "data"


def _mirror_urls(dataset: str, filename: str) -> list[str]:
    base = os.environ.get("RBENCH_DATA_MIRROR")
    if base:
        return [f"{base.rstrip('/')}/{dataset}/{filename}"]
    return [f"{m.rstrip('/')}/{filename}" for m in _REGISTRY[dataset]["mirrors"]]


def _download(dataset: str, filename: str, target: Path, expected: str, user_dir: str | None = None) -> Path:
    """Download ``filename`` into ``target`` (under its lock); on failure leave nothing behind (but the lock file,
    which filelock keeps: removing it could let a second process take a lock the first still holds). The error
    names ``RBENCH_DATA``'s folder (``user_dir``) where it was searched."""
    import pooch

    pooch.get_logger().setLevel("WARNING")  # its "Downloading data from ..." line: errors stay one line
    urls = _mirror_urls(dataset, filename)
    folder = target.parent
    before = {p.name for p in folder.iterdir() if p.name.startswith("tmp")}
    failures = []
    for url in urls:
        try:
            got = pooch.retrieve(
                url, known_hash=f"sha256:{expected}", fname=filename, path=folder, progressbar=False
            )
            return Path(got)
        except (ValueError, OSError) as err:  # requests' exceptions derive from OSError
            failures.append(f"{url}: {type(err).__name__}: {_one_line(err)}")
    # Clean up the target and any pooch temp files this call created (pooch normally removes them).
    target.unlink(missing_ok=True)
    for p in folder.iterdir():
        if p.name.startswith("tmp") and p.name not in before and p.is_file():
            p.unlink(missing_ok=True)
    raise DataError(
        f"could not download data file {dataset}/{filename} (tried {len(urls)} URL(s)): "
        + "; ".join(failures)
        + (f"; {Path(user_dir) / dataset} (RBENCH_DATA) has no {filename}: put the file there, or set "
           "RBENCH_DATA_MIRROR to a working mirror" if user_dir else
           "; set RBENCH_DATA to a folder holding the files or RBENCH_DATA_MIRROR to a working mirror")
    )


def resolve_file(dataset: str, filename: str) -> Path:
    """Return the path of a verified local copy of ``<dataset>/<filename>``, downloading it if needed.

    Order: ``$RBENCH_DATA/<dataset>/<filename>`` (must verify, else DataError naming the path), then the
    cache ``data_cache_dir()/<dataset>/<filename>`` (a corrupt copy is deleted and re-fetched), then a
    download (``$RBENCH_DATA_MIRROR`` or the canonical mirrors) unless ``RBENCH_OFFLINE=1``. The returned
    file's SHA-256 always matches the registry. Raises DataError on any failure.
    """
    expected = _expected_sha256(dataset, filename)
    user_dir = _user_dir()
    if user_dir:
        candidate = Path(user_dir) / dataset / filename
        _refuse_other_than_file(candidate)
        if candidate.is_file():
            try:
                matches = _sha256(candidate) == expected
            except OSError as exc:  # readable or not is not corrupt or not: say which
                raise DataError(f"data file {candidate}: {os_problem(exc)}") from None
            if not matches:
                raise DataError(
                    f"data file {candidate} is corrupt (SHA-256 does not match the known hash {expected}); "
                    "replace it with the canonical file or remove it"
                )
            return candidate

    target = data_cache_dir() / dataset / filename
    if target.is_file() and _verifies(target, expected):
        return target
    if flag("RBENCH_OFFLINE", DataError):
        where = f"in {Path(user_dir) / dataset} or " if user_dir else ""
        cached = ""
        if target.is_file():  # a copy that did not verify (an audit read "missing" for it): corrupt or unreadable
            try:
                _sha256(target)
                cached = f": the cache's {target.name} is corrupt (SHA-256 does not match {expected})"
            except OSError as exc:
                cached = f": the cache's {target.name}: {os_problem(exc)}"
        state = "has no intact copy" if cached else "is missing"
        raise DataError(
            f"data file {dataset}/{filename} {state} ({where}in the cache {target.parent}{cached}) and "
            "RBENCH_OFFLINE=1 forbids downloading it; set RBENCH_DATA to a folder holding "
            f"{dataset}/{filename}"
        )

    from filelock import FileLock

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create data cache folder {target.parent}: {_one_line(err)}") from err
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            if _verifies(target, expected):  # another process downloaded it meanwhile
                return target
            target.unlink(missing_ok=True)
        path = _download(dataset, filename, target, expected, user_dir)
    return path


def load_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes (type code 0x08) into a read-only uint8 array.

    The header (two zero bytes, type code, number of dimensions, big-endian uint32 sizes) is validated;
    a bad magic number, unsupported type, undecodable gzip stream or size mismatch raises DataError
    naming the file.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read IDX file {path}: {_one_line(err)}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"IDX file {path} has a bad magic number; it is not an IDX file, replace it")
    if raw[2] != 0x08:
        raise DataError(
            f"IDX file {path} has data type code 0x{raw[2]:02x}; only 0x08 (unsigned byte) is supported"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header; replace it")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(
            f"IDX file {path} holds {len(raw) - header} data bytes but its header {dims} needs {expected}; "
            "replace it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def idx_dims(path: Path) -> tuple[int, ...]:
    """The dimensions in the header of a gzipped IDX file, decompressing only the header (cheap at any size);
    DataError naming the file if it cannot be read or has no valid header."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(4)
            if len(head) == 4 and head[0] == 0 and head[1] == 0:
                head += f.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read IDX file {path}: {_one_line(err)}") from err
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DataError(f"IDX file {path} has a bad magic number; it is not an IDX file, replace it")
    if len(head) < 4 + 4 * head[3]:
        raise DataError(f"IDX file {path} is truncated inside its header; replace it")
    return tuple(int(d) for d in np.frombuffer(head, dtype=">u4", count=head[3], offset=4))


def _local_split_paths(dataset: str, split: str) -> list[Path]:
    """Where a :data:`LOCAL_ONLY` dataset's split files (images, labels) are looked for: ``$RBENCH_DATA/<dataset>/``
    (none when RBENCH_DATA is unset); they may be absent (planning and validation go on without them: the data
    check before any work names what is missing, :func:`_user_dir` a folder that is not there)."""
    user_dir = os.environ.get("RBENCH_DATA")
    return [Path(user_dir) / dataset / name for name in _SPLIT_FILES[split]] if user_dir else []


def split_size(dataset: str, split: str) -> int | None:
    """The number of images of ``split`` without decoding it, or None if unknown: 60000 / 10000 for MNIST and
    Fashion-MNIST; for a :data:`LOCAL_ONLY` dataset, the count in the header of its local images file (None
    when the file is absent or its header unreadable: :func:`load_split` then says why)."""
    if split not in _SPLIT_FILES:
        return None
    if dataset in LOCAL_ONLY:
        paths = _local_split_paths(dataset, split)
        path = paths[0] if paths else None
        if path is None or not path.is_file():
            return None
        try:
            dims = idx_dims(path)
        except DataError:
            return None
        return dims[0] if dims else None
    return _SPLIT_SIZES[split] if dataset in DATASET_NAMES else None


@functools.lru_cache(maxsize=8)
def _load_split_cached(dataset: str, images_path: str, labels_path: str, signature: tuple[int, ...] = ()
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The decoded split; ``signature`` (the files' sizes and modification times) only keys the cache, so files
    replaced while the process lives are read again."""
    images = load_idx(Path(images_path))
    labels_raw = load_idx(Path(labels_path))
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"IDX file {images_path} has shape {images.shape}, expected (N, 28, 28); replace it")
    if images.shape[0] == 0:
        raise DataError(f"IDX file {images_path} holds no images; replace it")
    if labels_raw.ndim != 1 or labels_raw.shape[0] != images.shape[0]:
        raise DataError(
            f"IDX file {labels_path} has shape {labels_raw.shape}, expected ({images.shape[0]},) to match "
            f"{images_path}; replace it"
        )
    bad = np.flatnonzero(labels_raw >= NUM_CLASSES)
    if bad.size:
        raise DataError(
            f"IDX file {labels_path} has labels outside 0-{NUM_CLASSES - 1}: {bad.size} of {labels_raw.size} (the "
            f"first: {labels_raw[bad[0]]} at index {bad[0]}); replace it"
        )
    labels = labels_raw.astype(np.int64)
    labels.flags.writeable = False
    return images, labels


def load_split(dataset: str, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)`` of one split: uint8 ``(N, 28, 28)`` and int64 ``(N,)``, both read-only.

    N is 60000 for ``"train"`` and 10000 for ``"test"``. The arrays are cached in-process per dataset and
    resolved file paths (so changing ``RBENCH_DATA`` takes effect); ``load_split.cache_clear()`` empties
    the cache. Unknown dataset or split names raise DataError. A :data:`LOCAL_ONLY` dataset has any N > 0.
    Files whose images are not (N, 28, 28), whose labels are not N values in 0-9, raise DataError.
    """
    images_path, labels_path = _split_paths(dataset, split)
    stats = [path.stat() for path in (images_path, labels_path)]
    signature = tuple(v for st in stats for v in (st.st_size, st.st_mtime_ns, st.st_ino))
    return _load_split_cached(dataset, str(images_path), str(labels_path), signature)


#: the content digest of a local split whose files are absent: keys no stored output can have (nothing is computed
#: without the files), never those of a slice made before digests entered the keys
ABSENT = "absent"


def content_digest(dataset: str, split: str) -> str | None:
    """The SHA-256 of a :data:`LOCAL_ONLY` dataset's split files (images, then labels), which nothing else vouches
    for, so that job keys see their content; None for a checksummed dataset (its registry pins the content);
    :data:`ABSENT` for files that are absent or unreadable (the run's data check then says so, before any work)."""
    if dataset not in LOCAL_ONLY or split not in _SPLIT_FILES:
        return None
    paths = _local_split_paths(dataset, split)
    if not paths or not all(path.is_file() for path in paths):
        return ABSENT
    try:
        return hashlib.sha256("".join(_sha256(path) for path in paths).encode()).hexdigest()
    except OSError:
        return ABSENT


def split_files(dataset: str, split: str) -> list[Path]:
    """Resolve (verify, or download) the files of one split without decoding them; DataError if impossible."""
    return _split_paths(dataset, split)


def check_split(dataset: str, split: str) -> None:
    """Make sure ``split`` can be loaded, or DataError naming the file: a checksummed dataset's files are
    resolved and verified (their SHA-256 vouches for the content); a :data:`LOCAL_ONLY` dataset's files, which
    nothing vouches for, are decoded and checked (IDX headers, (N, 28, 28) images, N labels in 0-9)."""
    if dataset in LOCAL_ONLY:
        load_split(dataset, split)  # type: ignore[arg-type]
    else:
        split_files(dataset, split)


load_split.cache_clear = _load_split_cached.cache_clear  # type: ignore[attr-defined]


def disjoint_splits(n_total: int, sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Consecutive chunks of ``np.random.default_rng(seed).permutation(n_total)`` of the given sizes.

    Each chunk is sorted ascending (int64); chunks are pairwise disjoint. ``sum(sizes) > n_total`` or a
    negative size raises DataError.
    """
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes):
        raise DataError(f"split sizes must be non-negative, got {sizes}")
    if sum(sizes) > n_total:
        raise DataError(
            f"split sizes {sizes} add up to {sum(sizes)}, more than the {n_total} samples available"
        )
    perm = np.random.default_rng(seed).permutation(n_total)
    out, start = [], 0
    for s in sizes:
        out.append(np.sort(perm[start : start + s]).astype(np.int64))
        start += s
    return out


def subset_indices(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """Sorted int64 indices of ``n`` of ``n_total`` samples: the first ``n`` of a seeded permutation.

    ``n=None`` means all samples (``np.arange(n_total)``). Equals ``disjoint_splits(n_total, [n], seed)[0]``.
    ``n > n_total`` raises DataError.
    """
    if n is None:
        return np.arange(n_total, dtype=np.int64)
    if n > n_total:
        raise DataError(f"requested {n} samples but only {n_total} are available")
    return disjoint_splits(n_total, [n], seed)[0]
