"""Garbage collection of the artifact store.

gc never deletes what a live process uses or writes: it holds the store's lease registry lock while it decides
and deletes (so no run can register a lease meanwhile), keeps every key a live run's lease names, and removes
an entry only while holding that entry's own lock (the lock every writer holds). It never follows a link out of
the store (:meth:`rbench.store.Store.check_layout` refuses a store whose folders are links; a link found inside
is removed as a link).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from rbench.plan import build_plan, check_keyed_data
from rbench.store import Store, StoreError
from rbench.suite import load_suite
from rbench.tomlfile import read_toml


def _profiles_of(path: Path) -> list[str | None]:
    profiles = read_toml(path).get("profiles", {})
    return [None, *profiles] if isinstance(profiles, dict) else [None]


def keys_used_by(suites: list[Path], profiles: list[str] | None) -> set[str]:
    """Every key the plans of ``suites`` (under ``profiles``; default: base and each defined profile) use."""
    keys: set[str] = set()
    for path in suites:
        for profile in profiles if profiles else _profiles_of(path):
            plan = build_plan(load_suite(path, profile))
            check_keyed_data(plan)  # else its keys are not the stored ones, and gc would delete the suite's own
            keys |= set(plan.jobs)
    return keys


def _inside(store: Store, path: Path) -> bool:
    """True when ``path``'s folder is inside the store (resolving links), so deleting ``path`` (itself, never
    what it may link to) touches nothing outside."""
    root = os.path.realpath(store.root)
    return os.path.commonpath([root, os.path.realpath(path.parent)]) == root


def collect(store: Store, keep_suites: list[Path], profiles: list[str] | None, *, dry_run: bool
            ) -> tuple[list[Path], int]:
    """Remove temporaries of interrupted writes and incomplete checkpoints (and the library cache's an hour old,
    :meth:`Store.stale_cache_temporaries`), the markers of runs that died (and the write probes their nodes left),
    what ``verify`` moved to the quarantine (:meth:`Store.quarantined`), and, when ``keep_suites`` is given, every
    entry those suites do not use and no live run leases. Entries whose lock another process holds are left alone.
    Returns (paths, bytes). A folder that is not a store is refused (:meth:`Store.check_is_store`); a file that
    cannot be removed is a one-line :class:`StoreError`."""
    store.check_is_store()
    keep = keys_used_by(keep_suites, profiles) if keep_suites else None
    victims: list[Path] = []
    freed = 0
    if not store.root.is_dir():
        return victims, freed

    def remove(path: Path) -> None:
        nonlocal freed
        if not _inside(store, path):
            return
        try:
            size = path.lstat().st_size
        except FileNotFoundError:  # listed before its key's lock was ours; its writer has since finished
            return
        if not dry_run:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # a read-only store: one line, not an internal error
                done = f"; {len(victims)} files were removed before it" if victims else ""
                raise StoreError(f"store {store.root}: cannot remove {path} ({exc.strerror or exc}){done}") from None
        freed += size
        victims.append(path)

    # in a folder without leases/ (no run has used it yet) there is no lease to wait for, and taking the registry
    # lock would make leases/registry.lock: a dry run writes nothing, nor does a gc of debris only (it removes no
    # complete entry, so a run starting meanwhile loses nothing; each key's own lock guards a write under way)
    unleased = (dry_run or keep is None) and not (store.root / "leases").is_dir()
    with contextlib.nullcontext() if unleased else store.registry_lock():
        # unleased, leases/ is a run's that starts meanwhile, writing its lease under a lock gc does not hold
        live = set() if unleased else store.live_keys(tidy=not dry_run)
        doomed: dict[str, list[Path]] = {}
        for tmp in store.temporaries():  # debris of interrupted writes (unless their writer is alive)
            doomed.setdefault(tmp.name.split(".", 1)[0], []).append(tmp)
        for tmp in [] if unleased else store.lease_temporaries():  # a lease is written under the registry lock,
            remove(tmp)  # which gc holds now
        for marker in store.stale_markers():  # a run killed outright left it
            remove(marker)
        for tmp in store.stale_cache_temporaries():  # an answer or figure a killed process was writing
            remove(tmp)

        def condemned(key: str) -> bool:  # weights whose sidecar was never written, and entries nobody keeps
            return not store.has(key) or (keep is not None and key not in keep and key not in live)

        for key in store.keys():  # candidates only: a writer may finish before its key's lock is ours
            if condemned(key):
                doomed.setdefault(key, [])
        for key, paths in doomed.items():
            with store.try_lock(key) as free:
                if not free:
                    continue
                if condemned(key):  # judged, and its files listed, under the lock a writer holds to its sidecar
                    stamp = store.root / "gates" / f"{key}.json"
                    paths = [*paths, *store.paths(key), *([stamp] if stamp.exists() else [])]
                for path in paths:
                    remove(path)
        for folder, moved in store.quarantined():  # only what verify moved there: anything else is not the store's
            for path in moved:
                remove(path)
            if not dry_run:
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return victims, freed
