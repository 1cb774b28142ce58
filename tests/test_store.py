"""The artifact store: round trips, checksums on load, atomic writes, quarantine and gc."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from rbench.artifacts import AdvSet, Predictions, distortions
from rbench.gc import collect
from rbench.keys import content_key
from rbench.store import TMP_MARK, CorruptEntry, Store, StoreLock, atomic_write, write_probe

SPEC = {"kind": "test", "n": 1}
KEY = content_key(SPEC)


def bound(**meta):
    """Metadata binding an entry to KEY (as every job's output records its key and spec)."""
    return {"key": KEY, "spec": SPEC, **meta}


def test_a_checkpoint_whose_sidecar_cannot_be_written_leaves_no_weights(tmp_path, monkeypatch):
    import rbench.store as store_module

    store = Store(tmp_path)
    real = store_module.atomic_write_bytes

    def disk_full_at_the_sidecar(path, data, **kw):
        if path.suffix == ".json":
            raise store_module.StoreWriteError(f"{path}: no space left on device")
        return real(path, data, **kw)

    monkeypatch.setattr(store_module, "atomic_write_bytes", disk_full_at_the_sidecar)
    with pytest.raises(store_module.StoreWriteError):
        store.save_checkpoint(KEY, {"w": torch.ones(2)}, bound(label="m"))
    assert not store.paths(KEY) and not store.has(KEY)


def test_a_signal_after_the_sidecar_is_in_place_leaves_the_checkpoint_complete(tmp_path, monkeypatch):
    import rbench.store as store_module

    store = Store(tmp_path)
    real, calls = store_module._fsync_dir, []

    def interrupted_after_the_sidecar_rename(path):
        calls.append(path)
        real(path)
        if len(calls) == 2:  # the sidecar's folder: renamed into place already
            raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "_fsync_dir", interrupted_after_the_sidecar_rename)
    with pytest.raises(KeyboardInterrupt):
        store.save_checkpoint(KEY, {"w": torch.ones(2)}, bound(label="m"))
    monkeypatch.undo()
    assert store.has(KEY) and torch.equal(store.load_checkpoint(KEY)[0]["w"], torch.ones(2))


def test_a_signal_after_the_weights_rename_leaves_no_weights_without_their_sidecar(tmp_path, monkeypatch):
    """The signal audit: a Ctrl-C while the weights' folder was synced, after their rename, escaped before the
    cleanup that removes weights whose sidecar was never written (verify then said 'incomplete')."""
    import rbench.store as store_module

    store = Store(tmp_path)
    real, calls = store_module._fsync_dir, []

    def interrupted_after_the_weights_rename(path):
        calls.append(path)
        real(path)
        if len(calls) == 1:  # the weights' folder: renamed into place, the sidecar not yet written
            raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "_fsync_dir", interrupted_after_the_weights_rename)
    with pytest.raises(KeyboardInterrupt):
        store.save_checkpoint(KEY, {"w": torch.ones(2)}, bound(label="m"))
    monkeypatch.undo()
    assert not store.paths(KEY) and not store.has(KEY) and store.verify(KEY) != "incomplete"


def test_a_torch_that_fails_to_import_quarantines_no_checkpoint(tmp_path, monkeypatch):
    """The store imports safetensors' torch half only to read a checkpoint: a failure to import it (a broken CUDA
    library, memory) is the machine's, raised as it is, the entry left in place (it made verify quarantine every
    checkpoint once the import moved there)."""
    import sys

    store = Store(tmp_path)
    store.save_checkpoint(KEY, {"w": torch.ones(2)}, bound(label="m"))
    files = store.paths(KEY)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # importing it raises ImportError
    with pytest.raises(ImportError):
        Store(tmp_path).verify(KEY)
    assert store.paths(KEY) == files and not (tmp_path / "quarantine").exists()
    monkeypatch.undo()
    assert Store(tmp_path).verify(KEY) == "ok"


def test_discard_incomplete_removes_weights_without_a_sidecar_unless_complete_or_locked(tmp_path):
    from filelock import FileLock

    store = Store(tmp_path)
    store.save_checkpoint(KEY, {"w": torch.ones(2)}, bound(label="m"))
    assert not store.discard_incomplete(KEY) and store.has(KEY)  # complete: kept
    store.paths(KEY)[0].unlink()  # the sidecar: as a writer killed before it
    weights = store.paths(KEY)
    assert weights and not store.has(KEY)
    writer = FileLock(tmp_path / "locks" / f"{KEY}.lock", is_singleton=False)  # another holder (its own open)
    with writer:
        assert not store.discard_incomplete(KEY) and store.paths(KEY) == weights  # being written: left alone
    assert store.discard_incomplete(KEY) and not store.paths(KEY)
    assert not store.discard_incomplete(KEY)  # nothing left to remove


def test_gc_removes_the_marker_of_a_run_killed_outright_and_keeps_a_live_run_s(tmp_path):
    import subprocess
    import sys

    store = Store(tmp_path)
    store.ensure_writable()
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sys\nfrom rbench.store import Store\n"
        "with Store(sys.argv[1]).run_marker() as (path, token):\n"
        "    print(path, token)\n    sys.stdout.flush()\n    os._exit(9)  # no unwinding, as SIGKILL\n"),
        str(tmp_path)], capture_output=True, text=True, timeout=60)
    dead_path, dead_token = killed.stdout.split()
    assert killed.returncode == 9 and Path(dead_path).read_text() == dead_token
    dead_probe = write_probe(Path(dead_path))  # a write probe a node killed mid-probe left beside each marker
    dead_probe.write_bytes(b"")
    with store.run_marker() as (live, token):
        live_probe = write_probe(live)
        live_probe.write_bytes(b"")
        assert live.read_text() == token and token != dead_token
        # the dead run's marker and probe; not the live run's probe, which one of its nodes may be removing
        assert list(store.stale_markers()) == [Path(dead_path), dead_probe]
        removed, _ = collect(store, [], None, dry_run=True)
        assert set(removed) == {Path(dead_path), dead_probe} and Path(dead_path).exists() and dead_probe.exists()
        removed, _ = collect(store, [], None, dry_run=False)
        assert set(removed) == {Path(dead_path), dead_probe} and not Path(dead_path).exists()
        assert not dead_probe.exists() and live.exists() and live_probe.exists()
    assert not live.exists() and list(store.stale_markers()) == [live_probe]  # its run has ended
    collect(store, [], None, dry_run=False)
    assert not live_probe.exists() and not list(store.stale_markers())


def _advset(n: int = 5) -> AdvSet:
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 4, 4), dtype=np.float32)
    x_adv = np.clip(x + rng.normal(0, 0.1, x.shape).astype(np.float32), 0, 1)
    return AdvSet(x_adv, rng.random(n) > 0.5, np.arange(n), np.full(n, -1), np.arange(n) * 3,
                  distortions(x, x_adv), {"steps": np.arange(n, dtype=np.int32)}, bound(label="test set"))


def test_checkpoint_round_trip_and_sidecar(tmp_path):
    store = Store(tmp_path)
    state = {"w": torch.randn(3, 4), "b": torch.zeros(3)}
    assert not store.has(KEY)
    store.save_checkpoint(KEY, state, bound(label="m", stats={"loss": 0.5}))
    assert store.has(KEY)
    loaded, meta = store.load_checkpoint(KEY)
    assert torch.equal(loaded["w"], state["w"]) and meta["stats"] == {"loss": 0.5}
    assert {p.suffix for p in store.paths(KEY)} == {".json", ".safetensors"}
    assert json.loads(store.paths(KEY)[0].read_text())["sha256"]  # the sidecar holds the weights' checksum


def test_advset_round_trip_keeps_float32_and_extras(tmp_path):
    store = Store(tmp_path)
    adv = _advset()
    store.save_advset(KEY, adv)
    back = store.load_advset(KEY)
    assert back.x_adv.dtype == np.float32 and np.array_equal(back.x_adv, adv.x_adv)
    assert np.array_equal(back.success, adv.success) and np.array_equal(back.extras["steps"], adv.extras["steps"])
    assert set(back.distortion) == {"l2", "linf", "rms", "mean_abs"}
    assert back.meta["label"] == "test set" and back.meta["kind"] == "advset"


def test_distortion_definitions():
    x = np.zeros((1, 1, 2, 2), np.float32)
    x_adv = np.array([[[[0.3, 0.4], [0.0, 0.0]]]], np.float32)
    d = distortions(x, x_adv)
    assert d["l2"][0] == pytest.approx(0.5) and d["linf"][0] == pytest.approx(0.4)
    assert d["rms"][0] == pytest.approx(0.5 / 2) and d["mean_abs"][0] == pytest.approx(0.7 / 4)


