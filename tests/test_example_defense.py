"""Integration test of a third-party defense plugin: pip-install examples/rbench-example-randresize into a
folder of its own, check that ``rbench plugins`` lists it, and run the distribution's own tests (which run the
defense conformance kit, ``rbench.testing.check_defense``). The venv itself is never changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import pip_install_example

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = REPO / "examples" / "rbench-example-randresize"
DIST = "rbench-example-randresize"
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


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RBENCH_PLUGINS", "RBENCH_DISABLE_PLUGINS")}
    env["RBENCH_DATA"] = str(SHARED_DATA)
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
    rows = _plugins()
    row = _find(rows, "defense", "random_resize_pad")
    assert row is not None, "the installed example's defense is not listed"
    assert row["distribution"] == DIST and row["version"].startswith("0.1.0+files.")
    assert row["entry_point"] == "rbench_example_randresize" and row["error"] is None
    assert _find(rows, "defense", "lowpass") is not None  # next to the built-in defenses
    assert _find(_plugins(RBENCH_PLUGINS=""), "defense", "random_resize_pad") is None  # built-ins only


def test_example_own_tests_pass(installed):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE_DIR / "tests")],
                          capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_suite_runs_with_the_defense_in_worker_processes(installed, tmp_path):
    """The installed defense runs in a suite -- in two spawned worker processes, which find it through its entry
    point as the coordinator does -- and a re-run computes nothing and gives the same tables (its random draws are
    seeded from the jobs' keys)."""
    args = [RBENCH, "run", str(installed / "suite.toml"), "--store", str(tmp_path / "store"), "-q",
            "--device", "cpu", "--workers", "2"]
    first = subprocess.run([*args, "--run-dir", str(tmp_path / "r1")], capture_output=True, text=True,
                           env=_env(), timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    results = json.loads((tmp_path / "r1" / "results.json").read_text())
    tables = {t["name"]: t for t in results["tables"]}
    assert "EOT over 4 draws" in tables["adaptive"]["title"]
    cells = {(c["row"], c["column"]): c["value"] for c in tables["adaptive"]["cells"]}
    assert cells[("clean", "cnn_randresize")] < 50 and cells[("fgsm(eps=0.2)", "cnn_randresize")] > 0
    again = subprocess.run([*args, "--run-dir", str(tmp_path / "r2")], capture_output=True, text=True, env=_env(),
                           timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    second = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert {j["status"] for j in second["jobs"].values()} == {"cached"}
    assert [t["cells"] for t in second["tables"]] == [t["cells"] for t in results["tables"]]
