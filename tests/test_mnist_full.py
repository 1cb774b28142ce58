"""suites/mnist_full.toml brings every MNIST reproduction together: each included suite's models are the same
jobs there (the store trains each once, and a suite run before or after mnist_full reuses them)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from rbench.plan import build_plan
from rbench.suite import load_suite

SUITES = Path(__file__).resolve().parents[1] / "suites"
PARTS = tomllib.loads((SUITES / "mnist_full.toml").read_text())["suite"]["include"]


def _train_jobs(path: Path, profile: str | None) -> dict[str, str]:
    """name of each trained model -> its train job key."""
    plan = build_plan(load_suite(path, profile))
    return {name: key for name, key in plan.trained.items() if plan.jobs[key].kind == "train"}


def test_mnist_full_includes_every_mnist_reproduction():
    assert set(PARTS) >= {"quickstart.toml", "szegedy2013.toml", "mlss_ensemble.toml", "ulicny2016.toml",
                          "beckova2020.toml"}


@pytest.mark.parametrize("profile", [None, "quick"])
def test_every_included_suites_models_are_the_same_jobs_in_mnist_full(profile):
    full = _train_jobs(SUITES / "mnist_full.toml", profile)
    owners: dict[str, list[str]] = {}
    for part in PARTS:
        jobs = _train_jobs(SUITES / part, profile)
        for name, key in jobs.items():
            assert full.get(name) == key, f"{part}: model {name!r} is another job in mnist_full"
            owners.setdefault(key, []).append(part)
    # models defined in several suites (the quickstart's LeNet, the Szegedy MLPs) are one job each: trained once
    shared = {key: parts for key, parts in owners.items() if len(parts) > 1}
    assert shared, "no model is shared between the included suites"
    assert {"quickstart.toml", "szegedy2013.toml"} <= set(shared[full["lenet"]])
