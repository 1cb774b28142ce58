"""The built-in plugins (``rbench.plugins.<kind>``), registered through the ``rbench`` entry-point group.

This package also re-exports the plugin manager's API (:mod:`rbench.manager`), so ``rbench.plugins`` is
where a user looks up plugins: ``rbench.plugins.get_plugin("attack", "pgd")``.
"""

from rbench.manager import KINDS, PluginInfo, Registry, build_registry, get_plugin, get_registry

__all__ = ["KINDS", "PluginInfo", "Registry", "build_registry", "get_plugin", "get_registry"]
