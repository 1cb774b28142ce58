"""Garbage collection of the artifact store."""

from __future__ import annotations

import shutil
from pathlib import Path

from filelock import Timeout

from rbench.plan import build_plan
from rbench.store import Store
from rbench.suite import load_suite, read_toml


def _profiles_of(path: Path) -> list[str | None]:
    profiles = read_toml(path).get("profiles", {})
    return [None, *profiles] if isinstance(profiles, dict) else [None]


def keys_used_by(suites: list[Path], profiles: list[str] | None) -> set[str]:
    """Every key the plans of ``suites`` (under ``profiles``; default: base and each defined profile) use."""
    keys: set[str] = set()
    for path in suites:
        for profile in profiles if profiles else _profiles_of(path):
            keys |= set(build_plan(load_suite(path, profile)).jobs)
    return keys


def collect(store: Store, keep_suites: list[Path], profiles: list[str] | None, *, dry_run: bool
            ) -> tuple[list[Path], int]:
    """Remove temporaries of interrupted writes and incomplete checkpoints (unless their key is locked by a
    live run), the quarantine, and, when ``keep_suites`` is given, every entry those suites do not use.
    Returns (paths, bytes)."""
    victims: list[Path] = []
    for tmp in store.temporaries():
        key = tmp.name.split(".", 1)[0]
        try:
            with store.lock(key).acquire(timeout=0):
                victims.append(tmp)
        except Timeout:
            continue  # a live run is writing it
    for key in store.keys():  # weights whose sidecar was never written (a run killed mid-checkpoint)
        if not store.has(key):
            try:
                with store.lock(key).acquire(timeout=0):
                    victims += store.paths(key)
            except Timeout:
                continue
    quarantine = store.root / "quarantine"
    if quarantine.exists():
        victims += sorted(p for p in quarantine.rglob("*") if p.is_file())
    if keep_suites:
        keep = keys_used_by(keep_suites, profiles)
        victims += [p for key in store.keys() if key not in keep for p in store.paths(key)]
    freed = sum(p.stat().st_size for p in victims if p.exists())
    if not dry_run:
        for p in victims:
            p.unlink(missing_ok=True)
        if quarantine.exists():
            shutil.rmtree(quarantine, ignore_errors=True)
    return victims, freed
