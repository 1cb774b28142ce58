"""A store on a disk that fills up: the jobs that do not fit fail with one line each, the process never
crashes, nothing corrupt or partial is left, and with room again the next run resumes to the same tables."""

from __future__ import annotations

import subprocess

import pytest
from support import rbench, run_values

from rbench.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs, enough for the tiny suite's models and a few of its sets (root only; skipped with the
    reason where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                         text=True)
    if out.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): {out.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_jobs_cleanly_and_the_run_resumes(tiny_reference, small_disk, tmp_path):
    suite, _, _, expected = tiny_reference
    store = small_disk / "store"
    out = rbench("run", str(suite), "--store", str(store), "--run-dir", str(tmp_path / "run"), "-q",
                 "--device", "cpu")
    assert out.returncode == 1, (out.returncode, out.stderr)  # failed jobs; not a crash (139) nor exit 2
    assert "Traceback" not in out.stdout + out.stderr and not out.stderr.strip()
    text = " ".join(out.stdout.split())
    assert "StoreWriteError: cannot write" in text and "MB free on its disk" in text
    stored = Store(store).keys()
    assert stored and not Store(store).temporaries()
    verify = rbench("cache", "verify", "--store", str(store))
    assert verify.returncode == 0 and " 0 corrupt" in verify.stdout
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # room again
    again = rbench("run", str(suite), "--store", str(store), "--run-dir", str(tmp_path / "run2"), "-q",
                   "--device", "cpu")
    assert again.returncode == 0, again.stderr
    assert run_values(tmp_path / "run2") == expected
