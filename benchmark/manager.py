"""The plugin manager: loads every ``rbench`` entry point (built-ins included) and indexes plugins by kind.

Environment variables (read when the registry is first built):

- ``RBENCH_PLUGINS``: comma-separated allow-list of entry-point or distribution names. When set, only the
  built-in plugins (distribution ``rbench``) and the listed ones are loaded. ``RBENCH_PLUGINS=""`` loads the
  built-ins only: the way to run a suite you do not trust without executing third-party code (then a suite's
  own model code, the ``checkpoint`` plugin's ``module``, is refused too: :func:`untrusted`).
- ``RBENCH_DISABLE_PLUGINS``: comma-separated deny-list of entry-point or distribution names (built-ins too).
- A name in either list that no installed distribution or entry point of the group has is an error (a typo in a
  deny-list would otherwise leave loaded the very plugin it was meant to keep out).
- ``RBENCH_TRACE_PLUGINS=1``: print every hook call and its result to stderr (the registration hooks as each
  module's call and the names it returned, the observer hooks through pluggy's tracing).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from pydantic import BaseModel

from rbench import hookspecs
from rbench.editable import development_version
from rbench.envflag import flag
from rbench.errors import PluginError

ENTRY_POINT_GROUP = "rbench"
BUILTIN_DISTRIBUTION = "rbench"

#: kind name -> registration hook name
KINDS: dict[str, str] = {
    "dataset": "rbench_datasets",
    "model": "rbench_models",
    "trainer": "rbench_trainers",
    "attack": "rbench_attacks",
    "transform": "rbench_transforms",
    "defense": "rbench_defenses",
    "metric": "rbench_metrics",
    "probe": "rbench_probes",
    "executor": "rbench_executors",
    "reporter": "rbench_reporters",
}


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin object, or one entry point that failed to load (``error`` set, ``obj`` None)."""

    kind: str
    name: str
    version: str
    distribution: str
    entry_point: str
    obj: Any = None
    error: str | None = None


