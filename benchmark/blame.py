"""Which plugin's code raised an exception: a failing job's line names it (``[defense 'median']``) instead of
the job's own plugin when the error came from code the job merely called: a defense in front of the attacked
model, the model's forward, the dataset's loader. Contract violations name their plugin themselves
(:class:`rbench.errors.PluginContractError`); this reads the traceback of every other exception."""

from __future__ import annotations

from types import FrameType, TracebackType
from typing import Any

from rbench.defense import Stage
from rbench.manager import get_registry


def raising_plugin(exc: BaseException) -> str | None:
    """``kind 'name'`` of the plugin whose code raised ``exc``, or None where no frame of its traceback is plugin
    code, or the plugin stays ambiguous.

    The innermost frame in a module that defines registered plugins decides: the plugin the frame runs in (its
    ``self`` is the plugin object, or a network or defense module the engine built from it and marked with
    ``rbench_plugin``), else the module's only plugin. Where the module defines several and the frame does not
    say which, the next frame outwards that names one of them does: the engine's defense stage calling a
    defense's module (:class:`rbench.defense.Stage`), a plugin's method calling a helper of its module. Helper
    modules that define no plugin (a shared gradient function) are passed through to the plugin calling them."""
    owners: dict[str, list[str]] = {}
    by_identity: dict[int, str] = {}
    for info in get_registry().all():
        if info.obj is not None:
            owner = f"{info.kind} {info.name!r}"
            owners.setdefault(type(info.obj).__module__, []).append(owner)
            by_identity[id(info.obj)] = owner
    candidates: list[str] | None = None
    for frame in reversed(_frames(exc.__traceback__)):
        module_plugins = owners.get(str(frame.f_globals.get("__name__", "")), [])
        named = _frame_plugin(frame.f_locals.get("self"), module_plugins, by_identity)
        if named is None and len(module_plugins) == 1:
            named = module_plugins[0]
        if named is not None:
            return named if candidates is None or named in candidates else None
        if module_plugins and candidates is None:
            candidates = module_plugins
    return None


def _frame_plugin(me: Any, module_plugins: list[str], by_identity: dict[int, str]) -> str | None:
    """The plugin a frame whose ``self`` is ``me`` runs in, where ``me`` says it: a registered plugin object, the
    engine's stage of a defense, or a module built from one of ``module_plugins`` (its ``rbench_plugin``)."""
    if me is None:
        return None
    if id(me) in by_identity:
        return by_identity[id(me)]
    if isinstance(me, Stage):
        return f"defense {me.name!r}"
    try:
        built_by = me.__dict__.get("rbench_plugin") if hasattr(me, "__dict__") else None
    except Exception:  # an object whose attribute access itself fails says nothing
        return None
    if not isinstance(built_by, str):
        return None
    matches = [p for p in module_plugins if p.split(" ", 1)[1] == repr(built_by)]
    return matches[0] if len(matches) == 1 else None


def _frames(tb: TracebackType | None) -> list[FrameType]:
    """The frames of a traceback, outermost first."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames
