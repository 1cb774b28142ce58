"""The notMNIST dataset plugin: never downloaded; read from $RBENCH_DATA/notmnist/ (MNIST's IDX file names).

notMNIST is not in the shared data folder, so the present-files case writes a tiny synthetic IDX pair into a
temporary RBENCH_DATA (unit test only: suites never use synthetic data)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from rbench.errors import DataError
from rbench.plugins import get_plugin


def _write_idx(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _notmnist():
    plugin = get_plugin("dataset", "notmnist")
    return plugin, plugin.Params()


def test_absent_files_give_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path))
    plugin, params = _notmnist()
    for call in (plugin.load, plugin.prepare):
        with pytest.raises(DataError) as info:
            call("test", params)
        message = str(info.value)
        assert "notmnist/t10k-images-idx3-ubyte.gz" in message and str(tmp_path / "notmnist") in message
        assert "never downloaded" in message and "\n" not in message
    monkeypatch.delenv("RBENCH_DATA")
    with pytest.raises(DataError, match="RBENCH_DATA is not set"):
        plugin.load("train", params)


def test_present_files_load(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (37, 28, 28), dtype=np.uint8)
    images[0] = 255
    labels = rng.integers(0, 10, 37, dtype=np.uint8)
    _write_idx(tmp_path / "notmnist" / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "notmnist" / "t10k-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path))
    plugin, params = _notmnist()
    plugin.prepare("test", params)
    x, y = plugin.load("test", params)
    assert x.shape == (37, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() >= 0 and x.max() == 1.0 and np.array_equal(y, labels)
    assert np.allclose(x[:, 0] * 255, images)
    assert plugin.input_shape == (1, 28, 28) and plugin.num_classes == 10
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):  # only the test split is there
        plugin.load("train", params)
    _write_idx(tmp_path / "other" / "notmnist" / "t10k-images-idx3-ubyte.gz", images[:, :20])  # a bad file
    _write_idx(tmp_path / "other" / "notmnist" / "t10k-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path / "other"))
    with pytest.raises(DataError, match=r"expected \(N, 28, 28\)"):
        plugin.load("test", params)


def _pair(folder: Path, images: np.ndarray, labels: np.ndarray, split_prefix: str = "t10k") -> Path:
    _write_idx(folder / "notmnist" / f"{split_prefix}-images-idx3-ubyte.gz", images)
    _write_idx(folder / "notmnist" / f"{split_prefix}-labels-idx1-ubyte.gz", labels)
    return folder / "notmnist"


GOOD_IMAGES = np.zeros((37, 28, 28), dtype=np.uint8)
GOOD_LABELS = np.arange(37, dtype=np.uint8) % 10


@pytest.mark.parametrize(("variant", "file", "fragment"), [
    ("labels_out_of_range", "labels", "labels outside 0-9: 1 of 37 (the first: 12 at index 3)"),
    ("labels_255", "labels", "labels outside 0-9"),
    ("counts_disagree", "labels", "expected (37,)"),
    ("image_shape", "images", "expected (N, 28, 28)"),
    ("no_images", "images", "holds no images"),
    ("not_gzip", "images", "cannot read IDX file"),
    ("not_idx", "labels", "bad magic number"),
    ("truncated", "images", "data bytes but its header"),
])
def test_prepare_decodes_and_checks_the_local_files(monkeypatch, tmp_path, variant, file, fragment):
    """notMNIST is not checksummed, so ``prepare`` (called before any job) decodes and checks it: a bad file is
    one DataError naming it, not a failure of every job that reads it."""
    from rbench.data import load_split

    load_split.cache_clear()
    images, labels = GOOD_IMAGES.copy(), GOOD_LABELS.copy()
    if variant == "labels_out_of_range":
        labels[3] = 12
    elif variant == "labels_255":
        labels[-1] = 255
    elif variant == "counts_disagree":
        labels = labels[:36]
    elif variant == "image_shape":
        images = np.zeros((37, 28, 20), dtype=np.uint8)
    elif variant == "no_images":
        images, labels = images[:0], labels[:0]
    folder = _pair(tmp_path, images, labels)
    victim = folder / f"t10k-{file}-idx{3 if file == 'images' else 1}-ubyte.gz"
    if variant == "not_gzip":
        victim.write_bytes(b"this is not gzip")
    elif variant == "not_idx":
        victim.write_bytes(gzip.compress(b"\x12\x34\x08\x01" + bytes(8)))
    elif variant == "truncated":
        victim.write_bytes(gzip.compress(gzip.decompress(victim.read_bytes())[:-100]))
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path))
    plugin, params = _notmnist()
    with pytest.raises(DataError) as info:
        plugin.prepare("test", params)
    message = str(info.value)
    assert str(victim) in message and fragment in message and "\n" not in message, message
    load_split.cache_clear()


def test_prepare_accepts_good_files_and_size_reads_the_header(monkeypatch, tmp_path):
    from rbench.data import load_split

    load_split.cache_clear()
    plugin, params = _notmnist()
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path))
    assert plugin.size("test", params) is None  # absent: unknown, not an error (validation reads no data)
    _pair(tmp_path, GOOD_IMAGES, GOOD_LABELS)
    plugin.prepare("test", params)
    assert plugin.size("test", params) == 37 and plugin.size("train", params) is None
    (tmp_path / "notmnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage")
    assert plugin.size("test", params) is None  # an unreadable header: prepare says why, at run time
    monkeypatch.delenv("RBENCH_DATA")
    assert plugin.size("test", params) is None
    load_split.cache_clear()


def test_suite_validation_checks_n_against_the_local_files(monkeypatch, tmp_path):
    from rbench.errors import SuiteError
    from rbench.suite import load_suite

    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\n[datasets.mnist]\nplugin = "mnist"\n[datasets.notmnist]\nplugin = '
                     '"notmnist"\n[models.mlp]\nplugin = "mlp"\ndataset = "mnist"\n[evaluations.ood]\n'
                     'dataset = "notmnist"\nn = 40\nsources = ["mlp"]\n')
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path / "data"))
    assert load_suite(suite).evaluations["ood"].data.n == 40  # files absent: the size is unknown
    _pair(tmp_path / "data", GOOD_IMAGES, GOOD_LABELS)
    with pytest.raises(SuiteError, match=r"evaluations.ood.n: 40 exceeds the 37 images of notmnist/test"):
        load_suite(suite)
