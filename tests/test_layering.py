"""Layering: the engine (benchmark/, the package rbench minus rbench.plugins) never imports a plugin module;
plugins reach the engine only through the entry-point group ``rbench``."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, rbench_imports


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


def test_the_public_api_is_imported_on_first_use():
    """``from rbench import Attack`` works as ever, each public name from the module defining it, and ``__all__``
    lists exactly those names; ``import rbench`` itself imports none of them."""
    import rbench

    assert set(rbench.__all__) == {"hookimpl", *rbench._DEFINED_IN}
    for name, module in rbench._DEFINED_IN.items():
        assert getattr(rbench, name) is getattr(importlib.import_module(f"rbench.{module}"), name)
    with pytest.raises(AttributeError, match="no attribute 'Atack'"):
        rbench.Atack  # noqa: B018
    assert not hasattr(rbench, "no.such") and not hasattr(rbench, "_private")
    # a submodule is an attribute once asked for, as when the package imported them all (a plugin's module doing
    # ``import rbench`` and subclassing ``rbench.defense.Defense`` failed to load, listed as failed)
    code = "import rbench; print(rbench.defense.Defense.__name__, rbench.errors.RbenchError.__name__)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["Defense", "RbenchError"]


def test_help_the_store_listing_and_the_report_code_start_without_torch(tmp_path):
    """``rbench --help``, ``--version`` (torch's version is read from its metadata) and ``cache ls``, and a process
    drawing a figure (rbench.report), import no torch (1.3 s of every start); listing the plugins imports it, of
    course."""
    code = "import sys, rbench, rbench.cli, rbench.report.figures, rbench.store; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False"]
    for args in (["--help"], ["--version"], ["cache", "ls", "--store", str(tmp_path / "store")]):
        out, imported = rbench_imports(*args)
        assert out.returncode == 0, out.stderr
        assert "torch" not in imported and "rbench.cli" in imported, args
    out, imported = rbench_imports("plugins")
    assert out.returncode == 0 and "torch" in imported  # the check is not vacuous
