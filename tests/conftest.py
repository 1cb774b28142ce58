"""Shared fixtures: real MNIST from ../shared/data (or RBENCH_DATA), a fresh store per test, tiny suites."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from support import SHARED_DATA, TINY_SUITE


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path_factory):
    """Every test reads the real data files and writes to its own store, never the user's."""
    if not SHARED_DATA.exists():
        pytest.skip(f"no MNIST data folder at {SHARED_DATA}")
    monkeypatch.setenv("RBENCH_DATA", str(SHARED_DATA))
    monkeypatch.setenv("RBENCH_OFFLINE", "1")
    monkeypatch.setenv("RBENCH_STORE", str(tmp_path_factory.mktemp("store")))
    monkeypatch.setenv("RBENCH_DATA_CACHE", str(tmp_path_factory.mktemp("datacache")))


@pytest.fixture
def write_suite(tmp_path):
    """write_suite(text, name="suite.toml") -> Path: a suite file in the test's folder."""

    def write(text: str, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def tiny_suite(write_suite) -> Path:
    return write_suite(TINY_SUITE, "tiny.toml")

