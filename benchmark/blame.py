"""Which plugin's code raised an exception: a failing job's line names it (``[defense 'median']``) instead of
the job's own plugin when the error came from code the job merely called: a defense in front of the attacked
model, the model's forward, the dataset's loader. Contract violations name their plugin themselves
(:class:`rbench.errors.PluginContractError`); this reads the traceback of every other exception."""

from __future__ import annotations

from types import FrameType, TracebackType
from typing import Any

from rbench.defense import Stage
from rbench.manager import get_registry


def raising_plugin(exc: BaseException) -> tuple[str, bool] | None:
    """``("kind 'name'", direct)`` of the plugin whose code raised ``exc``, or None where no frame of its traceback
    says (the engine's own error, a library's called by the engine); ``direct``: the exception was raised in
    plugin code itself, not inside a library the plugin called (torch raising on the inputs it was given, which
    may be another plugin's fault: its caller is named beside it).

    The innermost frame that says which plugin it runs in decides: its ``self`` is a plugin object, a network or
    defense module the engine built from one and marked with ``rbench_plugin`` (a user's network too, marked
    ``checkpoint``), or the engine's stage of a defense
    (:class:`rbench.defense.Stage`: everything inside it is the defense's, another plugin's module it uses too).
    Frames without such a ``self`` (a helper function, a layer class of a plugin's module) are passed through to
    the code calling them; where none says, the module of the innermost plugin code decides if it defines one
    plugin only."""
    owners: dict[str, list[str]] = {}
    by_identity: dict[int, str] = {}
    builders: dict[str, list[str]] = {}  # a plugin name -> the model and defense plugins of that name
    for info in get_registry().all():
        if info.obj is not None:
            owner = f"{info.kind} {info.name!r}"
            owners.setdefault(type(info.obj).__module__, []).append(owner)
            by_identity[id(info.obj)] = owner
            if info.kind in ("model", "defense"):
                builders.setdefault(info.name, []).append(owner)
    frames = _frames(exc.__traceback__)
    inner_modules = [str(frame.f_globals.get("__name__", "")) for frame in frames]
    direct = bool(inner_modules) and inner_modules[-1] in owners  # raised in the code of a module with plugins
    candidates: list[str] | None = None
    for frame, module in zip(reversed(frames), reversed(inner_modules), strict=True):
        module_plugins = owners.get(module, [])
        named = _frame_plugin(frame.f_locals.get("self"), module_plugins, by_identity, builders)
        if named is not None:
            return named, direct
        if module_plugins and candidates is None:
            candidates = module_plugins
    return (candidates[0], direct) if candidates is not None and len(candidates) == 1 else None


def _frame_plugin(me: Any, module_plugins: list[str], by_identity: dict[int, str], builders: dict[str, list[str]]
                  ) -> str | None:
    """The plugin a frame whose ``self`` is ``me`` runs in, where ``me`` says it: a registered plugin object, the
    engine's stage of a defense, or a network or defense module the engine built (its ``rbench_plugin``): one of
    ``module_plugins`` (the frame's module's), else the one model or defense plugin of that name (a user's network
    built by ``checkpoint``, whose class lives in the user's file)."""
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
    matches = [p for p in module_plugins if p.split(" ", 1)[1] == repr(built_by)] or builders.get(built_by, [])
    return matches[0] if len(matches) == 1 else None


def _frames(tb: TracebackType | None) -> list[FrameType]:
    """The frames of a traceback, outermost first."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames
