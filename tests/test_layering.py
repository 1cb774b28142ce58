"""Layering: the engine (benchmark/, the package rbench minus rbench.plugins) never imports a plugin module;
plugins reach the engine only through the entry-point group ``rbench``."""

from __future__ import annotations

import ast
from pathlib import Path

from support import REPO


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("rbench.plugins"):
            names.add(node.value)  # a module named to importlib, __import__ or a string annotation
    return names


def test_the_engine_imports_no_plugin():
    offenders = {f"{path.relative_to(REPO)}: {name}"
                 for path in sorted((REPO / "benchmark").rglob("*.py"))
                 for name in _imports(path) if name == "rbench.plugins" or name.startswith("rbench.plugins.")}
    assert not offenders, sorted(offenders)


def test_the_check_sees_a_plugin_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from rbench.plugins.metrics.calibration import auroc\n")
    assert "rbench.plugins.metrics.calibration" in _imports(probe)
    probe.write_text("import importlib\ncalibration = importlib.import_module('rbench.plugins.metrics.calibration')\n")
    assert "rbench.plugins.metrics.calibration" in _imports(probe)
