"""Helpers shared by the tests (importable as ``support``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
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


def mlp_suite(tiny_suite: Path, extra: str, sources: list[str], attacks: list[str]) -> str:
    """The tiny suite's mlp (so its stored checkpoint is reused), the ``extra`` sections (attacks, defenses,
    models), and one table ``errors``: the error of ``sources`` under ``attacks`` on 64 test images (evaluation
    ``wb``)."""
    import json

    return Path(tiny_suite).read_text().split("[models.cnn]")[0] + extra + f"""
[evaluations.wb]
dataset = "mnist"
n = 64
sources = {json.dumps(sources)}
attacks = {json.dumps(attacks)}
[tables.errors]
evaluation = "wb"
rows = "attack"
columns = "model"
metric = "error"
"""


def rbench(*args: str, env: dict[str, str] | None = None, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run the installed ``rbench`` console script; returns the completed process (text output)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([RBENCH, *args], capture_output=True, text=True, env=full_env, timeout=timeout, **kw)


def rbench_imports(*args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``python -X importtime -m rbench ARGS``: the completed process, its stderr without the import lines, and the
    names of the modules it imported."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "rbench", *args], capture_output=True, text=True,
                         timeout=timeout)
    lines = out.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time")}
    out.stderr = "\n".join(line for line in lines if not line.startswith("import time"))
    return out, imported


def kill_and_resume(suite: Path, store: Path, run_dir: Path, kills: list[tuple[str, float | str]],
                    timeout: float = 600) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``rbench run`` once per kill point, each stopped by its kill point, then once to completion.

    A kill point is ``("time", seconds)`` (SIGKILL after that long), ``("fault", "name:n")`` (the process
    SIGKILLs itself at the n-th pass of the store's fault point ``name``, see ``rbench.store.fault_point``), or
    ``("term", seconds)`` / ``("term2", seconds)`` (SIGTERM after that long, to a run with one / two workers).
    Returns the final completed run and, per kill point tried, how it ended: "killed", "terminated" (exit code
    143 and no process of the run alive 10 s later), "orphans" (SIGTERM left a process of the run alive), or
    "finished" when the run completed before its kill point came (the remaining kill points are then skipped).
    """
    import signal
    import time

    args = [RBENCH, "run", str(suite), "--store", str(store), "--run-dir", str(run_dir), "-q", "--device", "cpu"]
    endings = []
    for kind, value in kills:
        env = dict(os.environ)
        if kind == "fault":
            env["RBENCH_FAULT_KILL"] = str(value)
        workers = ["--workers", "2"] if kind == "term2" else []
        proc = subprocess.Popen(args + workers, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        family: set[int] = set()
        if kind in ("time", "term", "term2"):
            deadline = time.monotonic() + float(value)
            while proc.poll() is None and time.monotonic() < deadline:
                family |= descendants(proc.pid)
                time.sleep(0.01)
            if proc.poll() is None:
                family |= descendants(proc.pid)
                proc.send_signal(signal.SIGKILL if kind == "time" else signal.SIGTERM)
        proc.wait(timeout=timeout)
        if proc.returncode == -signal.SIGKILL:
            endings.append("killed")
        elif proc.returncode == 128 + signal.SIGTERM:
            deadline = time.monotonic() + 10
            while any(alive(p) for p in family) and time.monotonic() < deadline:
                time.sleep(0.1)
            endings.append("orphans" if any(alive(p) for p in family) else "terminated")
        else:
            endings.append("finished")
        if endings[-1] == "finished":  # the store is complete: later kill points would find nothing to do
            break
    final = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return final, endings


def swap_entries(store: Path, a: str, b: str) -> None:
    """Swap every file of stored entries ``a`` and ``b`` (same kind), so each sits under the other's key."""
    folder = store / "objects"
    for path_a in sorted(p for p in folder.glob(f"{a[:2]}/{a}.*") if ".tmp-" not in p.name):
        path_b = folder / b[:2] / f"{b}{path_a.suffix}"
        tmp = path_a.with_name(f"{a}.swapping")
        path_a.rename(tmp)
        path_b.rename(path_a)
        tmp.rename(path_b)


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


def plugin_dist(folder: Path, name: str, source: str, editable: bool = False) -> dict[str, str]:
    """A real plugin distribution without pip: module ``<name>.py`` holding ``source`` (which defines the hook
    implementations) and ``<name>-0.1.dist-info`` declaring it under the ``rbench`` entry-point group, in
    ``folder``; with ``editable``, the dist-info's ``direct_url.json`` says so, as pip's ``install -e`` writes it.
    Returns the environment (PYTHONPATH) under which ``rbench`` and its worker processes load it."""
    import json
    import textwrap

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    info = folder / f"{name}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[rbench]\n{name} = {name}\n")
    if editable:
        record = {"url": folder.as_uri(), "dir_info": {"editable": True}}
        (info / "direct_url.json").write_text(json.dumps(record))
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def run_values(run_dir: Path) -> dict:
    """Every cell of a run folder's results.json: (table, row, column) -> value."""
    import json

    results = json.loads((Path(run_dir) / "results.json").read_text())
    return {(t["name"], c["row"], c["column"]): c["value"] for t in results["tables"] for c in t["cells"]}


