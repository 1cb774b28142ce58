"""Store integrity: every entry is bound to its key, any malformed entry is corrupt (never a crash), nothing
non-finite is stored, links out of the store are refused, locked entries are left alone, a full disk is one
clean error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from rbench.artifacts import Predictions
from rbench.errors import StoreError
from rbench.gc import collect
from rbench.keys import content_key
from rbench.store import CorruptEntry, Store, StoreWriteError, sidecar_digest


def bound(spec: dict, **meta) -> tuple[str, dict]:
    key = content_key(spec)
    return key, {"key": key, "spec": spec, **meta}


def _predictions(store: Store, spec: dict, value: float = 0.5) -> str:
    key, meta = bound(spec)
    store.save_predictions(key, Predictions(np.full((8, 10), value, np.float32), np.arange(8) % 10, np.arange(8),
                                            meta))
    return key


def _checkpoint(store: Store, spec: dict, value: float = 1.0) -> str:
    key, meta = bound(spec)
    store.save_checkpoint(key, {"w": torch.full((4, 4), value)}, meta)
    return key


def _swap(a: Path, b: Path) -> None:
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def test_swapped_predictions_are_not_served_under_each_others_keys(tmp_path):
    store = Store(tmp_path)
    k1, k2 = _predictions(store, {"eps": 0.1}, 0.1), _predictions(store, {"eps": 0.3}, 0.3)
    _swap(store.paths(k1)[0], store.paths(k2)[0])
    for key in (k1, k2):
        with pytest.raises(CorruptEntry, match="another job's entry"):
            Store(tmp_path).load_predictions(key)
    assert not store.has(k1) and not store.has(k2)


def test_swapped_checkpoints_are_not_served_under_each_others_keys(tmp_path):
    store = Store(tmp_path)
    k1, k2 = _checkpoint(store, {"m": 1}, 1.0), _checkpoint(store, {"m": 2}, 2.0)
    for suffix in (".safetensors", ".json"):  # the whole entry, weights and sidecar
        _swap(*(next(p for p in store.paths(k) if p.suffix == suffix) for k in (k1, k2)))
    with pytest.raises(CorruptEntry, match="another job's entry"):
        store.load_checkpoint(k1)
    store2 = Store(tmp_path)
    k3 = _checkpoint(store2, {"m": 3}, 3.0)
    k4 = _checkpoint(store2, {"m": 4}, 4.0)
    _swap(*(next(p for p in store2.paths(k) if p.suffix == ".safetensors") for k in (k3, k4)))  # weights only
    with pytest.raises(CorruptEntry, match="SHA-256"):
        store2.load_checkpoint(k3)


def test_an_entry_must_record_its_key_and_a_spec_that_hashes_to_it(tmp_path):
    store = Store(tmp_path)
    key, meta = bound({"a": 1})
    with pytest.raises(ValueError, match="another job"):
        store.save_checkpoint(key, {"w": torch.zeros(2)}, {**meta, "key": "0" * 40})
    with pytest.raises(ValueError, match="does not hash"):
        store.save_checkpoint(key, {"w": torch.zeros(2)}, {**meta, "spec": {"a": 2}})


def test_edited_metadata_fails_the_checksum(tmp_path):
    store = Store(tmp_path)
    key = _predictions(store, {"eps": 0.1})
    path = store.paths(key)[0]
    with h5py.File(path, "r+") as f:  # the metadata is a byte dataset (no variable-length string: see store.py)
        meta = json.loads(f["rbench_meta"][()].tobytes())
        meta["label"] = "something else"
        del f["rbench_meta"]
        f["rbench_meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with pytest.raises(CorruptEntry, match="SHA-256"):
        Store(tmp_path).load_predictions(key)


def _sidecar(store: Store, key: str) -> tuple[Path, dict]:
    path = next(p for p in store.paths(key) if p.suffix == ".json")
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("edit", ["value", "nan_with_a_checksum"])
def test_a_checkpoints_training_statistics_are_covered_by_its_sidecar_checksum(tmp_path, edit):
    """Per-epoch measurements and training statistics in a sidecar feed tables (``observed``) and curves: an edit
    to them, or a NaN written in with a checksum recomputed around it, makes the entry corrupt, never a served
    number."""
    store = Store(tmp_path)
    key, meta = bound({"m": "stats"})
    store.save_checkpoint(key, {"w": torch.ones(2)}, {**meta, "stats": {"loss": 0.25, "observed": [
        {"epoch": 1, "accuracy": {"value": 0.9}}]}})
    path, sidecar = _sidecar(store, key)
    assert sidecar["meta_sha256"] == sidecar_digest(sidecar)
    assert Store(tmp_path).load_checkpoint(key)[1]["stats"]["observed"][0]["accuracy"]["value"] == 0.9
    if edit == "value":
        sidecar["stats"]["observed"][0]["accuracy"]["value"] = 0.12
    else:
        sidecar["meta_sha256"] = sidecar_digest({**sidecar, "stats": {"loss": 0.25}})
        sidecar["stats"]["observed"][0]["accuracy"]["value"] = float("nan")
    path.write_text(json.dumps(sidecar))
    with pytest.raises(CorruptEntry, match="sidecar's SHA-256" if edit == "value" else "value is nan"):
        Store(tmp_path).load_checkpoint(key)
    assert not store.has(key) and list((tmp_path / "quarantine").iterdir())


def test_a_sidecar_without_its_checksum_is_corrupt(tmp_path):
    """Deleting ``meta_sha256`` made any edit of the statistics pass as a sidecar from before checksums (the store
    audit served a forged per-epoch accuracy of 99.0 that way): such a sidecar is corrupt, recomputed once."""
    store = Store(tmp_path)
    key, meta = bound({"m": "legacy"})
    store.save_checkpoint(key, {"w": torch.ones(2)}, {**meta, "stats": {"loss": 0.5}})
    path, sidecar = _sidecar(store, key)
    del sidecar["meta_sha256"]  # as in every sidecar written before it existed, or removed to pass an edit
    sidecar["stats"]["loss"] = 0.01
    path.write_text(json.dumps(sidecar))
    with pytest.raises(CorruptEntry, match="its sidecar has no SHA-256 of its own"):
        Store(tmp_path).load_checkpoint(key)
    assert not store.has(key) and list((tmp_path / "quarantine").iterdir())


def test_non_finite_training_statistics_are_refused_at_write_time(tmp_path):
    store = Store(tmp_path)
    key, meta = bound({"m": "nan"})
    with pytest.raises(ValueError, match=r"sidecar\.stats\.loss is nan"):
        store.save_checkpoint(key, {"w": torch.ones(2)}, {**meta, "stats": {"loss": float("nan")}})
    assert not store.has(key)


@pytest.mark.parametrize("damage", ["half_weights", "sidecar_list", "sidecar_not_json", "hdf5_without_success",
                                    "hdf5_garbage", "nan_logits", "weights_link"])
def test_malformed_entries_are_corrupt_not_crashes(tmp_path, damage):
    """Entries that pass (or recompute) their checksum but are malformed: CorruptEntry, quarantined, for
    loading and for verify alike."""
    store = Store(tmp_path)
    if damage in ("half_weights", "sidecar_list", "sidecar_not_json", "weights_link"):
        key = _checkpoint(store, {"m": 1})
        weights = next(p for p in store.paths(key) if p.suffix == ".safetensors")
        sidecar = next(p for p in store.paths(key) if p.suffix == ".json")
        meta = json.loads(sidecar.read_text())
        if damage == "half_weights":  # half a safetensors file, with a sidecar hash that matches it
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
            meta["sha256"] = __import__("hashlib").sha256(weights.read_bytes()).hexdigest()
            meta["meta_sha256"] = sidecar_digest(meta)
            sidecar.write_text(json.dumps(meta))
        elif damage == "sidecar_list":
            sidecar.write_text("[]")
        elif damage == "sidecar_not_json":
            sidecar.write_text("{not json")
        else:
            outside = tmp_path.parent / f"{tmp_path.name}-outside.safetensors"
            shutil.copy(weights, outside)
            weights.unlink()
            weights.symlink_to(outside)
        load = store.load_checkpoint
    else:
        key, meta = bound({"set": 1}, kind="advset")
        from rbench.artifacts import AdvSet, distortions

        x = np.zeros((4, 1, 2, 2), np.float32)
        adv = AdvSet(x + 0.1, np.zeros(4, bool), np.arange(4), np.full(4, -1), np.arange(4),
                     distortions(x, x + 0.1), {}, meta)
        store.save_advset(key, adv)
        path = store.paths(key)[0]
        from rbench.store import arrays_digest

        if damage == "hdf5_garbage":
            path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 300)
        else:
            with h5py.File(path, "r+") as f:
                arrays = {}
                if damage == "hdf5_without_success":
                    del f["success"]
                else:
                    data = f["x_adv"][()]
                    data[0, 0, 0, 0] = np.nan
                    del f["x_adv"]
                    f["x_adv"] = data
                f.visititems(lambda n, o: arrays.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
                meta_json = arrays.pop("rbench_meta").tobytes().decode()
                f.attrs["rbench_sha256"] = np.bytes_(arrays_digest(arrays, meta_json).encode())  # a valid checksum
        load = store.load_advset
    with pytest.raises(CorruptEntry) as info:
        load(key)
    assert key in str(info.value) and info.value.moved_to is not None
    assert not store.has(key) and not store.paths(key)
    if damage == "weights_link":
        assert outside.exists()  # the link was moved, not what it points to


def test_verify_reports_malformed_entries_and_leaves_locked_ones(tmp_path):
    store = Store(tmp_path)
    good, bad, busy = _checkpoint(store, {"m": 1}), _checkpoint(store, {"m": 2}), _checkpoint(store, {"m": 3})
    next(p for p in store.paths(bad) if p.suffix == ".json").write_text("[]")
    next(p for p in store.paths(busy) if p.suffix == ".json").unlink()  # a sidecar still being written...
    holder = subprocess.Popen(  # ...by another process, which holds the key's lock
        [os.sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         f"l = FileLock({str(store.root / 'locks' / (busy + '.lock'))!r}); l.acquire(); print('held', flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert store.verify(good) == "ok"
        assert store.verify(busy) == "busy" and store.paths(busy)  # not quarantined while being written
        with pytest.raises(CorruptEntry, match="JSON object"):
            store.verify(bad)
        removed, _ = collect(store, [], None, dry_run=False)  # gc leaves the entry being written alone too
        assert store.paths(busy) and not any(busy in str(p) for p in removed)
    finally:
        holder.kill()
        holder.wait()
    # its writer gone, the weights are an interrupted write: not an entry, not corrupt; gc removes them
    assert store.verify(busy) == "incomplete" and store.paths(busy)
    assert not list((tmp_path / "quarantine").glob(f"{busy}*"))
    collect(store, [], None, dry_run=False)
    assert not store.paths(busy) and store.paths(good)


def test_nothing_non_finite_is_stored(tmp_path):
    store = Store(tmp_path)
    key, meta = bound({"p": 1})
    logits = np.zeros((3, 10), np.float32)
    logits[1, 2] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        store.save_predictions(key, Predictions(logits, np.zeros(3, np.int64), np.arange(3), meta))
    with pytest.raises(ValueError, match="non-finite"):
        store.save_checkpoint(key, {"w": torch.tensor([1.0, float("nan")])}, meta)
    assert not store.paths(key)


@pytest.mark.parametrize("folder", ["quarantine", "objects", "locks", "gates", "leases", "shard"])
def test_a_store_with_linked_folders_is_refused(tmp_path, folder):
    store = Store(tmp_path / "store")
    key = _predictions(store, {"p": 1})
    store.ensure_writable()
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("keep me")
    path = store.paths(key)[0].parent if folder == "shard" else store.root / folder
    shutil.rmtree(path)
    path.symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreError, match="symbolic link"):
        Store(store.root).ensure_writable()
    with pytest.raises(StoreError, match="symbolic link"):
        collect(Store(store.root), [], None, dry_run=False)
    assert victim.read_text() == "keep me"


def test_gc_removes_links_inside_the_quarantine_but_not_their_targets(tmp_path):
    store = Store(tmp_path / "store")
    store.ensure_writable()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    key = "ab" * 20
    moved = store.root / "quarantine" / f"{key}-1700000000-abcdef"  # a folder quarantine() makes
    moved.mkdir()
    (moved / f"{key}.h5").symlink_to(outside, target_is_directory=True)  # entries that were links, moved
    (moved / f"{key}.json").symlink_to(outside / "precious.txt")
    (store.root / "quarantine" / "file-link").symlink_to(outside / "precious.txt")  # not the store's: left
    collect(store, [], None, dry_run=False)
    assert (outside / "precious.txt").read_text() == "keep me"
    assert [p.name for p in (store.root / "quarantine").iterdir()] == ["file-link"]


def test_gc_skips_debris_whose_writer_finished_meanwhile(tmp_path, monkeypatch):
    """A temporary listed by gc, then renamed into place by its writer before gc holds the key's lock, is not an
    error (it was a live write's, now a real entry): gc moves on and removes nothing of it."""
    store = Store(tmp_path / "store")
    store.ensure_writable()
    gone = store.root / "objects" / "ab" / ("ab" + "0" * 38 + ".h5.tmp-1234")
    monkeypatch.setattr(Store, "temporaries", lambda self: [gone])
    assert collect(store, [], None, dry_run=False) == ([], 0)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only; skipped with the reason where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True,
                         text=True)
    if out.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): {out.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_clean_error_and_leaves_nothing(small_disk):
    store = Store(small_disk / "store")
    store.ensure_writable()
    key, meta = bound({"big": 1})
    logits = np.random.default_rng(0).random((200_000, 10), dtype=np.float32)  # 8 MB: does not fit
    with pytest.raises(StoreWriteError, match="MB free"):
        store.save_predictions(key, Predictions(logits, np.zeros(len(logits), np.int64), np.arange(len(logits)),
                                                meta))
    assert not store.paths(key) and not store.temporaries()
    (small_disk / "filler").write_bytes(b"\0" * (2_400_000))  # the disk is now nearly full
    key2, meta2 = bound({"small": 1})
    with pytest.raises(StoreWriteError):
        store.save_checkpoint(key2, {"w": torch.zeros(300_000)}, meta2)
    assert not store.paths(key2) and not store.temporaries()


def test_a_stray_file_among_the_shards_is_ignored_not_a_refused_store(tmp_path):
    """A file a desktop or a user left in objects/ (.DS_Store) holds no entry: every command still works."""
    store = Store(tmp_path / "store")
    key = _predictions(store, {"p": 2})
    (store.root / "objects" / ".DS_Store").write_bytes(b"\0\1")
    Store(store.root).ensure_writable()
    assert Store(store.root).keys() == [key] and Store(store.root).verify(key) == "ok"
    collect(Store(store.root), [], None, dry_run=False)


def _finishes(call, seconds: float = 30.0):
    """``call()``'s outcome (its value, or the exception it raised), or a failure if it is still running after
    ``seconds`` (a daemon thread: a hung read does not hang the test run)."""
    import threading

    box: dict = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "hung (a FIFO opened for reading waits for a writer for ever)"
    return box


@pytest.mark.parametrize("which", ["h5", "sidecar", "weights", "memo"])
def test_a_fifo_in_place_of_a_store_file_is_corrupt_not_a_hang(tmp_path, which):
    """A FIFO where an entry's file or its gate memo should be hung `run`, `cache verify`, `cache ls` and dry runs
    (found by a black-box audit): every store read refuses anything but a regular file without opening it."""
    store = Store(tmp_path)
    if which == "h5":
        key = _predictions(store, {"p": 1})
    else:
        key = _checkpoint(store, {"m": 1})
    path = {"h5": store.paths(key)[0] if which == "h5" else None, "memo": tmp_path / "gates" / f"{key}.json"}.get(
        which) or next(p for p in store.paths(key) if p.suffix == (".json" if which == "sidecar" else ".safetensors"))
    path.unlink(missing_ok=True)
    path.parent.mkdir(exist_ok=True)
    os.mkfifo(path)
    if which == "memo":
        assert _finishes(lambda: store.gate_stamp(key)) == {"value": None}
        return
    assert _finishes(lambda: store.checksum(key)).keys() == {"value"}
    assert _finishes(lambda: store.recorded_meta(key)).keys() == {"value"}
    load = store.load_predictions if which == "h5" else store.load_checkpoint
    outcome = _finishes(lambda: load(key))
    assert isinstance(outcome.get("error"), CorruptEntry) and "not a regular file" in str(outcome["error"])
    assert not store.has(key)  # moved to the quarantine


def test_finished_leases_leave_no_lock_files_once_gc_has_run(tmp_path):
    """Each run left its lease's lock file behind (9 after 8 runs in an audit); gc now removes those no run holds."""
    store = Store(tmp_path)
    store.ensure_writable()
    for _ in range(3):
        with store.lease({"a" * 40}, "run"):
            pass
    leases = tmp_path / "leases"
    with store.lease({"b" * 40}, "live run"):
        assert len(list(leases.glob("*-*.lock"))) == 4
        collect(store, [], None, dry_run=False)
        assert sorted(p.suffix for p in leases.glob("*-*")) == [".json", ".lock"]  # the live one stays
    collect(store, [], None, dry_run=False)
    assert not list(leases.glob("*-*")) and (leases / "registry.lock").exists()


def test_a_killed_runs_temporary_files_go_with_the_next_run_into_its_folder(tmp_path):
    from rbench.rundir import remove_previous_outputs

    (tmp_path / "heatmap_errors.png.tmp-2cce070a").write_bytes(b"partial")
    (tmp_path / ".rbench-outputs.json.tmp-eb5bde45").write_bytes(b"partial")
    (tmp_path / "tables.md").write_text("kept: a text report is replaced, not removed\n")
    remove_previous_outputs(tmp_path, keep={"tables.md"})
    assert [p.name for p in tmp_path.iterdir()] == ["tables.md"]
