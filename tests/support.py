"""Helpers shared by the tests (importable as ``support``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RBENCH_DATA") or REPO.parent / "shared" / "data")
RBENCH = str(Path(sys.executable).parent / "rbench")

TINY_SUITE = """
[suite]
name = "tiny"
seed = 3

[datasets.mnist]
plugin = "mnist"

[models.mlp]
plugin = "mlp"
params = { widths = [32] }
dataset = "mnist"
n_train = 2000
trainer = { params = { epochs = 1, batch_size = 32, lr = 3e-3 } }

[models.cnn]
plugin = "lenet"
params = { channels = [4, 8], hidden = 32 }
dataset = "mnist"
n_train = 2000
trainer = { params = { epochs = 1, batch_size = 32, lr = 3e-3 } }

[attacks.fgsm]
plugin = "fgsm"
grid = { eps = [0.1, 0.3] }

[attacks.pgd]
plugin = "pgd"
params = { eps = 0.2, steps = 3 }

[attacks.noise]
plugin = "gaussian_noise"
params = { norm = "l2", eps = 3.0 }

[evaluations.wb]
dataset = "mnist"
n = 64
batch_size = 25
sources = ["mlp", "cnn"]
attacks = ["fgsm", "pgd", "noise"]

[evaluations.tr]
dataset = "mnist"
n = 64
sources = ["mlp", "cnn"]
targets = ["mlp", "cnn"]
attacks = ["pgd"]

[tables.errors]
evaluation = "wb"
rows = "attack"
columns = "model"
metric = "error"

[tables.summary]
evaluation = "wb"
rows = "attack"
columns = "metric"
metrics = ["success_rate", { plugin = "distortion", params = { norm = "linf" } }, "clean_error"]
where = { model = "cnn" }

[tables.transfer]
evaluation = "tr"
rows = "source"
columns = "target"
metric = "error"
where = { attack = "pgd" }
"""


def rbench(*args: str, env: dict[str, str] | None = None, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run the installed ``rbench`` console script; returns the completed process (text output)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([RBENCH, *args], capture_output=True, text=True, env=full_env, timeout=timeout, **kw)