@dataclass
class Registry:
    """Every plugin object by kind and name, plus what failed to load and what clashed."""

    plugins: dict[str, dict[str, PluginInfo]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: list[PluginInfo] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    #: entry points RBENCH_PLUGINS / RBENCH_DISABLE_PLUGINS kept from loading, as ``distribution:entry point``
    left_out: list[str] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None

    def get(self, kind: str, name: str) -> PluginInfo:
        """Return the plugin ``name`` of ``kind``; a clear :class:`PluginError` with close matches otherwise."""
        if kind not in self.plugins:
            raise PluginError(f"unknown plugin kind {kind!r}; kinds are: {', '.join(KINDS)}")
        clash = [c for c in self.conflicts if c.startswith(f"{kind} {name!r}")]
        if clash:
            raise PluginError(clash[0])
        try:
            return self.plugins[kind][name]
        except KeyError:
            own = next((f for f in self.failures if f.kind == kind and f.name == name), None)
            if own is not None:  # its own failure, not a close match to another plugin's name
                raise PluginError(f"{kind} plugin {name!r} (distribution {own.distribution!r}) failed to load: "
                                  f"{own.error}") from None
            entry = next((f for f in self.failures if f.kind == "(load)" and f.name == name), None)
            if entry is not None:  # an entry point of that name did not import: what it provides is unknown
                raise PluginError(f"unknown {kind} plugin {name!r}: the entry point {name!r} of distribution "
                                  f"{entry.distribution!r}, which may provide it, failed to load: {entry.error}"
                                  ) from None
            failed = len(self.failures)
            broken = f" ({failed} plugin entry point{'s' * (failed > 1)} failed to load: see 'rbench plugins')" \
                if failed else ""
            if self.left_out:
                shown = ", ".join(self.left_out[:3]) + (", ..." if len(self.left_out) > 3 else "")
                out = len(self.left_out)
                broken += (f" ({out} entry point{'s' * (out > 1)} not loaded because of RBENCH_PLUGINS or "
                           f"RBENCH_DISABLE_PLUGINS: {shown})")
            raise PluginError(f"unknown {kind} plugin {name!r}{suggest(name, self.plugins[kind])}{broken}") from None

    def all(self) -> list[PluginInfo]:
        """Every loaded plugin and every load failure, sorted by kind then name."""
        loaded = [info for by_name in self.plugins.values() for info in by_name.values()]
        return sorted(loaded + self.failures, key=lambda p: (p.kind, p.name))


def close_match(name: str, choices: Any) -> str | None:
    """The closest of ``choices`` to ``name`` (difflib, ratio >= 0.6), or None."""
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(name: str, choices: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``"; known: a, b"``, or ``""``."""
    choices = sorted(choices)
    close = close_match(name, choices)
    if close is not None:
        return f"; did you mean {close!r}?"
    return f"; known: {', '.join(choices)}" if choices else "; none is registered"


def _normalize(name: str) -> str:
    """Distribution names compare the packaging way: case-insensitive, runs of ``-_.`` equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {_normalize(item.strip()) for item in raw.split(",") if item.strip()}


def untrusted() -> bool:
    """Whether ``RBENCH_PLUGINS`` is set and names nothing: built-ins only, for a suite one does not trust, so no
    code a suite names (a model's ``module`` file or package) may run either."""
    allow = _env_list("RBENCH_PLUGINS")
    return allow is not None and not allow


def _check_lists(entry_points: list[tuple[metadata.EntryPoint, str]]) -> None:
    """Refuse an allow- or deny-list name that matches no entry point or distribution of the group, before any
    plugin code runs."""
    known = {_normalize(name) for ep, dist in entry_points for name in (ep.name, dist)}
    for var in ("RBENCH_PLUGINS", "RBENCH_DISABLE_PLUGINS"):
        unknown = sorted((_env_list(var) or set()) - known)
        if unknown:
            raise PluginError(
                f"{var} names {unknown[0]!r}, which is neither an installed distribution nor an entry point of "
                f"the group {ENTRY_POINT_GROUP!r}{suggest(unknown[0], known)}"
            )


def _wanted(ep: metadata.EntryPoint, dist: str) -> bool:
    names = {_normalize(ep.name), _normalize(dist)}
    deny = _env_list("RBENCH_DISABLE_PLUGINS") or set()
    if names & deny:
        return False
    allow = _env_list("RBENCH_PLUGINS")
    return allow is None or dist == BUILTIN_DISTRIBUTION or bool(names & allow)


def _dist_name(ep: metadata.EntryPoint) -> tuple[str, str]:
    """(distribution name, version) of an entry point; ``"?"`` for what its metadata does not say (a dist-info
    folder that pip is writing or removing right now has entry points but no METADATA yet)."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or "?", dist.version or "?"


def build_registry() -> Registry:
    """Load every wanted entry point of the group ``rbench`` and collect its plugins by kind.

    An entry point that fails to import, or whose hook raises, is recorded in ``failures`` (with the error)
    instead of breaking the caller. Two plugins of one kind with one name are recorded in ``conflicts``;
    looking that name up raises an error naming both distributions. A name in ``RBENCH_PLUGINS`` or
    ``RBENCH_DISABLE_PLUGINS`` that nothing installed has raises :class:`PluginError` before anything is loaded.
    """
    pm = pluggy.PluginManager("rbench")
    pm.add_hookspecs(hookspecs)
    if flag("RBENCH_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    registry = Registry(manager=pm)
    entry_points = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    _check_lists([(ep, _dist_name(ep)[0]) for ep in entry_points])
    for ep in entry_points:
        dist, version = _dist_name(ep)
        if not _wanted(ep, dist):
            registry.left_out.append(f"{dist}:{ep.name}")
            continue
        module = None
        try:
            module = ep.load()
            pm.register(module, name=f"{dist}:{ep.name}")
            pm.check_pending()  # a misspelled hook name is an error, not a silently ignored function
        except Exception as exc:  # a broken plugin must not break the CLI
            if module is not None and pm.is_registered(module):
                pm.unregister(module)
            registry.failures.append(
                PluginInfo("(load)", ep.name, version, dist, ep.value, error=f"{type(exc).__name__}: {exc}")
            )
            continue
        _collect(registry, pm, module, ep, dist, version)
    return registry


def _key_version(obj: Any, version: str, ep: Any, dist: str) -> str:
    """The version a plugin enters job keys with: its own ``version``, else its distribution's; for a
    third-party distribution installed editable, with its source's digest (:mod:`rbench.editable`)."""
    declared = str(getattr(obj, "version", None) or version)
    if dist == BUILTIN_DISTRIBUTION:
        return declared
    try:
        return development_version(declared, getattr(ep, "dist", None), ep.module)
    except OSError as exc:  # a file vanishing while it is read: keyed on a digest it cannot make, no plugin
        raise PluginError(f"{dist}: its source cannot be read to key its jobs ({exc})") from None


#: what a plugin's ``key_revision`` may return: a short tag, appended to its version in job keys after
#: :data:`REVISION_MARK`
_REVISION_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: between a plugin's version and a call's revision tag in a key (:func:`call_version`); what
#: :func:`rbench.plan._unrevised` cuts off to seed the call as before (a version's own ``~``, as in a third-party
#: ``2.0~rc1``, is left alone)
REVISION_MARK = "~rev."


def call_version(obj: Any, version: str, params: BaseModel) -> str:
    """The version a call of the plugin ``obj`` with validated ``params`` enters job keys with: the plugin's keyed
    ``version``, with ``~rev.<tag>`` appended where its optional ``key_revision(params)`` gives a tag. A fix that
    changes only some calls' outputs (pgd's L2 step on a vanishing gradient) so re-keys those calls alone: the
    others keep their stored results (and seeds). ValueError, one line, where the hook raises or returns anything
    but None, "" or such a tag."""
    method = getattr(obj, "key_revision", None)
    if method is None:
        return version
    try:
        tag = method(params)
    except Exception as exc:  # noqa: BLE001 - a plugin bug of any kind, reported as one line
        raise ValueError(f"key_revision raised {type(exc).__name__}: {exc}") from None
    if tag is None or tag == "":
        return version
    if not isinstance(tag, str) or not _REVISION_TAG.fullmatch(tag):
        raise ValueError(f"key_revision returned {tag!r}, not None or a tag of at most 64 letters, digits, '.', "
                         "'_' or '-'")
    return f"{version}{REVISION_MARK}{tag}"


def _trace(line: str) -> None:
    if flag("RBENCH_TRACE_PLUGINS"):
        sys.stderr.write(line + "\n")


def _collect(registry: Registry, pm: pluggy.PluginManager, module: Any, ep: Any, dist: str, version: str) -> None:
    for kind, hook_name in KINDS.items():
        impl = getattr(module, hook_name, None)
        if impl is None:
            continue
        if not hasattr(impl, "rbench_impl"):  # pluggy registers marked functions only: this one was dropped
            registry.failures.append(PluginInfo(kind, ep.name, version, dist, ep.value, error=(
                f"{hook_name} is not marked with @rbench.hookimpl, so none of its {kind} plugins is loaded")))
            continue
        try:
            objects = impl()
            objects = [] if objects is None else list(objects)
        except Exception as exc:  # list() too: a hook returning one object instead of a list of them
            registry.failures.append(
                PluginInfo(kind, ep.name, version, dist, ep.value, error=f"{type(exc).__name__}: {exc}")
            )
            _trace(f"{dist}:{ep.name} {hook_name}() raised {type(exc).__name__}: {exc}")
            continue
        # called per module, not through pm.hook (each object is credited to its distribution), so pluggy's
        # tracing does not see these calls: RBENCH_TRACE_PLUGINS traces them here
        if flag("RBENCH_TRACE_PLUGINS"):
            _trace(f"{dist}:{ep.name} {hook_name}() -> {[getattr(o, 'name', '?') for o in objects]}")
        for obj in objects:
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                registry.failures.append(
                    PluginInfo(kind, repr(obj), version, dist, ep.value, error="plugin object has no 'name'")
                )
                continue
            problem = _object_problem(obj, kind)
            if problem is not None:
                registry.failures.append(PluginInfo(kind, name, version, dist, ep.value, error=problem))
                continue
            try:
                keyed = _key_version(obj, version, ep, dist)
            except PluginError as exc:  # listed as a failure, like a plugin that does not load
                registry.failures.append(PluginInfo(kind, name, version, dist, ep.value, error=str(exc)))
                continue
            info = PluginInfo(kind, name, keyed, dist, ep.value, obj)
            existing = registry.plugins[kind].get(name)
            if existing is not None:
                registry.conflicts.append(
                    f"{kind} {name!r} is registered twice: by distribution {existing.distribution!r} "
                    f"({existing.entry_point}) and by distribution {dist!r} ({ep.value}); "
                    f"disable one with RBENCH_DISABLE_PLUGINS, which takes distribution or entry-point names "
                    f"(RBENCH_DISABLE_PLUGINS={dist} or {ep.name})"
                )
                continue
            registry.plugins[kind][name] = info


#: kinds whose plugins declare their parameters as a pydantic model ``Params`` (the suite validates against it)
PARAMETRIZED = ("dataset", "model", "trainer", "attack", "transform", "defense", "metric", "probe")


def _object_problem(obj: Any, kind: str) -> str | None:
    """Why ``obj``, returned by a ``kind`` hook, cannot be used as a plugin (listed by ``rbench plugins`` as a
    failure, so that it fails there, not as an internal error in a run), or None."""
    if isinstance(obj, type):
        return f"the hook returned the class {obj.__name__}, not an instance of it: return [{obj.__name__}()]"
    if kind in PARAMETRIZED:
        params = getattr(obj, "Params", None)
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            return f"its Params is {params!r}, not a pydantic model class (rbench.NoParams when it takes none)"
    return None


_registry: Registry | None = None


def get_registry(*, reload: bool = False) -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None or reload:
        _registry = build_registry()
    return _registry


def get_plugin(kind: str, name: str) -> Any:
    """The registered plugin object of ``kind`` (``attack``, ``model`` ...) called ``name``."""
    return get_registry().get(kind, name).obj


def hook() -> Any:
    """The pluggy hook relay, for calling observer hooks (``hook().rbench_job_finished(...)``)."""
    manager = get_registry().manager
    assert manager is not None
    return manager.hook
