"""Integration test of a third-party plugin: pip-install examples/rbench-example-mifgsm into a folder of its own,
then drive the installed ``rbench`` console script in subprocesses (discovery, allow/deny lists, a real run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import pip_install_example

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = REPO / "examples" / "rbench-example-mifgsm"
DIST = "rbench-example-mifgsm"
RBENCH = str(Path(sys.executable).parent / "rbench")
SHARED_DATA = Path(os.environ.get("RBENCH_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example distribution pip-installed into its own folder (see ``support.pip_install_example``), on the
    PYTHONPATH of every ``rbench`` this module starts; yields the source copy (which holds its suite)."""
    src, path = pip_install_example(EXAMPLE_DIR, tmp_path_factory.mktemp("example"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", path)
        yield src


def _env(tmp: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RBENCH_PLUGINS", "RBENCH_DISABLE_PLUGINS")}
    env["RBENCH_DATA"] = str(SHARED_DATA)
    if tmp is not None:
        env["RBENCH_STORE"] = str(tmp / "store")
    env.update(extra)
    return env


def _plugins(**extra: str) -> list[dict]:
    proc = subprocess.run([RBENCH, "plugins", "--json"], capture_output=True, text=True, env=_env(**extra),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["plugins"]


def _find(rows: list[dict], kind: str, name: str) -> dict | None:
    return next((r for r in rows if r["kind"] == kind and r["name"] == name), None)


def test_listed_with_its_distribution_and_version(installed):
    row = _find(_plugins(), "attack", "mifgsm")
    assert row is not None, "the installed example's attack is not listed"
    assert row["distribution"] == DIST
    assert row["version"].startswith("0.1.0+files.")  # keyed on the files pip installed too (rbench.editable)
    assert row["entry_point"] == "rbench_example_mifgsm"
    assert row["error"] is None


def test_empty_allow_list_loads_builtins_only(installed):
    rows = _plugins(RBENCH_PLUGINS="")
    assert _find(rows, "attack", "mifgsm") is None
    assert _find(rows, "attack", "pgd") is not None and _find(rows, "model", "mlp") is not None
    assert {r["distribution"] for r in rows} == {"rbench"}


def test_allow_list_naming_the_plugin_loads_it(installed):
    for allowed in ("mifgsm", DIST):
        rows = _plugins(RBENCH_PLUGINS=allowed)
        assert _find(rows, "attack", "mifgsm") is not None, allowed
        assert _find(rows, "attack", "pgd") is not None, allowed


def test_deny_list_hides_it(installed):
    for denied in ("mifgsm", DIST):
        rows = _plugins(RBENCH_DISABLE_PLUGINS=denied)
        assert _find(rows, "attack", "mifgsm") is None, denied
        assert _find(rows, "attack", "pgd") is not None, denied


def test_suite_runs_with_the_plugin(installed, tmp_path):
    suite = installed / "suite.toml"
    run_dir = tmp_path / "run"
    proc = subprocess.run([RBENCH, "run", str(suite), "--store", str(tmp_path / "store"), "--run-dir", str(run_dir),
                           "-q"], capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    results = json.loads((run_dir / "results.json").read_text())
    # the run folder says which version of the third-party plugin made its numbers
    version = _find(_plugins(), "attack", "mifgsm")["version"]  # 0.1.0+files.<digest>: the keyed version
    assert results["provenance"]["plugins"]["attack mifgsm"] == f"{version} ({DIST})"
    assert results["provenance"]["plugins"]["attack bim"].endswith(" (rbench)")
    assert results["provenance"]["packages"][DIST] == "0.1.0"
    cells = [c for t in results["tables"] for c in t["cells"] if c["row"].startswith("mifgsm(")]
    assert cells, "no table row uses the mifgsm attack"
    for cell in cells:
        assert cell["error"] is None
        assert isinstance(cell["value"], int | float) and 0 <= cell["value"] <= 100


def test_suite_is_refused_when_the_plugin_is_not_allowed(installed, tmp_path):
    proc = subprocess.run([RBENCH, "validate", str(installed / "suite.toml")], capture_output=True, text=True,
                          env=_env(tmp_path, RBENCH_PLUGINS=""), timeout=120)
    assert proc.returncode == 2
    assert "mifgsm" in proc.stderr and "Traceback" not in proc.stderr


def test_example_own_tests_pass(installed):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE_DIR / "tests")],
                          capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert " passed" in proc.stdout


def test_a_reinstall_is_keyed_on_the_files_pip_installed(installed, tmp_path):
    """A released install was keyed on its version alone: ``pip install --force-reinstall`` of changed code under
    the same version was served the old code's results. Its key holds the hashes pip recorded for the installed
    files: the same files installed from elsewhere into another folder key the same; a changed file keys anew."""
    import shutil

    def keyed(folder: Path, attempt: str) -> str:
        _, path = pip_install_example(folder, tmp_path / f"install-{attempt}")
        row = _find(_plugins(PYTHONPATH=path), "attack", "mifgsm")
        assert row is not None
        return row["version"]

    first = _find(_plugins(), "attack", "mifgsm")["version"]
    copy = tmp_path / "elsewhere" / EXAMPLE_DIR.name
    shutil.copytree(installed, copy, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    assert keyed(copy, "same") == first  # another source folder, another target folder: the same files
    module = next(copy.rglob("rbench_example_mifgsm/*.py"))
    module.write_text(module.read_text() + "\n# a changed file, the same version\n")
    changed = keyed(copy, "changed")
    assert changed.startswith("0.1.0+files.") and changed != first
