"""The store's direct HDF5 reads give what h5py's high-level API gives, and the checksums it remembers from verified
loads follow the files (a replaced file is read again)."""

from __future__ import annotations

import h5py
import numpy as np
import torch

from rbench.artifacts import Predictions
from rbench.keys import content_key
from rbench.store import CHECKSUM_ATTR, META_ATTR, Store, read_h5, read_h5_attribute

SPEC = {"kind": "test", "n": 2}
KEY = content_key(SPEC)


def high_level(path) -> tuple[dict, object, object]:
    """The reference: every dataset as ``dataset[()]`` and the two attributes, through ``h5py.File``."""
    arrays: dict = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return arrays, f.attrs[META_ATTR], f.attrs[CHECKSUM_ATTR]


def test_direct_reads_equal_h5py_high_level_reads(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x_adv": rng.random((3, 1, 4, 4), dtype=np.float32),
        "logits": rng.normal(size=(3, 10)),  # float64
        "success": np.array([True, False, True]),
        "labels": np.arange(3, dtype=np.int64),
        "steps": np.arange(3, dtype=np.int32),
        "bytes": np.arange(3, dtype=np.uint8),
        "half": np.ones(3, dtype=np.float16),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "distortion/l2": rng.random(3, dtype=np.float32),  # in a group
        "distortion/linf": rng.random(3, dtype=np.float32),
    }
    store = Store(tmp_path)
    store.save_arrays(KEY, arrays, {"key": KEY, "spec": SPEC, "kind": "advset", "label": "caf\u00e9"})
    path = store.paths(KEY)[0]
    with h5py.File(path, "a") as f:  # what the store never writes, read the high-level way
        f.create_dataset("scalar", data=np.float32(2.5))
        f.create_dataset("names", data=np.array([b"a", b"bc"]))
    fast, meta, checksum = read_h5(path)
    ref, ref_meta, ref_checksum = high_level(path)
    assert sorted(fast) == sorted(ref) == sorted([*arrays, "scalar", "names"])
    for name, value in ref.items():
        assert type(fast[name]) is type(value), name
        assert fast[name].dtype == value.dtype and fast[name].shape == value.shape, name
        assert np.array_equal(fast[name], value), name
    assert (meta, checksum) == (ref_meta, ref_checksum) and type(meta) is type(ref_meta) is str
    assert read_h5_attribute(path, CHECKSUM_ATTR) == ref_checksum


def test_a_remembered_checksum_follows_a_replaced_file(tmp_path):
    store = Store(tmp_path)
    first = Predictions(np.zeros((2, 3), dtype=np.float32), np.arange(2), np.arange(2), {"key": KEY, "spec": SPEC})
    store.save_predictions(KEY, first)
    store.load_predictions(KEY)  # verified: its checksum is remembered
    before = store.checksum(KEY)
    assert before == Store(tmp_path).checksum(KEY)  # a store object that remembers nothing reads the same
    second = Predictions(np.ones((2, 3), dtype=np.float32), np.arange(2), np.arange(2), {"key": KEY, "spec": SPEC})
    store.save_predictions(KEY, second)  # another file under the key
    assert store.checksum(KEY) == Store(tmp_path).checksum(KEY) != before


def test_a_remembered_checkpoint_checksum_follows_its_sidecar(tmp_path):
    store = Store(tmp_path)
    store.save_checkpoint(KEY, {"w": torch.zeros(2)}, {"key": KEY, "spec": SPEC})
    store.load_checkpoint(KEY)
    before = store.checksum(KEY)
    store.save_checkpoint(KEY, {"w": torch.ones(2)}, {"key": KEY, "spec": SPEC})
    assert store.checksum(KEY) == Store(tmp_path).checksum(KEY) != before