def _flip_byte(path, offset_from_end: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_bit_flip_in_hdf5_is_detected_and_quarantined(tmp_path):
    store = Store(tmp_path)
    pred = Predictions(np.random.default_rng(1).random((400, 10), dtype=np.float32), np.arange(400) % 10,
                       np.arange(400), bound())
    store.save_predictions(KEY, pred)
    path = store.paths(KEY)[0]
    # flip a byte inside the logits' data (not the metadata) so only the checksum can tell
    with h5py.File(path, "r") as f:
        offset = f["logits"].id.get_offset() if f["logits"].chunks is None else None
    data = bytearray(path.read_bytes())
    needle = pred.logits[200].tobytes()
    at = data.find(needle) if offset is None else offset
    assert at > 0
    data[at + 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptEntry) as info:
        store.load_predictions(KEY)
    assert KEY in str(info.value)
    assert not store.has(KEY) and info.value.moved_to is not None and any(info.value.moved_to.iterdir())


@pytest.mark.parametrize("kind", ["predictions", "checkpoint"])
def test_a_reader_never_quarantines_the_entry_another_process_stored_while_it_read(tmp_path, monkeypatch, kind):
    """Reader A reads a corrupt entry without the key's lock; meanwhile process B quarantines it and stores a good
    one. A's checks fail on what it read, but it must not move B's fresh entry to quarantine (gc would delete it):
    judged again under the lock, the files are not those A read, so A reads again and gets B's entry."""
    import rbench.store as store_module

    store = Store(tmp_path)
    good = Predictions(np.ones((40, 10), np.float32), np.arange(40) % 10, np.arange(40), bound())
    state = {"w": torch.ones(3, 4)}
    save = (lambda: store.save_predictions(KEY, good)) if kind == "predictions" else \
        (lambda: store.save_checkpoint(KEY, state, bound(label="m")))
    save()
    corrupt = next(p for p in store.paths(KEY) if p.suffix in (".h5", ".safetensors"))
    data = bytearray(corrupt.read_bytes())
    data[-16] ^= 0xFF  # inside the logits / the weights: only the checksum can tell
    corrupt.write_bytes(bytes(data))
    reader = "read_h5" if kind == "predictions" else "read_file"
    real = getattr(store_module, reader)
    calls = []

    def b_acts_meanwhile(path, *args):
        out = real(path, *args)
        if path == corrupt and not calls:  # A has read the corrupt bytes; now B replaces the entry
            calls.append(path)
            other = Store(tmp_path)
            other.quarantine(KEY, "found corrupt by B")
            (other.save_predictions(KEY, good) if kind == "predictions" else
             other.save_checkpoint(KEY, state, bound(label="m")))
        return out

    monkeypatch.setattr(store_module, reader, b_acts_meanwhile)
    if kind == "predictions":
        assert np.array_equal(store.load_predictions(KEY).logits, good.logits)
    else:
        assert torch.equal(store.load_checkpoint(KEY)[0]["w"], state["w"])
    assert calls and store.has(KEY)
    assert len(list((tmp_path / "quarantine").iterdir())) == 1  # B's: the corrupt entry only


@pytest.mark.parametrize("failure", [OSError(24, "Too many open files"), OSError(116, "Stale file handle"),
                                     PermissionError(13, "Permission denied")])
def test_a_failure_of_the_machine_leaves_an_intact_entry_in_place(tmp_path, monkeypatch, failure):
    """A read that fails for the machine's reason (no file descriptor left, a stale NFS handle, permissions) is not the
    entry's fault: it was quarantined, and gc deleted the intact work. It stays, named in a StoreReadError, and
    reads back once the machine recovers; a content failure still quarantines (the test above)."""
    import rbench.store as store_module
    from rbench.store import StoreReadError

    Store(tmp_path / "a").save_checkpoint(KEY, {"w": torch.ones(2)}, bound(label="m"))
    Store(tmp_path / "b").save_advset(KEY, _advset())
    real = store_module.read_file
    store_module_h5 = store_module.read_h5

    def failing(*args, **kwargs):
        raise failure

    monkeypatch.setattr(store_module, "read_file", failing)
    monkeypatch.setattr(store_module, "read_h5", failing)
    with pytest.raises(StoreReadError, match=f"cannot read store entry {KEY}"):
        Store(tmp_path / "a").load_checkpoint(KEY)  # a fresh Store: no checksum remembered from the write
    with pytest.raises(StoreReadError, match="left in place, not judged"):
        Store(tmp_path / "b").load_advset(KEY)
    for name in "ab":
        assert not any((tmp_path / name / "quarantine").glob("*")) and Store(tmp_path / name).has(KEY)
    monkeypatch.setattr(store_module, "read_file", real)
    monkeypatch.setattr(store_module, "read_h5", store_module_h5)
    assert torch.equal(Store(tmp_path / "a").load_checkpoint(KEY)[0]["w"], torch.ones(2))
    assert Store(tmp_path / "b").load_advset(KEY).x_adv.shape == (5, 1, 4, 4)


def test_gc_removes_a_killed_lease_write_and_a_full_disk_at_the_lease_is_one_line(tmp_path, monkeypatch):
    """A run killed inside its lease write left ``leases/<id>.json.tmp-*`` that gc never removed; a disk too full
    for the lease record was an internal error naming the store's parent folder."""
    import shutil
    from collections import namedtuple

    import rbench.store as store_module
    from rbench.errors import StoreError

    store = Store(tmp_path)
    with store.lease({KEY}, "a run"):
        pass
    debris = tmp_path / "leases" / f"123-0123abcd.json{TMP_MARK}89abcdef"
    debris.write_text('{"label": "a run", "pi')
    collect(store, None, None, dry_run=False)
    assert not debris.exists()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6, 0))
    with pytest.raises(StoreError, match=f"cannot lease its entries in the store: cannot write .* to "
                                         f"{tmp_path / 'leases'}: only 0.00 MB free"):
        with store.lease({KEY}, "a run"):
            pass
    assert store_module.Store(tmp_path).live_keys() == set() and not list((tmp_path / "leases").glob("*.json*"))


