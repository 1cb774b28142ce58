"""The store's direct HDF5 reads give what h5py's high-level API gives, and the checksums it remembers from verified
loads follow the files (a replaced file is read again)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from rbench.artifacts import Predictions
from rbench.keys import content_key
from rbench.store import CHECKSUM_ATTR, META_ATTR, Store, arrays_digest, read_h5, read_h5_attribute

SPEC = {"kind": "test", "n": 2}
KEY = content_key(SPEC)


def high_level(path) -> tuple[dict, object, object]:
    """The reference: every dataset as ``dataset[()]`` and the two attributes, through ``h5py.File``."""
    arrays: dict = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        meta = arrays.pop(META_ATTR).tobytes().decode() if META_ATTR in arrays else _text(f.attrs[META_ATTR])
        return arrays, meta, _text(f.attrs[CHECKSUM_ATTR])


def _text(value: object) -> object:
    """A string attribute as ``str``: h5py gives a fixed-length one (what the store writes) as bytes."""
    return value.decode() if isinstance(value, bytes) else value


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


def test_a_stored_set_holds_no_variable_length_data_and_older_sets_still_load(tmp_path):
    """A variable-length string lives in the HDF5 global heap, where one flipped bit of a length sent libhdf5 into
    a loop no signal stops; the store writes none (metadata as a byte dataset, even past the 64 KiB an attribute
    holds; the checksum a fixed-length attribute). Sets written before, with string attributes, still load."""
    store = Store(tmp_path)
    spec = {"kind": "test", "source": "x" * 100_000}  # a checkpoint model's spec records its source
    key = content_key(spec)
    arrays = {"logits": np.zeros((2, 3), dtype=np.float32)}
    store.save_arrays(key, arrays, {"key": key, "spec": spec, "kind": "predictions"})
    types = []
    with h5py.File(store.paths(key)[0], "r") as f:
        f.visititems(lambda name, obj: types.append(obj.dtype) if isinstance(obj, h5py.Dataset) else None)
        types += [f.attrs.get_id(name).dtype for name in f.attrs]
    assert len(types) == 3
    assert all(h5py.check_vlen_dtype(t) is None and getattr(h5py.check_string_dtype(t), "length", 1) is not None
               for t in types)
    loaded, meta, _ = read_h5(store.paths(key)[0])
    assert json.loads(meta)["spec"] == spec and list(loaded) == ["logits"]

    old_key = content_key(SPEC)
    old_meta = json.dumps({"key": old_key, "spec": SPEC, "kind": "predictions"})
    path = store.root / "objects" / old_key[:2] / f"{old_key}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:  # as the store wrote until 2026-12-01: variable-length string attributes
        f.create_dataset("logits", data=arrays["logits"])
        f.attrs[META_ATTR] = old_meta
        f.attrs[CHECKSUM_ATTR] = arrays_digest(arrays, old_meta)
    assert h5py.check_vlen_dtype(h5py.File(path, "r").attrs.get_id(META_ATTR).dtype) is str
    assert store._load_h5(old_key, lambda a, m: m, "predictions")["key"] == old_key
    assert store.recorded_meta(old_key)["kind"] == store.recorded_meta(key)["kind"] == "predictions"


def test_an_older_set_changed_since_it_was_checked_is_not_parsed(tmp_path):
    """A set in the older format (string attributes: the heap whose corruption can hang libhdf5) whose bytes differ
    from those its gate memo recorded when it last passed every check is quarantined without its metadata being
    read: no current rbench writes that format, so changed bytes are damage. Unchanged, or with no memo, it loads."""
    import hashlib

    from rbench.store import CorruptEntry

    store = Store(tmp_path)
    key = content_key(SPEC)
    path = store.root / "objects" / key[:2] / f"{key}.h5"
    path.parent.mkdir(parents=True)
    arrays = {"logits": np.zeros((2, 3), dtype=np.float32)}

    def write_old(label: str) -> None:
        meta = json.dumps({"key": key, "spec": SPEC, "kind": "predictions", "label": label})
        with h5py.File(path, "w") as f:
            f.create_dataset("logits", data=arrays["logits"])
            f.attrs[META_ATTR] = meta
            f.attrs[CHECKSUM_ATTR] = arrays_digest(arrays, meta)

    write_old("first")
    store.write_gate_stamp(key, {"key": key, "file": hashlib.sha256(path.read_bytes()).hexdigest()})
    assert Store(tmp_path)._load_h5(key, lambda a, m: m, "predictions")["label"] == "first"
    write_old("second")  # other bytes, still a well-formed set: only the memo tells
    assert Store(tmp_path).recorded_meta(key) == {}
    with pytest.raises(CorruptEntry, match="bytes changed since it last passed every check"):
        Store(tmp_path)._load_h5(key, lambda a, m: m, "predictions")
