"""Tests for rbench.data: resolution order, verification, downloads from a local HTTP server, subsets."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from rbench import data
from rbench.errors import DataError

SHARED_DATA = Path(
    os.environ.get("RBENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
SMALL = "t10k-labels-idx1-ubyte.gz"

needs_data = pytest.mark.skipif(
    not (SHARED_DATA / "mnist" / SMALL).is_file(), reason=f"shared data not found at {SHARED_DATA}"
)


class _Server:
    """A local HTTP server over a directory that counts the requests it serves."""

    def __init__(self, directory: Path):
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def server():
    srv = _Server(SHARED_DATA)
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("RBENCH_DATA", "RBENCH_DATA_MIRROR", "RBENCH_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RBENCH_DATA_CACHE", str(tmp_path / "cache"))
    data.load_split.cache_clear()
    yield
    data.load_split.cache_clear()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _leftovers(folder: Path, name: str) -> list[str]:
    """Files in ``folder`` that are the target, a partial of it, or a temp file (the lock file excepted)."""
    if not folder.exists():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name != name + ".lock" and (name in p.name or p.name.startswith("tmp"))
    )


def _expected(dataset: str, filename: str) -> str:
    for line in (SHARED_DATA / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split()
        if rel == f"{dataset}/{filename}":
            return digest
    raise AssertionError(f"{dataset}/{filename} not in SHA256SUMS")


@needs_data
def test_load_from_rbench_data(monkeypatch):
    monkeypatch.setenv("RBENCH_DATA", str(SHARED_DATA))
    monkeypatch.setenv("RBENCH_OFFLINE", "1")
    x_tr, y_tr = data.load_split("mnist", "train")
    x_te, y_te = data.load_split("mnist", "test")
    assert x_tr.shape == (60000, 28, 28) and x_te.shape == (10000, 28, 28)
    assert y_tr.shape == (60000,) and y_te.shape == (10000,)
    assert x_tr.dtype == np.uint8 and y_tr.dtype == np.int64
    assert y_tr.min() == 0 and y_tr.max() == 9 and set(np.unique(y_te)) == set(range(10))
    assert y_tr[0] == 5 and y_te[0] == 7
    assert x_tr.max() == 255 and x_tr.min() == 0
    assert data.load_split("mnist", "train")[0] is x_tr  # cached in-process
    assert data.resolve_file("mnist", SMALL) == SHARED_DATA / "mnist" / SMALL
    assert not (Path(os.environ["RBENCH_DATA_CACHE"]) / "mnist").exists()  # nothing downloaded


@needs_data
def test_load_fashion_test_split(monkeypatch):
    monkeypatch.setenv("RBENCH_DATA", str(SHARED_DATA))
    x, y = data.load_split("fashion-mnist", "test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * 10


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match="mnist, fashion-mnist"):
        data.load_split("cifar", "train")
    with pytest.raises(DataError, match="split"):
        data.load_split("mnist", "val")
    with pytest.raises(DataError, match="unknown data file"):
        data.resolve_file("mnist", "nope.gz")
    assert data.DATASET_NAMES == ("mnist", "fashion-mnist")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RBENCH_DATA_CACHE", str(tmp_path / "x"))
    assert data.data_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("RBENCH_DATA_CACHE")
    assert data.data_cache_dir().name == "data"


@needs_data
def test_download_from_mirror(monkeypatch, server):
    monkeypatch.setenv("RBENCH_DATA_MIRROR", server.url + "/")
    cache = Path(os.environ["RBENCH_DATA_CACHE"])
    server.requests.clear()
    path = data.resolve_file("mnist", SMALL)
    assert path == cache / "mnist" / SMALL
    assert _sha256(path) == _expected("mnist", SMALL)
    assert server.requests == [f"/mnist/{SMALL}"]
    assert data.resolve_file("mnist", SMALL) == path
    assert server.requests == [f"/mnist/{SMALL}"]  # second resolve served from the cache
    assert _leftovers(cache / "mnist", SMALL) == [SMALL]


@needs_data
def test_load_split_via_download(monkeypatch, server):
    monkeypatch.setenv("RBENCH_DATA_MIRROR", server.url)
    x, y = data.load_split("mnist", "test")
    assert x.shape == (10000, 28, 28) and y[0] == 7


@needs_data
def test_checksum_failure_leaves_nothing(monkeypatch, tmp_path):
    bad_root = tmp_path / "bad"
    (bad_root / "mnist").mkdir(parents=True)
    raw = bytearray((SHARED_DATA / "mnist" / SMALL).read_bytes())
    for i in (100, 200, 300):
        raw[i] ^= 0xFF
    (bad_root / "mnist" / SMALL).write_bytes(bytes(raw))
    bad = _Server(bad_root)
    try:
        monkeypatch.setenv("RBENCH_DATA_MIRROR", bad.url)
        with pytest.raises(DataError) as exc:
            data.resolve_file("mnist", SMALL)
    finally:
        bad.close()
    msg = str(exc.value)
    assert SMALL in msg and bad.url in msg and "hash" in msg.lower() and "\n" not in msg
    assert bad.requests == [f"/mnist/{SMALL}"]
    assert _leftovers(Path(os.environ["RBENCH_DATA_CACHE"]) / "mnist", SMALL) == []


def test_unreachable_mirror(monkeypatch):
    url = _closed_port_url()
    monkeypatch.setenv("RBENCH_DATA_MIRROR", url)
    with pytest.raises(DataError) as exc:
        data.resolve_file("mnist", SMALL)
    msg = str(exc.value)
    assert "\n" not in msg and SMALL in msg and f"{url}/mnist/{SMALL}" in msg
    assert _leftovers(Path(os.environ["RBENCH_DATA_CACHE"]) / "mnist", SMALL) == []


def test_http_404(monkeypatch, tmp_path):
    empty = _Server(tmp_path)
    try:
        monkeypatch.setenv("RBENCH_DATA_MIRROR", empty.url)
        with pytest.raises(DataError, match="404") as exc:
            data.resolve_file("fashion-mnist", SMALL)
    finally:
        empty.close()
    assert "\n" not in str(exc.value)


def test_offline_makes_no_request(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network used while RBENCH_OFFLINE=1")

    import pooch

    monkeypatch.setattr(pooch, "retrieve", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("RBENCH_OFFLINE", "1")
    monkeypatch.setenv("RBENCH_DATA_MIRROR", _closed_port_url())
    with pytest.raises(DataError, match="RBENCH_DATA") as exc:
        data.resolve_file("mnist", SMALL)
    assert "\n" not in str(exc.value) and "RBENCH_OFFLINE" in str(exc.value)


@needs_data
def test_offline_uses_cache(monkeypatch, server):
    monkeypatch.setenv("RBENCH_DATA_MIRROR", server.url)
    path = data.resolve_file("mnist", SMALL)
    monkeypatch.setenv("RBENCH_OFFLINE", "1")
    assert data.resolve_file("mnist", SMALL) == path


@needs_data
def test_corrupt_file_in_rbench_data(monkeypatch, tmp_path, server):
    root = tmp_path / "mydata"
    shutil.copytree(SHARED_DATA / "mnist", root / "mnist")
    bad = root / "mnist" / SMALL
    bad.chmod(0o644)
    with bad.open("r+b") as f:
        f.truncate(1000)
    monkeypatch.setenv("RBENCH_DATA", str(root))
    monkeypatch.setenv("RBENCH_DATA_MIRROR", server.url)  # a download would succeed: must not be used
    server.requests.clear()
    with pytest.raises(DataError) as exc:
        data.resolve_file("mnist", SMALL)
    assert str(bad) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(DataError, match=str(bad)):
        data.load_split("mnist", "test")
    assert server.requests == []


@needs_data
def test_missing_file_in_rbench_data_falls_back(monkeypatch, tmp_path, server):
    (tmp_path / "empty" / "mnist").mkdir(parents=True)
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("RBENCH_DATA_MIRROR", server.url)
    path = data.resolve_file("mnist", SMALL)
    assert path == Path(os.environ["RBENCH_DATA_CACHE"]) / "mnist" / SMALL


@needs_data
def test_corrupt_cache_file_redownloaded(monkeypatch, server):
    monkeypatch.setenv("RBENCH_DATA_MIRROR", server.url)
    target = Path(os.environ["RBENCH_DATA_CACHE"]) / "mnist" / SMALL
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the real file")
    server.requests.clear()
    assert data.resolve_file("mnist", SMALL) == target
    assert _sha256(target) == _expected("mnist", SMALL)
    assert server.requests == [f"/mnist/{SMALL}"]


def test_offline_with_a_corrupt_cached_copy_says_corrupt(monkeypatch):
    """Offline, a cached copy that fails its checksum was reported "missing"; and a download that failed while
    RBENCH_DATA was set told the user to set RBENCH_DATA (an audit's two lows)."""
    target = Path(os.environ["RBENCH_DATA_CACHE"]) / "mnist" / SMALL
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the real file")
    monkeypatch.setenv("RBENCH_OFFLINE", "1")
    with pytest.raises(DataError) as exc:
        data.resolve_file("mnist", SMALL)
    assert f"has no intact copy (in the cache {target.parent}: the cache's {SMALL} is corrupt (SHA-256 does not " \
        f"match {_expected('mnist', SMALL)})) and RBENCH_OFFLINE=1 forbids downloading it" in str(exc.value)
    assert target.read_bytes() == b"not the real file"  # offline: left for the user to see, nothing fetched


def test_a_failed_download_names_the_rbench_data_folder_searched(monkeypatch, tmp_path):
    (tmp_path / "mine").mkdir()
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("RBENCH_DATA_MIRROR", _closed_port_url())
    with pytest.raises(DataError) as exc:
        data.resolve_file("mnist", SMALL)
    assert str(exc.value).endswith(f"; {tmp_path / 'mine' / 'mnist'} (RBENCH_DATA) has no {SMALL}: put the file "
                                   "there, or set RBENCH_DATA_MIRROR to a working mirror"), str(exc.value)


@needs_data
def test_load_idx_rejects_bad_header(tmp_path):
    import gzip

    bad_magic = tmp_path / "magic.gz"
    bad_magic.write_bytes(gzip.compress(b"\x01\x02\x08\x01\x00\x00\x00\x02ab"))
    with pytest.raises(DataError, match="magic"):
        data.load_idx(bad_magic)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05ab"))
    with pytest.raises(DataError, match=str(short)):
        data.load_idx(short)
    not_gz = tmp_path / "plain.gz"
    not_gz.write_bytes(b"hello")
    with pytest.raises(DataError, match=str(not_gz)):
        data.load_idx(not_gz)
    ok = tmp_path / "ok.gz"
    ok.write_bytes(gzip.compress(b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03abcdef"))
    assert data.load_idx(ok).tolist() == [[97, 98, 99], [100, 101, 102]]


def test_subset_indices_deterministic():
    a = data.subset_indices(1000, 100, seed=0)
    assert a.dtype == np.int64 and a.shape == (100,)
    assert np.array_equal(a, data.subset_indices(1000, 100, seed=0))
    assert not np.array_equal(a, data.subset_indices(1000, 100, seed=1))
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 1000
    assert np.array_equal(a, np.sort(np.random.default_rng(0).permutation(1000)[:100]))
    assert np.array_equal(data.subset_indices(50, None, seed=3), np.arange(50))
    with pytest.raises(DataError):
        data.subset_indices(10, 11, seed=0)


def test_disjoint_splits():
    parts = data.disjoint_splits(1000, [100, 200, 300], seed=7)
    assert [len(p) for p in parts] == [100, 200, 300]
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == len(joined) == 600
    assert np.array_equal(parts[0], data.subset_indices(1000, 100, seed=7))
    assert np.array_equal(data.disjoint_splits(1000, [100, 200, 300], seed=7)[2], parts[2])
    assert len(np.unique(np.concatenate(data.disjoint_splits(10, [4, 6], seed=1)))) == 10
    with pytest.raises(DataError):
        data.disjoint_splits(10, [5, 6], seed=0)


def test_split_size_without_decoding(monkeypatch, tmp_path):
    import gzip
    import struct

    assert data.split_size("mnist", "train") == 60000 and data.split_size("mnist", "test") == 10000
    assert data.split_size("fashion-mnist", "test") == 10000
    assert data.split_size("cifar", "test") is None and data.split_size("mnist", "val") is None
    assert data.split_size("notmnist", "test") is None  # RBENCH_DATA is not set
    folder = tmp_path / "notmnist"
    folder.mkdir()
    # a header that promises 123456 images followed by far fewer bytes: the size comes from the header alone
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" +
                                                                     struct.pack(">3I", 123456, 28, 28) + b"x"))
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path))
    assert data.split_size("notmnist", "test") == 123456 and data.split_size("notmnist", "train") is None
    assert data.idx_dims(folder / "t10k-images-idx3-ubyte.gz") == (123456, 28, 28)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00"))
    with pytest.raises(DataError, match="truncated inside its header"):
        data.idx_dims(bad)
    bad.write_bytes(b"plain")
    with pytest.raises(DataError, match=f"cannot read IDX file {bad}"):
        data.idx_dims(bad)


