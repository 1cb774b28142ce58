"""The Ray executor (``--executor ray``): on a local Ray cluster started here (one head node on 127.0.0.1, 2 CPUs,
shared by the tests of this file), the tiny suite gives the local executor's tables even though a worker is killed
mid-job (Ray retries it); a job whose worker always dies fails alone after its retries; a cluster run and a local
run share one store, computing each job once; bad options are one line, before any work; SIGTERM while the run's
own Ray instance starts stops the run cleanly. Two Ray runs in all (each costs a driver and fresh Ray workers): to
stay within make test's budget, the fresh-store run is at once the kill test and the shared-store test. A Ray-only
run of the quickstart against the local executor, SIGTERM mid-run and Ctrl-C while starting are `full` (make
check-full)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from support import RBENCH, alive, answering, cli_in_process, descendants, rbench, run_values

from rbench.errors import RbenchError
from rbench.executors import configure
from rbench.executors.grpc_probe import SETTINGS, frame
from rbench.executors.ray_executor import RayParams, forwarded_env, job_resources, local_instance
from rbench.store import Store

RAY = str(Path(sys.executable).parent / "ray")
#: Ray on this machine only: no token, no usage report (nothing written to ~/.ray)
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


# -- without a cluster -----------------------------------------------------------------------------------------
def test_resources_per_job_kind():
    params = RayParams(gpu_fraction=0.25, num_cpus=2)
    assert job_resources("train", params, gpus=True) == {"num_cpus": 2, "num_gpus": 1.0}
    assert job_resources("transform", params, gpus=True)["num_gpus"] == 1.0
    assert job_resources("attack", params, gpus=True) == {"num_cpus": 2, "num_gpus": 0.25}
    assert job_resources("eval", params, gpus=True)["num_gpus"] == 0.25
    assert job_resources("attack", params, gpus=False) == {"num_cpus": 2, "num_gpus": 0.0}
    assert job_resources("train", RayParams(), gpus=False)["num_gpus"] == 0.0


def test_job_sizes_no_node_holds_are_refused_and_a_private_instance_runs_workers_jobs_at_once():
    from rbench.executors.ray_executor import check_fits, task_cpus

    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": False, "Resources": {"CPU": 64.0}}]
    check_fits(nodes, RayParams(num_cpus=2), gpus=False)
    with pytest.raises(RbenchError, match=r"--num-cpus 4: no node of the Ray cluster has 4 CPUs \(the largest has "
                                          r"2 CPUs\)"):
        check_fits(nodes, RayParams(num_cpus=4), gpus=False)  # a dead node's CPUs do not count
    split = [{"Alive": True, "Resources": {"CPU": 8.0}}, {"Alive": True, "Resources": {"CPU": 1.0, "GPU": 1.0}}]
    check_fits(split, RayParams(num_cpus=1), gpus=True)
    with pytest.raises(RbenchError, match="no node of the Ray cluster has 2 CPUs and a GPU"):
        check_fits(split, RayParams(num_cpus=2), gpus=True)  # CPUs on one node, the GPU on another
    check_fits([{"Alive": True, "Resources": {"CPU": 0.0}}], RayParams(num_cpus=4), gpus=False)  # autoscaling
    for workers, num_cpus in ((2, 0.00015), (3, 0.5), (2, 1.0), (1, 2.0), (6, 0.5)):
        share = task_cpus(workers, RayParams(num_cpus=num_cpus))
        cpus = local_instance(["cpu"], workers, RayParams(num_cpus=num_cpus))["num_cpus"]
        assert share >= num_cpus and int(cpus / share + 1e-9) == workers


def test_a_ray_instance_started_for_a_run_is_sized_by_devices_and_workers(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert local_instance(["cpu"], 1, RayParams()) == {"num_cpus": 1, "num_gpus": 0, "cuda_visible_devices": None}
    assert local_instance(["cuda:1", "cuda:1", "cuda:3"], 6, RayParams(num_cpus=0.5)) == \
        {"num_cpus": 3, "num_gpus": 2, "cuda_visible_devices": "1,3"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")  # cuda:N is the N-th visible device
    assert local_instance(["cuda:0", "cuda:2"], 2, RayParams())["cuda_visible_devices"] == "4,6"


def test_a_private_instance_leaves_the_environment_as_it_found_it(monkeypatch):
    """Ray sets RAY_AUTH_MODE=token in the driver itself; left set, it kept a second run of the same process (an
    API user's) from getting its token, and that run's Ray instance never started. The token is one per process
    (Ray's driver keeps the first it read); the temporary session folder goes with the run; settings the user made
    are kept."""
    from rbench.executors.ray_executor import AUTH_VARS, private_instance

    for var in (*AUTH_VARS, "RAY_TMPDIR"):
        monkeypatch.delenv(var, raising=False)
    tokens = []
    for _ in range(2):
        with private_instance() as temp:
            tokens.append(os.environ["RAY_AUTH_TOKEN"])
            os.environ["RAY_AUTH_MODE"] = "token"  # what ray.init does
            assert temp is not None and Path(temp).is_dir()
        assert not any(var in os.environ for var in AUTH_VARS) and not Path(temp).exists()
    assert tokens[0] == tokens[1] and len(tokens[0]) == 64
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_TMPDIR", "/somewhere")
    with private_instance() as temp:
        assert temp is None and "RAY_AUTH_TOKEN" not in os.environ
    assert os.environ["RAY_AUTH_MODE"] == "disabled"


def test_options_are_validated_and_rbench_settings_reach_the_tasks(monkeypatch):
    executor, params = configure("ray", {"--gpu-fraction": 0.5, "--address": None, "--max-retries": 1,
                                         "--num-cpus": 1.0})
    assert executor.name == "ray" and params == RayParams(gpu_fraction=0.5, max_retries=1, num_cpus=1)
    with pytest.raises(RbenchError, match=r"^--num-cpus 2: sizes the jobs on a cluster \(--address\); on the Ray "
                                          "instance rbench starts for a run, --workers jobs run at once"):
        configure("ray", {"--num-cpus": 2.0})  # it had no effect there
    for options, message in (({"--gpu-fraction": 0.0}, "--gpu-fraction 0.0: Input should be greater than or equal "
                                                        "to 0.0001"),
                             ({"--num-cpus": 0.0}, "--num-cpus 0.0: Input should be greater than or equal to 0.0001"),
                             ({"--num-cpus": 1e-9}, "--num-cpus 1e-09: Input should be greater than or equal"),
                             ({"--num-cpus": float("inf")}, "--num-cpus inf: Input should be a finite number"),
                             ({"--gpu-fraction": 1.5}, "--gpu-fraction 1.5: Input should be less than or equal"),
                             ({"--gpu-fraction": float("nan")}, "--gpu-fraction nan: Input should be a finite"),
                             ({"--max-retries": -1}, "--max-retries -1")):
        with pytest.raises(RbenchError, match=message):
            configure("ray", options)
    with pytest.raises(RbenchError, match="--address: executor 'local' takes no such option"):
        configure("local", {"--address": "auto"})
    assert configure("local", {"--address": None, "--gpu-fraction": None})[1].model_dump() == {}
    monkeypatch.setenv("RBENCH_FAULT_KILL", "mid-write:2")
    assert forwarded_env()["RBENCH_FAULT_KILL"] == "mid-write:2" and "PATH" not in forwarded_env()
    monkeypatch.setenv("RBENCH_DATA", "shared/data")  # a task runs in the folder its node's Ray started in
    assert forwarded_env()["RBENCH_DATA"] == str(Path.cwd() / "shared" / "data")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's cuBLAS workspace, kept by GPU jobs
    assert forwarded_env()["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_without_ray_installed_the_choice_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(RbenchError, match=r"executor 'ray' needs the ray extra: pip install 'rbench\[ray\]'"):
        configure("ray", {})


def test_bad_options_stop_the_run_before_any_work(tiny_suite, tmp_path, capsys, monkeypatch):
    for name, value in RAY_ENV.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)  # a web server, not Ray
    http_port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    http2 = contextlib.ExitStack()  # an HTTP/2 server that is not gRPC: answers the preface, then nothing
    http2_port = http2.enter_context(answering(lambda request: frame(SETTINGS, 0, 0, b"")))
    cases = ((["--address", "127.0.0.1:6379"], "--address: executor 'local' takes no such option"),
             (["--executor", "ray", "--gpu-fraction", "0"], "--gpu-fraction 0.0: Input should be greater than or "),
             (["--executor", "ray", "--gpu-fraction", "1.5"], "--gpu-fraction 1.5: Input should be less than or "),
             (["--num-cpus", "2"], "--num-cpus: executor 'local' takes no such option"),
             (["--executor", "ray", "--num-cpus", "-1"], "--num-cpus -1.0: Input should be greater than or equal"),
             (["--executor", "ray", "--num-cpus", "inf"], "--num-cpus inf: Input should be a finite number"),
             (["--executor", "ray", "--address", f"127.0.0.1:{http_port}"],
              f"something answers at 127.0.0.1:{http_port}, but not a Ray cluster"),
             (["--executor", "ray", "--address", f"127.0.0.1:{http2_port}"],
              f"something answers at 127.0.0.1:{http2_port}, but not a Ray cluster"),
             (["--executor", "ray", "--address", f"127.0.0.1:{port}"], f"no Ray cluster answers at 127.0.0.1:{port}"),
             (["--executor", "ray", "--address", "nonsense"], "--address 'nonsense': give HOST:PORT"),
             (["--executor", "ray", "--address", "127.0.0.1:99999"], "port 99999 is out of range (1-65535)"))
    for args, message in cases:
        started = time.monotonic()
        code, err = cli_in_process(capsys, "run", str(tiny_suite), "--store", str(tmp_path / "store"), "--run-dir",
                         str(tmp_path / "run"), "-q", *args)
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert time.monotonic() - started < 10  # not Ray's minute of retries
        assert not (tmp_path / "store").exists() and not (tmp_path / "run").exists()
    server.shutdown()
    http2.close()
    code, err = cli_in_process(capsys, "run", str(tiny_suite), "--dry-run", "--executor", "local", "--max-retries", "2")
    assert code == 2 and "--max-retries: executor 'local' takes no such option" in err, err


# -- on a local cluster ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(request):
    """A Ray head node on 127.0.0.1 with 2 CPUs, in its own session, with its files in a temporary folder (short:
    Ray's socket paths must fit in 107 bytes); every process of it is killed at the end, whatever happened.
    Yields (address, environment for rbench). The tiny suite's local reference run is made while Ray starts."""
    temp = tempfile.mkdtemp(prefix="rbray-")
    env = {**os.environ, **RAY_ENV}
    start = subprocess.Popen([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", "0", "--temp-dir",
                              temp, "--include-dashboard=false", "--num-cpus", "2", "--object-store-memory",
                              "100000000", "--disable-usage-stats"], env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pgid = start.pid  # the session (and process group) of every process of the cluster
    try:
        request.getfixturevalue("tiny_reference")
        output = start.communicate(timeout=120)[0]
        assert start.returncode == 0, output
        address = (Path(temp) / "ray_current_cluster").read_text().strip()
        yield address, RAY_ENV
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            start.kill()
            start.communicate(timeout=10)
        members = {int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat") if _pgid(p) == pgid}
        members |= {d for m in members for d in descendants(m)}
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in members) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(temp, ignore_errors=True)


def _pgid(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def _ray_run(cluster, suite, store: Path, run_dir: Path, *extra: str, env: dict | None = None):
    address, ray_env = cluster
    return rbench("run", str(suite), "--store", str(store), "--run-dir", str(run_dir), "-q", "--executor", "ray",
                  "--address", address, *extra, env={**ray_env, **(env or {})})


def test_a_cluster_that_cannot_take_the_run_refuses_it_before_the_store_is_made(cluster, tiny_reference, tmp_path):
    """The cluster is joined while the options are checked: a job size no node holds (as a token the cluster wants)
    is one line, exit 2, with no store and no run folder made (it came after the store's folders)."""
    suite = tiny_reference[0]
    out = _ray_run(cluster, suite, tmp_path / "store", tmp_path / "run", "--num-cpus", "64")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == ("rbench: error: --num-cpus 64: no node of the Ray cluster has 64 "
                                                   "CPUs (the largest has 2 CPUs): its jobs would wait for ever")
    assert not (tmp_path / "store").exists() and not (tmp_path / "run").exists()


def _jobs(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())["jobs"]


@pytest.mark.slow
def test_a_cluster_run_beside_a_local_run_gives_the_local_tables_though_a_worker_is_killed(cluster, tiny_reference,
                                                                                          tmp_path):
    """A fresh store, a Ray run and a local run on it at once (the local one starts once a Ray task computes: a
    key's lock file appears). The first Ray worker that has written a checkpoint's weights dies before the sidecar
    (only that one: the retry runs in a fresh worker, and only Ray's workers get the fault). Both runs complete with
    the local tables, every job computed once by one of them, nothing corrupt or partial left; a third run (Ray,
    in this process: it needs no worker) finds everything stored."""
    from rich.console import Console

    from rbench.gc import collect
    from rbench.runner import run_suite

    suite, _, _, expected = tiny_reference
    address, ray_env = cluster
    marker = tmp_path / "killed"
    common = ["run", str(suite), "--store", str(tmp_path / "store"), "-q"]
    ray_run = subprocess.Popen([RBENCH, *common, "--run-dir", str(tmp_path / "ray"), "--executor", "ray",
                                "--address", address],
                               env={**os.environ, **ray_env, "RBENCH_FAULT_KILL": "between-weights-and-sidecar:1",
                                    "RBENCH_FAULT_ONCE": str(marker)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "store").glob("locks/*.lock")) and ray_run.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    local = subprocess.Popen([RBENCH, *common, "--run-dir", str(tmp_path / "local"), "--device", "cpu"],
                             env={**os.environ, **ray_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [proc.communicate(timeout=600) for proc in (ray_run, local)]
    for proc, (_, err) in zip((ray_run, local), outputs, strict=True):
        assert proc.returncode == 0, err
    assert marker.exists()  # a Ray worker was killed
    # Ray's notice of the dead worker and its retry is on stderr, not among the tables (it went to stdout)
    assert "(raylet)" not in outputs[0][0] and outputs[0][0].strip(), outputs[0][0][:500]
    runs = [_jobs(tmp_path / name) for name in ("ray", "local")]
    assert set(runs[0]) == set(runs[1])
    for key in runs[0]:  # computed once: done by one run, read by the other
        assert sorted((runs[0][key]["status"], runs[1][key]["status"])) == ["cached", "done"], key
    # Which run computes which job is a race: once the killed worker frees its lock, the local run may take every
    # job, the retried one included (CI saw it), so the cluster's share is not asserted; the marker above shows a Ray
    # worker did compute (it had written weights when it died).
    assert all(j["device"].startswith("cpu@") for j in runs[0].values() if j["status"] == "done")  # device@node
    assert run_values(tmp_path / "ray") == run_values(tmp_path / "local") == expected
    store = Store(tmp_path / "store")
    assert all(store.verify(key) == "ok" for key in store.keys())  # rbench cache verify: else CorruptEntry
    collect(store, [], None, dry_run=False)  # rbench cache gc: what the killed write left
    assert not store.temporaries()
    again = run_suite(suite, profile=None, store=store, run_dir=tmp_path / "again", device="cpu", workers=None,
                      executor="ray", console=Console(quiet=True), quiet=True,
                      executor_options={"--address": address})
    assert {r.status for r in again.job_results.values()} == {"cached"}
    assert run_values(tmp_path / "again") == expected


@pytest.mark.slow
def test_an_entry_a_ray_task_finds_corrupt_is_reported_by_the_driver(cluster, tiny_reference, tmp_path,
                                                                     monkeypatch):
    """An entry the runner's own check did not see fail (it turned corrupt later, or another process held it) is
    met by the Ray task under its lock: quarantined, recomputed, and the warning reaches the driver's observer
    with the task's result, as with the local executor (tests/test_validity.py)."""
    from support import HeardWarnings, flip_a_stored_bit

    from rbench.plan import build_plan
    from rbench.suite import load_suite

    suite, reference_store, reference_run, _ = tiny_reference
    address, ray_env = cluster
    for name, value in ray_env.items():
        monkeypatch.setenv(name, value)
    shutil.copytree(reference_store, tmp_path / "store")
    key = next(k for k, j in _jobs(reference_run).items() if j["label"] == "eval mlp on clean mnist/test")
    flip_a_stored_bit(Store(tmp_path / "store").paths(key)[0])
    plan = build_plan(load_suite(suite))
    executor, params = configure("ray", {"--address": address})
    heard = HeardWarnings()
    results = executor.run(plan, Store(tmp_path / "store"), [plan.jobs[key]], devices=["cpu"], workers=1,
                           observer=heard, params=params)
    assert results[key].status == "done" and results[key].device.startswith("cpu@")
    [(message, about)] = heard.warnings
    assert about == key and message.startswith(f"store entry {key} is corrupt (") and "moved to " in message
    assert Store(tmp_path / "store").verify(key) == "ok"


def test_every_job_a_ray_task_computes_is_started_before_it_finishes(cluster, tiny_reference, tmp_path, monkeypatch):
    """A task's start message travels through the events actor, apart from its result: for short jobs the result
    came first and the start was dropped (11 of 12 evaluations never 'started' for the observer, so the progress
    display and rbench_job_started missed them). Each computed job is now started, once, before it finishes."""
    from support import HeardWarnings

    from rbench.plan import build_plan
    from rbench.suite import load_suite

    class Heard(HeardWarnings):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[tuple[str, str]] = []

        def started(self, job, device) -> None:
            self.events.append(("started", job.key))

        def finished(self, job, result) -> None:
            self.events.append((result.status, job.key))

    suite, reference_store, _, _ = tiny_reference
    address, ray_env = cluster
    for name, value in ray_env.items():
        monkeypatch.setenv(name, value)
    shutil.copytree(reference_store, tmp_path / "store")
    store = Store(tmp_path / "store")
    plan = build_plan(load_suite(suite))
    jobs = [job for job in plan.jobs.values() if job.kind == "eval"][:8]
    for job in jobs:
        for path in store.paths(job.key):
            path.unlink()
    executor, params = configure("ray", {"--address": address})
    heard = Heard()
    results = executor.run(plan, store, jobs, devices=["cpu"], workers=1, observer=heard, params=params)
    assert {r.status for r in results.values()} == {"done"}
    for job in jobs:
        mine = [kind for kind, key in heard.events if key == job.key]
        assert mine == ["started", "done"], (job.label, mine)


def test_a_raylet_port_given_as_the_address_is_one_line_within_seconds(cluster):
    """A node's raylet speaks gRPC too: given as --address it passed the check, then ray.init retried for 23 s,
    printing 20 lines of its log, and ended with a hint about tokens. The head's GCS port still passes."""
    import logging

    import ray

    from rbench.executors.ray_executor import check_address

    address, _ = cluster
    owned = not ray.is_initialized()
    if owned:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        raylet = ray.nodes()[0]["NodeManagerPort"]
    finally:
        if owned:
            ray.shutdown()
    check_address(address)
    started = time.monotonic()
    with pytest.raises(RbenchError, match=rf"^--address 127.0.0.1:{raylet}: a gRPC server answers at "
                       rf"127.0.0.1:{raylet}, but not as a Ray head's GCS: give the head's GCS port"):
        check_address(f"127.0.0.1:{raylet}")
    assert time.monotonic() - started < 10


def test_the_events_actor_comes_back_when_its_process_dies(cluster):
    """Its death (or its node's) lost every start message for the rest of the run, and with them the hard
    deadlines, which count from a job's start: a job stuck outside Python ran 184 s past a 3 s limit. It is now
    restarted (and pinned to the driver's node, which this one-node cluster cannot show), messages sent meanwhile
    retried, and a new incarnation tells the coordinator that what the dead one held was lost (it warns)."""
    import logging

    import ray

    from rbench.executors.ray_executor import _events_actor

    address, ray_env = cluster
    owned = not ray.is_initialized()
    if owned:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    actor = _events_actor(ray)
    try:
        first, _ = ray.get(actor.drain.remote())
        ray.get(actor.push.remote(("started", "k", "cpu")))
        ray.kill(actor, no_restart=False)  # its process dies: what it held is lost, the coordinator sees it
        deadline = time.monotonic() + 60
        again = first
        while again == first and time.monotonic() < deadline:
            again, _ = ray.get(actor.drain.remote(), timeout=60)
        assert again != first
        ray.get(actor.push.remote(("progress", "k", (1.0, 2.0, "x"))), timeout=60)
        assert ray.get(actor.drain.remote(), timeout=60) == (again, [("progress", "k", (1.0, 2.0, "x"))])
    finally:
        ray.kill(actor)
        if owned:
            ray.shutdown()


@pytest.mark.full  # make check-full (make test's 10-minute budget); the kill-and-retry test stays in make test
def test_a_job_whose_worker_always_dies_fails_alone_after_its_retries(cluster, tiny_reference, tmp_path):
    suite, reference_store, reference_run, expected = tiny_reference
    shutil.copytree(reference_store, tmp_path / "store")
    store = Store(tmp_path / "store")
    labels = {k: j["label"] for k, j in _jobs(reference_run).items()}
    keep = next(k for k, label in labels.items() if label == "train mlp")
    for key in labels:  # only the mlp is stored: the cnn must be trained, and every worker training it dies
        if key != keep:
            for path in store.paths(key):
                path.unlink()
    out = _ray_run(cluster, suite, tmp_path / "store", tmp_path / "run", "--max-retries", "1",
                   env={"RBENCH_FAULT_KILL": "between-weights-and-sidecar:1"})
    assert out.returncode == 1, out.stderr  # as for a job that fails in a local run
    jobs = _jobs(tmp_path / "run")
    cnn = next(j for j in jobs.values() if j["label"] == "train cnn")
    assert cnn["status"] == "failed"
    assert cnn["error"].startswith("train cnn [trainer ") and "its Ray worker died" in cnn["error"]
    assert cnn["error"].endswith("after 1 retry"), cnn["error"]
    needs_cnn = {k for k, j in jobs.items() if "cnn" in j["label"] and j["label"] != "train cnn"}
    assert needs_cnn and all(jobs[k]["status"] == "skipped" for k in needs_cnn)
    others = {k: j["status"] for k, j in jobs.items() if "cnn" not in j["label"]}
    assert others.pop(keep) == "cached" and others and set(others.values()) == {"done"}
    values = run_values(tmp_path / "run")
    assert all(values[cell] == expected[cell] for cell in values if values[cell] is not None)
    assert f"failed: {cnn['error']}" in " ".join(out.stdout.split())
    assert all(store.has(key) for key in store.keys())  # the dead workers' weights without a sidecar are gone


@pytest.mark.slow
def test_a_node_that_does_not_see_the_store_stops_the_run_before_any_work(cluster, tiny_suite, tmp_path,
                                                                           monkeypatch):
    """A node that mounted another folder at the store's path computed every job into it and reported it done
    (the driver's tables then found nothing); each node answers a probe first. Here the probe (sent to the
    node by value) answers as such a node would; the real probe passes in every other cluster test."""
    from rich.console import Console

    from rbench.executors import ray_executor
    from rbench.runner import run_suite

    def elsewhere(store_root: str, marker: str, token: str) -> str | None:
        return None if not Path(marker).read_text() == token else f"node 10.9.9.9 does not see {store_root}"

    monkeypatch.setattr(ray_executor, "_probe_store", elsewhere)
    address, _ = cluster
    with pytest.raises(RbenchError, match=r"executor 'ray': --store .*: node 10.9.9.9 does not see .*store$"):
        run_suite(tiny_suite, profile=None, store=Store(tmp_path / "store"), run_dir=tmp_path / "run", device="cpu",
                  workers=None, executor="ray", console=Console(quiet=True), quiet=True,
                  executor_options={"--address": address})
    assert not list((tmp_path / "store" / "objects").rglob("*"))  # nothing computed
    assert not list((tmp_path / "store" / "locks").glob(".marker-*"))  # its marker removed


@pytest.mark.slow
def test_a_node_that_joined_after_the_probe_fails_its_jobs_named(cluster, tiny_suite, tmp_path, monkeypatch):
    """An autoscaler's node (beside a head of 0 CPUs) is not there when the run probes its nodes: each worker
    checks the run's marker before its first job. Here the probe is skipped and the marker's token is not the
    one the tasks are given, as on a node that sees another folder."""
    import contextlib as _contextlib

    from rich.console import Console

    from rbench.executors import ray_executor
    from rbench.runner import run_suite

    real = ray_executor.store_marker

    @_contextlib.contextmanager
    def other_folder(store):
        with real(store) as (marker, _):
            yield marker, "a token the marker does not hold"

    monkeypatch.setattr(ray_executor, "check_nodes_see_store", lambda *args: None)
    monkeypatch.setattr(ray_executor, "store_marker", other_folder)
    address, _ = cluster
    outcome = run_suite(tiny_suite, profile=None, store=Store(tmp_path / "store"), run_dir=tmp_path / "run",
                        device="cpu", workers=None, executor="ray", console=Console(quiet=True), quiet=True,
                        executor_options={"--address": address})
    results = list(outcome.job_results.values())
    failed = [r for r in results if r.status == "failed"]
    assert failed and {r.status for r in results} <= {"failed", "skipped"}
    assert all("does not see the driver's store" in r.error for r in failed), failed[0].error
    assert not list((tmp_path / "store" / "objects").rglob("*"))


def test_the_store_probe_tells_another_folder_from_the_driver_s(tmp_path):
    from rbench.executors.ray_executor import _probe_store, store_marker

    store = Store(tmp_path)
    with store_marker(store) as (marker, token):
        assert _probe_store(str(tmp_path), marker, token) is None
        problem = _probe_store(str(tmp_path), marker, "another")
        assert problem is not None and "does not see the driver's store" in problem
        assert [p.name for p in (tmp_path / "locks").iterdir()] == [Path(marker).name]  # its write probe removed
        assert not list(store.stale_markers())  # the run holds it
    assert not list((tmp_path / "locks").iterdir())  # removed at the end


# -- heavier: make check-full --------------------------------------------------------------------------------
@pytest.mark.full
def test_quickstart_on_a_ray_instance_started_for_the_run_gives_the_local_tables(tmp_path):
    """``rbench run suites/quickstart.toml --profile quick --executor ray`` (no --address: a Ray instance of the
    run's own, stopped at the end) gives the local executor's tables, and leaves nothing outside the store and the
    run folder: Ray's session files go to a temporary folder removed after it stopped, its authentication token
    stays in the environment (Ray would write ``~/.ray/auth_token``), matplotlib's font cache and torch's cache
    folder into the store's library-cache/ (they would write ``~/.cache/matplotlib``, ``$TMPDIR/torchinductor_*``)."""
    repo = Path(__file__).resolve().parents[1]
    suite = repo / "suites" / "quickstart.toml"
    temp = tempfile.mkdtemp(prefix="rb")  # the run's TMPDIR (short: Ray's socket paths)
    home = tmp_path / "home"
    home.mkdir()
    try:
        local = rbench("run", str(suite), "--profile", "quick", "--store", str(tmp_path / "s1"), "--run-dir",
                       str(tmp_path / "local"), "-q", "--device", "cpu")
        assert local.returncode == 0, local.stderr
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAY_", "MPLCONFIGDIR", "TORCHINDUCTOR_CACHE_DIR", "RBENCH_LIBRARY_CACHE"))}
        ray_run = rbench("run", str(suite), "--profile", "quick", "--store", str(tmp_path / "s2"), "--run-dir",
                         str(tmp_path / "ray_run"), "-q", "--device", "cpu", "--executor", "ray",
                         env={**env, "RAY_USAGE_STATS_ENABLED": "0", "TMPDIR": temp, "HOME": str(home)})
        assert ray_run.returncode == 0, ray_run.stderr
        assert run_values(tmp_path / "ray_run") == run_values(tmp_path / "local")
        assert {j["status"] for j in _jobs(tmp_path / "ray_run").values()} == {"done"}
        assert not list(home.iterdir()) and not list(Path(temp).iterdir())
        alive = [p for p in Path("/proc").glob("[0-9]*/cmdline") if temp.encode() in _read(p)]
        assert not alive  # the Ray instance stopped with the run
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.mark.full
def test_sigterm_cancels_the_tasks_and_stops_the_ray_instance_of_the_run(tiny_suite, tmp_path):
    """SIGTERM to a run on a Ray instance of its own: exit 143 with one line, no process of the run left (the
    driver's Ray processes and workers), nothing partial in the store."""
    ray_tmp = tempfile.mkdtemp(prefix="rbray-")
    store = tmp_path / "store"
    try:
        proc = subprocess.Popen([RBENCH, "run", str(tiny_suite), "--store", str(store), "--run-dir",
                                 str(tmp_path / "run"), "-q", "--device", "cpu", "--executor", "ray"],
                                env={**os.environ, **RAY_ENV, "RAY_TMPDIR": ray_tmp}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not list(store.glob("locks/*.lock")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # a job is computing
        family = descendants(proc.pid)
        assert family and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143 and "stopped by SIGTERM" in err.splitlines()[-1], err
        deadline = time.monotonic() + 10
        while any(alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in family if alive(p)]
        assert not Store(store).temporaries()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.full)])
def test_a_signal_while_the_ray_instance_starts_stops_the_run_once_it_is_up(tiny_suite, tmp_path, sig):
    """A stop signal while ``ray.init`` starts the run's instance (Ray's own SIGTERM handler would exit mid-start,
    leaving Ray's processes and session folder): the run's exit code and one line, no process of the run left,
    the instance's temporary folder removed, nothing in the store."""
    temp = tempfile.mkdtemp(prefix="rbt-")  # short: Ray's socket paths
    store = tmp_path / "store"
    try:
        proc = subprocess.Popen([RBENCH, "run", str(tiny_suite), "--store", str(store), "--run-dir",
                                 str(tmp_path / "run"), "-q", "--device", "cpu", "--executor", "ray"],
                                env={**{k: v for k, v in os.environ.items() if k != "RAY_TMPDIR"},  # ours
                                     "RAY_USAGE_STATS_ENABLED": "0", "TMPDIR": temp},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not list(Path(temp).glob("rb*/session_*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # ray.init has begun starting the instance
        assert proc.poll() is None
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        code, line = (130, "interrupted;") if sig == signal.SIGINT else (143, "stopped by SIGTERM;")
        assert proc.returncode == code and line in err.splitlines()[-1], err
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        deadline = time.monotonic() + 20
        while _processes_naming(temp) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _processes_naming(temp)  # Ray's processes of the instance name its session folder
        assert not os.listdir(temp)  # the instance's session folder went with it
        assert not Store(store).keys()
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _processes_naming(text: str) -> list[str]:
    """The command lines of living processes that contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if text in line and alive(int(cmdline.parent.name)):
                found.append(line)
    return found


def test_a_dry_run_says_where_the_jobs_would_run(tiny_suite, tmp_path):
    from rbench.executors.ray_executor import RayExecutor

    out = rbench("run", str(tiny_suite), "--dry-run", "--store", str(tmp_path / "s"), "--executor", "ray",
                 "--workers", "2", "--device", "cpu")
    assert out.returncode == 0 and "Jobs at once: 2 on cpu, on a Ray instance started for the run." in \
        " ".join(out.stdout.split()), out.stdout + out.stderr
    text = RayExecutor().capacity(RayParams(address="10.0.0.1:6379", num_cpus=2, gpu_fraction=0.25), ["cpu"], 1)
    assert text == ("as many as the nodes of the Ray cluster at 10.0.0.1:6379 hold (2 CPU per job, 0.25 GPU per "
                    "attack or evaluation)")