def test_cache_ls_does_not_read_through_a_link_out_of_the_store(tmp_path):
    """An entry file that is a link to a set outside the store was listed with the outside file's label."""
    outside = Store(tmp_path / "elsewhere")
    outside.save_advset(KEY, _advset())
    store = Store(tmp_path / "store")
    store.save_checkpoint(content_key({"kind": "other"}), {"w": torch.ones(1)},
                          {"key": content_key({"kind": "other"}), "spec": {"kind": "other"}})
    link = store.root / "objects" / KEY[:2] / f"{KEY}.h5"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside.paths(KEY)[0])
    entry = store.entry(KEY)
    assert entry.kind == "unreadable" and entry.label != "test set"


def test_an_edit_in_place_that_sets_the_modification_time_back_is_still_seen(tmp_path):
    """A file read once is served from memory while its signature stands: an edit in place of the same size whose
    modification time is set back (os.utime) changed only the change time, which the signature now holds."""
    import os

    store = Store(tmp_path)
    pred = Predictions(np.random.default_rng(1).random((400, 10), dtype=np.float32), np.arange(400) % 10,
                       np.arange(400), bound())
    store.save_predictions(KEY, pred)
    store.load_predictions(KEY)  # read, verified, kept
    path = store.paths(KEY)[0]
    before = path.stat()
    at = path.read_bytes().find(pred.logits[200].tobytes())
    with open(path, "r+b") as f:  # the same inode, the same size
        f.seek(at + 3)
        byte = f.read(1)
        f.seek(at + 3)
        f.write(bytes([byte[0] ^ 1]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(CorruptEntry, match="is corrupt"):  # the chunk's own checksum (fletcher32) sees it first
        store.load_predictions(KEY)


def test_truncated_checkpoint_is_detected(tmp_path):
    store = Store(tmp_path)
    store.save_checkpoint(KEY, {"w": torch.randn(100, 100)}, bound(label="m"))
    weights = next(p for p in store.paths(KEY) if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CorruptEntry, match="SHA-256"):
        store.verify(KEY)
    assert not store.has(KEY)


def test_truncated_hdf5_is_detected(tmp_path):
    store = Store(tmp_path)
    store.save_advset(KEY, _advset(50))
    path = store.paths(KEY)[0]
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CorruptEntry):
        store.load_advset(KEY)


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    target = tmp_path / "objects" / "ab" / "x.h5"

    def half_write(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_write)
    assert not target.exists() and not list(target.parent.iterdir())


def test_gc_removes_debris_and_unused_entries(tmp_path, write_suite):
    store = Store(tmp_path / "store")
    store.save_advset(KEY, _advset())
    debris = store.paths(KEY)[0].with_name(f"{KEY}.h5{TMP_MARK}dead")
    debris.write_bytes(b"partial")
    removed, freed = collect(store, [], None, dry_run=True)
    assert removed == [debris] and debris.exists()
    collect(store, [], None, dry_run=False)
    assert not debris.exists() and store.has(KEY)
    suite = write_suite('[suite]\nname = "empty"\n')
    removed, _ = collect(store, [suite], None, dry_run=False)
    assert not store.has(KEY) and removed


def test_gc_removes_a_killed_gate_memo_write_and_verify_counts_the_debris(tmp_path):
    """The signal audit: a run killed while writing a gate memo left gates/<key>.json.tmp-*, which neither gc nor
    verify saw, for good."""
    from support import rbench

    store = Store(tmp_path / "store")
    store.save_advset(KEY, _advset())
    store.write_gate_stamp(KEY, {"key": KEY})
    debris = tmp_path / "store" / "gates" / f"{KEY}.json{TMP_MARK}dead"
    debris.write_bytes(b"{")
    stranger = tmp_path / "store" / "gates" / f"notes.json{TMP_MARK}x"  # not named as a key's: not the store's
    stranger.write_bytes(b"")
    out = rbench("cache", "verify", "--store", str(tmp_path / "store"))
    assert out.returncode == 0 and "1 temporary file of interrupted writes (left for gc)" in " ".join(
        out.stdout.split()), out.stdout
    with store.lock(KEY):  # a live writer's temporary file is not debris
        out = rbench("cache", "verify", "--store", str(tmp_path / "store"))
    assert out.returncode == 0 and "temporary file" not in out.stdout, out.stdout
    removed, _ = collect(store, [], None, dry_run=False)
    assert removed == [debris] and not debris.exists() and stranger.exists()
    assert store.gate_stamp(KEY) == {"key": KEY} and store.has(KEY)


def test_gc_removes_the_library_caches_temporaries_a_killed_run_left_and_only_those(tmp_path):
    """The signal audit: a run killed while keeping a library's answer or a figure left library-cache/answers/
    <key>.json.tmp-* (figures/ likewise), which nothing removed. No lock guards those files: one an hour old is a
    dead writer's, a newer one may be a live run's; other libraries' folders are theirs."""
    import os
    import time

    from support import rbench

    store = Store(tmp_path / "store")
    store.save_advset(KEY, _advset())
    cache = tmp_path / "store" / "library-cache"
    old = time.time() - 2 * 3600
    dead = [cache / "answers" / f"{'a' * 64}.json{TMP_MARK}dead", cache / "figures" / f"{'b' * 64}.png{TMP_MARK}x"]
    live = cache / "answers" / f"{'c' * 64}.json{TMP_MARK}live"
    theirs = cache / "matplotlib" / f"fontlist.json{TMP_MARK}x"  # not a folder rbench writes
    kept = cache / "answers" / f"{'d' * 64}.json"
    for path in (*dead, live, theirs, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{")
    for path in (*dead, theirs, kept):
        os.utime(path, (old, old))
    out = rbench("cache", "verify", "--store", str(tmp_path / "store"))
    assert out.returncode == 0 and "2 temporary files of interrupted writes (left for gc)" in " ".join(
        out.stdout.split()), out.stdout
    removed, _ = collect(store, [], None, dry_run=False)
    assert sorted(removed) == sorted(dead) and not any(p.exists() for p in dead)
    assert live.exists() and theirs.exists() and kept.exists() and store.has(KEY)


def test_gc_of_debris_writes_nothing_into_a_folder_no_run_has_used(tmp_path):
    """`rbench cache gc --store EMPTY` made EMPTY/leases/registry.lock: a gc that removes no complete entry has no
    lease to wait for where no run has leased one."""
    (tmp_path / "store").mkdir()
    store = Store(tmp_path / "store")
    for dry_run in (True, False):
        assert collect(store, [], None, dry_run=dry_run) == ([], 0)
    assert not list(store.root.iterdir())


def test_a_gc_without_the_registry_lock_leaves_the_lease_a_starting_run_is_writing(tmp_path, monkeypatch):
    """gc of debris in a store without leases/ takes no registry lock; a run starting meanwhile makes leases/ and
    writes its lease under that lock: gc deleted the lease's temporary file, and the run failed to lease."""
    from rbench.store import TMP_MARK

    store = Store(tmp_path / "store")
    (store.root / "objects").mkdir(parents=True)
    writing = store.root / "leases" / f"123-abcdef01.json{TMP_MARK}0a1b2c3d"
    listed = Store.temporaries

    def run_starts_meanwhile(self):
        writing.parent.mkdir(exist_ok=True)
        writing.write_text("{}")
        return listed(self)

    monkeypatch.setattr(Store, "temporaries", run_starts_meanwhile)
    assert collect(store, [], None, dry_run=False) == ([], 0)
    assert writing.exists()


def test_gc_judges_a_checkpoint_under_its_lock_so_one_whose_writer_finishes_meanwhile_is_kept(tmp_path, monkeypatch):
    """gc lists a checkpoint whose sidecar is not written yet (a live writer between its two renames); the writer
    puts the sidecar in place and releases the key's lock before gc takes it: gc must find the entry complete
    then, not delete the weights it saw (which left a sidecar without weights: the run reading it failed)."""
    store = Store(tmp_path / "store")
    state = {"w": torch.randn(3, 4)}
    store.save_checkpoint(KEY, state, bound(label="m"))
    sidecar = next(p for p in store.paths(KEY) if p.suffix == ".json")
    written = sidecar.read_bytes()
    sidecar.unlink()  # the writer's state between its renames, as gc's scan sees it
    real_try_lock = Store.try_lock

    def writer_finishes_first(self, key):
        if key == KEY and not sidecar.exists():
            sidecar.write_bytes(written)
        return real_try_lock(self, key)

    monkeypatch.setattr(Store, "try_lock", writer_finishes_first)
    removed, _ = collect(store, [], None, dry_run=False)
    assert removed == [] and torch.equal(store.load_checkpoint(KEY)[0]["w"], state["w"])
    sidecar.unlink()  # a writer that died between its renames: no sidecar ever comes, the weights go
    monkeypatch.setattr(Store, "try_lock", real_try_lock)
    removed, _ = collect(store, [], None, dry_run=False)
    assert [p.suffix for p in removed] == [".safetensors"] and store.paths(KEY) == []


def test_unwritable_store_is_a_clear_error(tmp_path):
    from rbench.errors import StoreError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="not writable"):
        Store(blocker / "store").ensure_writable()


def test_a_folder_where_a_lock_file_goes_is_a_clear_error_and_a_held_lock_still_times_out(tmp_path):
    from filelock import Timeout

    from rbench.errors import StoreError

    store = Store(tmp_path)
    store.ensure_writable()
    (tmp_path / "locks" / f"{KEY}.lock").mkdir()
    with pytest.raises(StoreError, match=f"store lock {tmp_path}/locks/{KEY}.lock: cannot be taken .*move away"):
        store.lock(KEY).acquire(timeout=0)
    other = content_key({"kind": "test", "n": 2})
    with store.lock(other):  # held: a second holder (another open of the file, as in another process) times out
        with pytest.raises(Timeout):
            StoreLock(tmp_path / "locks" / f"{other}.lock").acquire(timeout=0.05)


def test_a_folder_where_the_lease_registry_lock_goes_fails_a_run_in_one_line(tmp_path, capsys, monkeypatch):
    from support import BASE_SUITE, cli_in_process

    store = tmp_path / "store"
    Store(store).ensure_writable()
    (store / "leases" / "registry.lock").mkdir()
    (tmp_path / "suite.toml").write_text(BASE_SUITE)
    code, err = cli_in_process(capsys, "run", str(tmp_path / "suite.toml"), "--store", str(store),
                               "--run-dir", str(tmp_path / "run"), "-q")
    assert code == 2 and err.count("\n") == 1, err
    assert f"store lock {store}/leases/registry.lock: cannot be taken (Is a directory)" in err
    assert not (tmp_path / "run").exists()


def test_a_lease_held_in_this_process_is_live_for_gc_in_this_process(tmp_path):
    """gc run from the same process as a run (the Python API) must keep the run's keys: its check of a lease opens
    the lease's lock file anew, so the run's own lock reads as held, not as a dead run's to clear."""
    store = Store(tmp_path)
    store.ensure_writable()
    with store.lease({KEY}, "a run in this process"):
        with store.registry_lock():
            assert store.live_keys() == {KEY}
        assert list((tmp_path / "leases").glob("*.json"))  # its record is still there
    with store.registry_lock():
        assert store.live_keys() == set()


def test_an_entry_quarantined_earlier_is_missing_with_where_it_went(tmp_path):
    """A reader of an entry quarantined earlier in the run (or by another process) was told it was "removed while
    this run needed it"; it now names the quarantine folder. The error survives a trip between processes (which
    rebuilds it through ``__reduce__``, as ``copy.copy`` does)."""
    import copy

    from rbench.store import EntryMissing

    store = Store(tmp_path)
    store.save_advset(KEY, _advset())
    with pytest.raises(EntryMissing, match="removed while this run needed it"):
        store.load_predictions(content_key({"other": 1}))
    other = Store(tmp_path)  # another process's, opened before the quarantine
    error = store.quarantine(KEY, "a test")
    for load in (store.load_advset, other.load_advset):
        with pytest.raises(EntryMissing, match=f"found corrupt and moved to {error.moved_to}") as missing:
            load(KEY)
    later = Store(tmp_path)
    later._opened += 3600  # opened an hour after that quarantine: it says nothing of why the entry is gone now
    with pytest.raises(EntryMissing, match="removed while this run needed it"):
        later.load_advset(KEY)
    again = copy.copy(missing.value)
    assert (again.key, str(again)) == (KEY, str(missing.value))


def test_a_sound_entry_asked_for_as_another_kind_stays_and_one_its_spec_does_not_make_is_quarantined(tmp_path):
    """Reading an eval's predictions with ``load_advset`` is the caller's mistake, not a corrupt entry: a clear
    error, the entry stays (it used to be quarantined); an entry holding what its job spec does not make (an
    attack job's key over predictions, checksum and binding intact) is corrupt."""
    store = Store(tmp_path)
    spec = {"kind": "eval", "n": 1}
    key = content_key(spec)
    pred = Predictions(np.ones((4, 10), np.float32), np.arange(4), np.arange(4), {"key": key, "spec": spec})
    store.save_predictions(key, pred)
    for _ in range(2):  # from the file, then from the cache of entries read
        with pytest.raises(ValueError, match=f"store entry {key} holds predictions, not advset: load it with "
                                             "load_predictions"):
            store.load_advset(key)
        assert np.array_equal(store.load_predictions(key).logits, pred.logits)
    assert store.has(key) and not (tmp_path / "quarantine").exists()
    attack = {"kind": "attack", "n": 1}
    wrong = content_key(attack)
    store.save_predictions(wrong, Predictions(pred.logits, pred.labels, pred.indices, {"key": wrong, "spec": attack}))
    with pytest.raises(CorruptEntry, match="it holds 'predictions', but its job spec makes 'advset'"):
        store.load_predictions(wrong)
    assert not store.has(wrong)


# -- an audit of the cache commands (2026-12-03) ------------------------------------------------------------------
ADV_SPEC = {"kind": "test-adv", "n": 1}
ADV_KEY = content_key(ADV_SPEC)


def _two_entries(root: Path) -> Store:
    """A store holding a checkpoint (KEY) and an adversarial set (ADV_KEY)."""
    from dataclasses import replace

    store = Store(root)
    store.save_checkpoint(KEY, {"w": torch.ones(2)}, bound(label="m"))
    store.save_advset(ADV_KEY, replace(_advset(), meta={"key": ADV_KEY, "spec": ADV_SPEC, "label": "a"}))
    return store


def test_entries_that_cannot_be_read_for_want_of_permission_stay_in_place(tmp_path, monkeypatch):
    """A permission (chmod 000; root with its capabilities dropped) quarantined both entries as corrupt, and gc then
    deleted intact work: such a read is the machine's failure, and the entry is left where it is."""
    import errno

    import rbench.store as store_module
    import rbench.tomlfile as tomlfile
    from rbench.store import StoreReadError

    store = _two_entries(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    real_open = tomlfile.os.open

    def denied(path, *args, **kwargs):
        if KEY in str(path) and "objects" in str(path):  # the entry's files, not its lock
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    def h5_denied(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(tomlfile.os, "open", denied)
    monkeypatch.setattr(store_module, "_open_h5", h5_denied)
    fresh = Store(tmp_path)
    for key in (KEY, ADV_KEY):
        with pytest.raises(StoreReadError, match=f"^cannot read store entry {key} .*: left in place, not judged"):
            fresh.verify(key)
    monkeypatch.undo()
    collect(fresh, [], None, dry_run=False)
    assert not (tmp_path / "quarantine").exists() or not any((tmp_path / "quarantine").iterdir())
    assert all(p.exists() for p in before) and store.load_advset(ADV_KEY).meta["label"] == "a"


def test_gc_removes_only_what_verify_put_in_quarantine_and_never_moves_a_folder(tmp_path):
    """gc deleted the quarantine's whole content: a user's notes there, and the files of a folder standing where an
    entry should be (which verify had moved there)."""
    store = _two_entries(tmp_path)
    store.quarantine(KEY, "for the test")
    (tmp_path / "quarantine" / "notes.txt").write_text("mine")
    (tmp_path / "quarantine" / "mine").mkdir()
    (tmp_path / "quarantine" / "mine" / "photo.jpg").write_text("mine")
    (folder,) = [p for p in (tmp_path / "quarantine").iterdir() if p.name.startswith(KEY)]
    (folder / "readme.txt").write_text("mine")  # not named by the key: not the store's
    odd = content_key({"kind": "odd"})
    where = tmp_path / "objects" / odd[:2] / f"{odd}.h5"
    where.mkdir(parents=True)
    (where / "note.txt").write_text("mine")
    with pytest.raises(CorruptEntry) as caught:
        store.verify(odd)
    assert "a folder, left where it is" in str(caught.value) and (where / "note.txt").exists()
    removed, _ = collect(store, [], None, dry_run=False)
    assert sorted(p.name for p in removed) == sorted([f"{KEY}.json", f"{KEY}.safetensors"])
    mine = ["quarantine/notes.txt", "quarantine/mine/photo.jpg", f"quarantine/{folder.name}/readme.txt",
            f"objects/{odd[:2]}/{odd}.h5/note.txt"]
    assert all((tmp_path / m).read_text() == "mine" for m in mine)


def test_a_dry_run_gc_writes_nothing_and_a_read_only_store_is_one_line(tmp_path, monkeypatch):
    """A dry run removed stale lease files; a gc that cannot remove a file was an internal error."""
    from rbench.store import StoreError

    store = _two_entries(tmp_path)
    (tmp_path / "leases").mkdir(exist_ok=True)
    stale = [tmp_path / "leases" / "4242-abcdef12.json", tmp_path / "leases" / "4242-abcdef12.lock"]
    stale[0].write_text(json.dumps({"label": "dead", "pid": 4242, "keys": [KEY]}))
    stale[1].write_text("")
    store.quarantine(ADV_KEY, "for the test")
    removed, _ = collect(store, [], None, dry_run=True)
    assert removed and all(p.exists() for p in [*stale, *removed])

    def read_only(self, missing_ok=False):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(StoreError, match=r"^store .*: cannot remove .*quarantine.* \(Permission denied\)$"):
        collect(store, [], None, dry_run=False)
    monkeypatch.undo()
    collect(store, [], None, dry_run=False)
    assert not any(p.exists() for p in stale)


def test_verify_and_ls_name_the_folders_they_cannot_list(tmp_path, monkeypatch, capsys):
    """An unreadable shard folder was skipped: "20 entries checked, 0 corrupt", exit 0, for a store of 22."""
    import os
    import sys

    import rbench.store as store_module
    from rbench.cli import main

    _two_entries(tmp_path)
    hidden = tmp_path / "objects" / ADV_KEY[:2]
    real = os.scandir

    def denied(path):
        if Path(path) == hidden:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(store_module.os, "scandir", denied)
    assert Store(tmp_path).unlisted() == [hidden]
    said = f"unlisted: {hidden}: cannot be listed (permission denied?): its entries are not counted"
    for command, code in (("verify", 1), ("ls", 0)):
        monkeypatch.setattr(sys, "argv", ["rbench", "cache", command, "--store", str(tmp_path)])
        with pytest.raises(SystemExit) as end:
            main()
        out = "".join(capsys.readouterr().out.split())  # rich wraps a long path anywhere
        assert end.value.code == code and "".join(said.split()) in out
        assert "and1foldersofentriescouldnotbelisted" in out
    monkeypatch.undo()
    assert Store(tmp_path).unlisted() == []


def test_gc_refuses_profiles_without_the_suites_they_belong_to(tmp_path, capsys):
    """``cache gc --profile quick`` alone was a gc of debris only, silently: it keeps nothing a profile names."""
    from support import cli_in_process

    _two_entries(tmp_path)
    code, err = cli_in_process(capsys, "cache", "gc", "--profile", "quick", "--store", str(tmp_path))
    assert code == 2 and err.strip() == "rbench: error: cache gc: --profile names profiles of the suites to keep; " \
        "give those suites too"
    assert Store(tmp_path).has(KEY) and Store(tmp_path).has(ADV_KEY)


def test_a_store_this_process_cannot_write_is_named_as_such_not_as_something_in_the_way(tmp_path, monkeypatch):
    """The signal audit made a store read-only mid-run: the message told the user to move away what was in the way
    of the lock file. A folder at a lock's path is still that."""
    import errno

    import filelock

    from rbench.errors import StoreError

    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "in-the-way.lock").mkdir()
    with pytest.raises(StoreError, match="move away what is in the way"):
        StoreLock(tmp_path / "locks" / "in-the-way.lock").acquire(timeout=0.05)

    def read_only(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    with pytest.raises(StoreError, match=rf"Permission denied\): the store's folder {tmp_path / 'locks'} is not "
                                         "writable by this process"):
        StoreLock(tmp_path / "locks" / "k.lock").acquire(timeout=0.05)
