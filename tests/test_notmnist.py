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