def descendants(pid: int) -> set[int]:
    """PIDs of every living descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, frontier = set(), [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in out:
                out.add(child)
                frontier.append(child)
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` is a living (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def pip_install_example(example: Path, tmp: Path) -> tuple[Path, str]:
    """Pip-install the example distribution in ``example`` (not editable, from a copy, without build isolation)
    into its own target folder under ``tmp``; return the copy and the PYTHONPATH under which ``rbench`` finds it.

    Never into the shared venv: other test workers enumerate the venv's entry points at the same time, and a
    dist-info half written or half removed by pip is what they would see. The copy keeps the build's egg-info and
    build folders out of the source tree; no build isolation because the machine is offline and the venv's
    setuptools satisfies the build requirement.
    """
    import shutil

    src = tmp / example.name
    shutil.copytree(example, src, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    target = tmp / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                           "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    path = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH", "")) if p)
    return src, path


def flip_a_stored_bit(path: Path) -> None:
    """Flip one bit of a stored entry's data: inside an HDF5 file's first chunk of logits (the file also has
    padding, where a flip is harmless), else in the middle of the file."""
    data = bytearray(path.read_bytes())
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as f:
            offset = f["logits"].id.get_chunk_info(0).byte_offset
        data[offset + 17] ^= 0x10
    else:
        data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


class HeardWarnings:
    """An executor Observer that keeps only the warnings: (message, key of the job named or None)."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, str | None]] = []

    def started(self, job, device) -> None:
        pass

    def progress(self, key, completed, total, text) -> None:
        pass

    def finished(self, job, result) -> None:
        pass

    def warning(self, message, job=None) -> None:
        self.warnings.append((message, None if job is None else job.key))


def cli_in_process(capsys, *args: str) -> tuple[int, str]:
    """``rbench ARGS`` in this process (as fast as a bad input should fail): exit code and stderr; no traceback."""
    import pytest

    from rbench.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["rbench", *args])
        with pytest.raises(SystemExit) as end:
            main()
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return end.value.code, out.err


#: the smallest valid suite (one MLP, one attack, one table): edited by the suite-validation tests
BASE_SUITE = """
[suite]
name = "s"

[datasets.mnist]
plugin = "mnist"

[models.mlp]
plugin = "mlp"
dataset = "mnist"

[attacks.pgd]
plugin = "pgd"
params = { eps = 0.1, steps = 5 }

[evaluations.ev]
dataset = "mnist"
n = 10
sources = ["mlp"]
attacks = ["pgd"]

[tables.t]
evaluation = "ev"
rows = "attack"
columns = "model"
metric = "error"
"""


@contextlib.contextmanager
def answering(answer: Callable[[bytes], bytes | None]) -> Iterator[int]:
    """A server on 127.0.0.1 that reads what a client sends first and writes ``answer(request)`` (None: nothing,
    the connection held open for 3 s); yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                reply = answer(conn.recv(65536))
                if reply is not None:
                    conn.sendall(reply)
                stop.wait(3)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