def test_labels_outside_the_classes_are_a_data_error(monkeypatch, tmp_path):
    import gzip
    import struct

    folder = tmp_path / "notmnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" +
                                                                     struct.pack(">3I", 2, 28, 28) + bytes(2 * 784)))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 2) +
                                                                     bytes([3, 10])))
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path))
    with pytest.raises(DataError) as info:
        data.check_split("notmnist", "test")
    assert str(folder / "t10k-labels-idx1-ubyte.gz") in str(info.value)
    assert "labels outside 0-9: 1 of 2 (the first: 10 at index 1)" in str(info.value)


@needs_data
def test_check_split_of_a_checksummed_dataset_does_not_decode(monkeypatch):
    monkeypatch.setenv("RBENCH_DATA", str(SHARED_DATA))
    monkeypatch.setenv("RBENCH_OFFLINE", "1")
    monkeypatch.setattr(data, "load_idx", lambda path: pytest.fail("decoded a checksummed file"))
    data.check_split("mnist", "test")


def test_a_local_datasets_content_enters_the_keys_and_is_checked_when_read(monkeypatch, tmp_path):
    """notMNIST's files are the user's own (nothing vouches for them): their SHA-256 enters the data slice's key,
    so relabelled files give other keys (nothing stored from the old files is served), and a job whose key names
    other content than the files hold refuses to run. MNIST's keys carry no digest (its registry pins it)."""
    import gzip

    import torch

    from rbench.inputs import load_slice
    from rbench.manager import get_registry
    from rbench.specs import Call, DataSlice

    version = get_registry().get("dataset", "notmnist").version  # what a job's key names
    shutil.copytree(SHARED_DATA / "notmnist", tmp_path / "notmnist")
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path))
    data.load_split.cache_clear()
    before = data.content_digest("notmnist", "test")
    assert before is not None and data.content_digest("mnist", "test") is None
    assert data.content_digest("notmnist", "train") == data.ABSENT  # no key made before digests: never stored
    sliced = DataSlice(Call("notmnist", version, {}), "test", 20, 0, content=before)
    assert sliced.to_dict()["content"] == before and DataSlice.from_dict(sliced.to_dict()) == sliced
    mnist = get_registry().get("dataset", "mnist").version
    assert "content" not in DataSlice(Call("mnist", mnist, {}), "test", 20, 0).to_dict()
    x, y, _ = load_slice(sliced)
    assert len(x) == 20

    labels = tmp_path / "notmnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8:] = bytes((label + 1) % 10 for label in raw[8:])  # every label moved to the next letter
    labels.write_bytes(gzip.compress(bytes(raw)))
    after = data.content_digest("notmnist", "test")
    assert after not in (None, before)
    with pytest.raises(DataError, match="data changed since the job was planned"):
        load_slice(sliced)
    _, relabelled, _ = load_slice(DataSlice(Call("notmnist", version, {}), "test", 20, 0, content=after))
    assert not torch.equal(relabelled, y)  # the same process reads the new files (no cache of the old ones)
    data.load_split.cache_clear()


@pytest.mark.parametrize("dataset", ["mnist", "notmnist"])
def test_a_fifo_where_a_data_file_should_be_is_named_as_such(tmp_path, monkeypatch, dataset):
    """It was reported as a missing file (MNIST's then went on to the download cache)."""
    filename = "t10k-labels-idx1-ubyte.gz"
    (tmp_path / dataset).mkdir()
    os.mkfifo(tmp_path / dataset / filename)
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path))
    monkeypatch.setenv("RBENCH_OFFLINE", "1")
    find = data.local_file if dataset == "notmnist" else data.resolve_file
    with pytest.raises(DataError, match=rf"data file .*{dataset}/{filename} is a FIFO, not a regular file"):
        find(dataset, filename)


@pytest.mark.parametrize("break_it, message", [
    (lambda x, y: (x * 255, y), "pixels in [0, 255], not in [0, 1]"),
    (lambda x, y: (x.reshape(len(x), -1), y), "images of shape (6, 784), not (N, 1, 28, 28) as its input_shape says"),
    (lambda x, y: (x, y + 1), "labels in [1, 10], not classes in [0, 9]"),
    (lambda x, y: (np.where(x > 0.5, np.nan, x), y), "non-finite pixels"),
    (lambda x, y: (x, y[:-1]), "one integer label per image (6)"),
    (lambda x, y: (x, y.astype(np.float32)), "labels of dtype float32"),
])
def test_a_split_that_breaks_the_dataset_contract_fails_naming_the_dataset(monkeypatch, break_it, message):
    """Each was blamed on another plugin, or none: pixels in [0, 255] on an attack over its budget, flattened
    images on a corrupt stored set (quarantined on every run), a label 10 of 10 classes on the trainer's
    IndexError, NaN pixels on the model's non-finite logits. The split is checked as it is loaded."""
    import json

    from rbench.dataset import NoParams
    from rbench.errors import PluginContractError
    from rbench.inputs import _load_split
    from rbench.manager import PluginInfo, get_registry

    class Broken:
        name, input_shape, num_classes, splits = "broken_data", (1, 28, 28), 10, ("train", "test")
        Params = NoParams

        def load(self, split, params):
            x = np.random.default_rng(0).random((6, 1, 28, 28), dtype=np.float32)
            x[0, 0, 0, :2] = 0.0, 1.0
            return break_it(x, np.array([0, 9, 1, 2, 3, 4], dtype=np.int64))

    monkeypatch.setitem(get_registry().plugins["dataset"], "broken_data",
                        PluginInfo("dataset", "broken_data", "0", "tests", "tests", Broken()))
    _load_split.cache_clear()
    spec = json.dumps({"plugin": "broken_data", "params": {}})
    with pytest.raises(PluginContractError, match=r"dataset 'broken_data' loaded a train split that breaks the "
                       r"dataset contract: .*" + re.escape(message)) as caught:
        _load_split(spec, "train")
    assert caught.value.plugin == "dataset 'broken_data'"
    _load_split.cache_clear()
