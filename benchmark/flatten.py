"""One self-contained TOML document for a suite: its includes merged, its profile applied, its paths absolute.

``rbench eval --suite`` adds a model to an existing suite this way and writes the result into the run folder, so
``rbench run RUN_DIR/suite.toml`` reproduces the run without the original files' relative layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from rbench.errors import PluginError, RbenchError
from rbench.manager import get_registry
from rbench.suite_files import merge_files
from rbench.suite_schema import SECTIONS

#: the sections whose entries name a plugin of this kind in ``plugin`` (with ``params`` relative to their file)
_PLUGIN_KIND = {"datasets": "dataset", "defenses": "defense", "models": "model", "attacks": "attack"}


def _absolute_params(kind: str, entry: dict[str, Any], base: Path) -> None:
    """Rewrite, in place, the file paths among ``entry``'s params (relative to ``base``, the folder of the file
    that defined it) as absolute paths, through the plugin's optional ``absolute_params(params, base)`` hook."""
    plugin, params = entry.get("plugin"), entry.get("params")
    if not plugin or not params:
        return
    try:
        obj = get_registry().get(kind, plugin).obj
    except PluginError:
        return  # the suite's own validation names it
    hook = getattr(obj, "absolute_params", None)
    if callable(hook):
        entry["params"] = hook(dict(params), base)


def flatten_suite(path: str | Path, profile: str | None = None) -> dict[str, Any]:
    """The suite at ``path`` as one TOML-ready document: includes merged (each entry once), ``profile`` applied
    (the result has no profiles), published files and plugin file paths made absolute. Raises SuiteError like
    :func:`rbench.suite.load_suite` for a malformed suite."""
    meta, merged = merge_files(path, profile)
    head = meta.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    head.pop("include", None)
    head["name"] = meta.name
    if merged.published:
        head["published"] = list(merged.published)
    doc: dict[str, Any] = {"suite": head}
    for section in SECTIONS:
        entries = {}
        for name, spec in merged.sections[section].items():
            entry = spec.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
            if section in _PLUGIN_KIND:
                _absolute_params(_PLUGIN_KIND[section], entry, Path(merged.origin[(section, name)]).parent)
            entries[name] = entry
        if entries:
            doc[section] = entries
    return doc


def suite_text(doc: dict[str, Any], header: str = "", where: object = "the suite") -> str:
    """``doc`` as TOML, ``header`` as comment lines on top; RbenchError naming ``where`` for a value TOML cannot
    hold (None, a nested None, an object)."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    try:
        return comment + tomli_w.dumps(doc)
    except (TypeError, ValueError) as exc:
        raise RbenchError(f"{where}: cannot write the generated suite as TOML ({exc})") from None


def write_suite(doc: dict[str, Any], path: Path, header: str = "") -> None:
    """Write ``doc`` as TOML to ``path`` (``header``: comment lines put on top)."""
    path.write_text(suite_text(doc, header, path), encoding="utf-8")
