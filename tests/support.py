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


def kill_and_resume(suite: Path, store: Path, run_dir: Path, kills: list[tuple[str, float | str]],
                    timeout: float = 600) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``rbench run`` once per kill point, each killed with SIGKILL, then once to completion.

    A kill point is ``("time", seconds)`` (SIGKILL after that long) or ``("fault", "name:n")`` (the process
    SIGKILLs itself at the n-th pass of the store's fault point ``name``, see ``rbench.store.fault_point``).
    Returns the final completed run and, per kill point tried, how it ended ("killed", or "finished" when the
    run completed before its kill point came; the remaining kill points are then skipped).
    """
    import signal
    import time

    args = [RBENCH, "run", str(suite), "--store", str(store), "--run-dir", str(run_dir), "-q", "--device", "cpu"]
    endings = []
    for kind, value in kills:
        env = dict(os.environ)
        if kind == "fault":
            env["RBENCH_FAULT_KILL"] = str(value)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        if kind == "time":
            deadline = time.monotonic() + float(value)
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=timeout)
        endings.append("killed" if proc.returncode == -signal.SIGKILL else "finished")
        if endings[-1] == "finished":  # the store is complete: later kill points would find nothing to do
            break
    final = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return final, endings


def small_mnist_model(widths: list[int], activation: str = "relu", lr: float = 1e-3, epochs: int = 1,
                      n_train: int = 5000, n_test: int = 200):
    """(model, x_test, y_test): an MLP trained briefly on real MNIST (seeded), in eval mode with frozen
    parameters as the engine hands models to attacks, and the first ``n_test`` test images."""
    import torch
    import torch.nn.functional as F

    from rbench.data import load_split
    from rbench.plugins import get_plugin

    torch.manual_seed(0)
    images, labels = load_split("mnist", "train")
    x = torch.tensor(images[:n_train].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    y = torch.tensor(labels[:n_train])
    plugin = get_plugin("model", "mlp")
    model = plugin.build(plugin.Params(widths=widths, activation=activation))
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(epochs):
        for i in range(0, n_train, 50):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 50]), y[i:i + 50]).backward()
            opt.step()
    model.zero_grad(set_to_none=True)
    model.eval().requires_grad_(False)
    test_x, test_y = load_split("mnist", "test")
    xt = torch.tensor(test_x[:n_test].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    return model, xt, torch.tensor(test_y[:n_test])
