"""The Ray executor (``--executor ray``, extra ``ray``): every job is a Ray task, on a cluster or on a Ray
instance started for the run.

- **Where.** ``--address HOST:PORT`` (or ``auto``: the cluster ``ray start`` began on this machine, or
  ``RAY_ADDRESS``) joins a running cluster; without it the executor starts a private Ray instance sized by
  ``--device``/``--workers`` (``workers x num_cpus`` CPUs, one GPU per CUDA device named) and stops it at the end.
- **Jobs.** A job is dispatched once its inputs are done (the shared :class:`~rbench.executors.Scheduler`); its task
  asks for ``num_cpus`` CPUs and, on a cluster with GPUs, a whole GPU for a training or transform job and
  ``gpu_fraction`` of one for an attack or evaluation job (so several small jobs share a GPU). The task opens the
  store at the same path (a shared filesystem on a real cluster) and computes the job through
  :func:`rbench.execution.compute` (its key's lock, re-check, time limit), so two clusters, or a cluster and a local
  run, never compute one job twice. Only the job and a small result tuple travel through Ray's object store;
  ``started`` and progress come back through a small actor. The driver's ``RBENCH_*`` environment variables (data
  folder, offline mode, plugin allow/deny lists) are set in every task.
- **Faults.** A worker or node that dies mid-job leaves no entry the store counts as stored (its writes are
  atomic; the runner removes a failed job's checkpoint weights without their sidecar) and Ray
  runs the job again, up to ``max_retries`` times; then the job fails alone, naming its plugin, and its dependents
  are skipped. A plugin's exception is never retried (it would fail again): it fails the job as in a local run.
- **Stopping.** On Ctrl-C, SIGTERM or SIGHUP the running tasks are cancelled (KeyboardInterrupt in the task, which
  removes the temporary file it is writing), forcibly after a grace period, and a Ray instance the executor
  started is shut down, so no process is left behind. A Ray instance of the run's own keeps its session files in a
  temporary folder removed when it stops, and an authentication token of its own in its environment, unless the
  user set ``RAY_TMPDIR`` or Ray's authentication (:func:`private_instance`); a cluster's session files are the
  cluster's (``/tmp/ray``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any
from unittest import mock

import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench import hookimpl
from rbench.devices import CUBLAS_VARIABLE, cpu_threads_per_worker
from rbench.errors import RbenchError
from rbench.execution import STOP_GRACE, compute_or_fail, hard_deadline, stuck_failure
from rbench.executors import Executor, JobResult, Observer, Scheduler
from rbench.executors.grpc_probe import serves_gcs, speaks_grpc
from rbench.interrupt import handlers_kept
from rbench.plan import Job, Plan
from rbench.store import Store, write_probe

#: job kinds whose task takes a whole GPU: trainings, and transforms (attacks and evaluations take ``gpu_fraction``)
WHOLE_GPU_KINDS = ("train", "transform")
#: seconds between two progress messages of one task (the last one always goes; one that reaches the coordinator
#: after its job's end is dropped: the end says more)
PROGRESS_EVERY = 0.5
#: seconds the coordinator waits on its tasks before it relays their events again
POLL = 0.25
#: seconds a ``--address`` may take to accept a connection before the run is refused
CONNECT_TIMEOUT = 5.0
#: Ray's object store of a Ray instance started for a run (only keys and small tuples travel through it)
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20
MISSING_EXTRA = "executor 'ray' needs the ray extra: pip install 'rbench[ray]'"
#: the smallest amount of a resource Ray tells apart (it counts them in ten-thousandths)
RESOURCE_STEP = 1e-4


class RayParams(BaseModel):
    """Options of the Ray executor (command line: ``--address``, ``--gpu-fraction``, ``--max-retries``)."""

    model_config = ConfigDict(extra="forbid")
    #: the Ray cluster to run on: HOST:PORT of its head, or ``auto`` (the cluster started on this machine, or
    #: ``RAY_ADDRESS``); None: start a Ray instance for this run, sized by ``--device`` and ``--workers``
    address: str | None = None
    #: the share of one GPU an attack or evaluation job asks for (training and transform jobs take a whole GPU)
    gpu_fraction: Annotated[float, Field(ge=RESOURCE_STEP, le=1, allow_inf_nan=False)] = 1.0
    #: CPUs each job asks for on a cluster, and its torch threads (without ``address``: refused, see ``check``)
    num_cpus: Annotated[float, Field(ge=RESOURCE_STEP, allow_inf_nan=False)] = 1.0
    #: times a job whose worker or node died is run again before it fails
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3


def job_resources(job_kind: str, params: RayParams, gpus: bool) -> dict[str, float]:
    """The Ray resources of one task: ``num_cpus``, and ``num_gpus`` when the cluster has GPUs (a whole one to
    train, ``gpu_fraction`` of one otherwise)."""
    num_gpus = 0.0 if not gpus else 1.0 if job_kind in WHOLE_GPU_KINDS else params.gpu_fraction
    return {"num_cpus": params.num_cpus, "num_gpus": num_gpus}


def check_fits(nodes: list[dict[str, Any]], params: RayParams, gpus: bool) -> None:
    """Refuse (one line) a job size no node of the cluster (``ray.nodes()``) can hold, CPUs and (``gpus``: the
    cluster has GPUs, so every job asks for some) a whole GPU for a training job on the same node: Ray would keep
    its tasks waiting for ever. A cluster none of whose nodes has CPUs yet (a head node of 0 CPUs that an
    autoscaler adds workers to) is not judged."""
    alive = [node.get("Resources", {}) for node in nodes if node.get("Alive")]
    if not any(float(resources.get("CPU", 0.0)) > 0 for resources in alive):
        return
    need = {"CPU": params.num_cpus, **({"GPU": 1.0} if gpus else {})}
    if not any(all(float(resources.get(name, 0.0)) >= amount for name, amount in need.items()) for resources in alive):
        candidates = [r for r in alive if float(r.get("GPU", 0.0)) >= 1] if gpus else alive
        most = max((float(resources.get("CPU", 0.0)) for resources in candidates), default=0.0)
        what = f"{params.num_cpus:g} CPUs and a GPU" if gpus else f"{params.num_cpus:g} CPUs"
        largest = f"the largest with a GPU has {most:g} CPUs" if gpus else f"the largest has {most:g} CPUs"
        raise RbenchError(f"--num-cpus {params.num_cpus:g}: no node of the Ray cluster has {what} ({largest}): its "
                          "jobs would wait for ever")


def task_cpus(workers: int, params: RayParams) -> float:
    """The CPUs each task asks for on a Ray instance started for the run (:func:`local_instance`): its CPUs shared
    by ``workers`` tasks, so that ``workers`` jobs run at once whatever ``num_cpus`` is (``num_cpus`` below one
    would otherwise let up to 1 / ``num_cpus`` of them run together)."""
    return local_instance(["cpu"], workers, params)["num_cpus"] / workers


def local_instance(devices: list[str], workers: int, params: RayParams) -> dict[str, Any]:
    """``ray.init`` resources of a Ray instance started for a run on ``devices`` (one per worker): CPUs for
    ``workers`` jobs at once, one GPU per distinct CUDA device named, and the ``CUDA_VISIBLE_DEVICES`` that makes
    Ray's GPUs those devices (None: leave it as it is)."""
    cuda = sorted({0 if d == "cuda" else int(d.split(":")[1]) for d in devices if d.startswith("cuda")})
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    physical = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(max(cuda or [0]) + 1)]
    return {"num_cpus": max(1, math.ceil(workers * params.num_cpus)), "num_gpus": len(cuda),
            "cuda_visible_devices": ",".join(physical[i] for i in cuda) if cuda else None}


#: the forwarded variables that name a folder or file: made absolute, as the driver resolves them
PATH_VARIABLES = ("RBENCH_DATA", "RBENCH_DATA_CACHE", "RBENCH_STORE", "RBENCH_LIBRARY_CACHE")


def forwarded_env() -> dict[str, str]:
    """The driver's ``RBENCH_*`` variables, set in every task so that jobs see the data and plugins a local run
    would, and the library caches it points into the store (so a cluster node's tasks write them there too, not
    in the node's home or temp folder). A relative path among them is made absolute (a task runs in the folder
    its node's Ray was started in: ``RBENCH_DATA=shared/data`` was found by the driver and not by the tasks, which
    then tried to download the data). The user's ``CUBLAS_WORKSPACE_CONFIG`` too: a GPU job keeps it
    (:func:`rbench.devices.reproducible_on`), on every node as on the driver."""
    from rbench.store import LIBRARY_CACHES

    env = {k: v for k, v in os.environ.items() if k.startswith("RBENCH_") or k in LIBRARY_CACHES
           or k == CUBLAS_VARIABLE}  # the user's cuBLAS workspace, which rbench.devices.reproducible_on keeps
    for name in (*PATH_VARIABLES, *LIBRARY_CACHES):
        if env.get(name) and not os.path.isabs(env[name]):
            env[name] = os.path.abspath(env[name])
    return env


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise RbenchError(MISSING_EXTRA) from None
    return ray


def check_address(address: str) -> None:
    """Refuse (one line) an address no Ray cluster answers at, within :data:`CONNECT_TIMEOUT` seconds (Ray itself
    retries for minutes): nothing listens, what does is no gRPC server (:func:`speaks_grpc`), or, for a plain
    HOST:PORT without a token, no Ray head's GCS (:func:`serves_gcs`)."""
    target = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # another Ray version: let ray.init look for it
            return
        try:
            target = canonicalize_bootstrap_address("auto") or ""
        except Exception:
            target = ""
        if not target:
            given = os.environ.get("RAY_ADDRESS")
            where = f"at RAY_ADDRESS={given!r}" if given else "on this machine"
            raise RbenchError(f"--address auto: no running Ray cluster found {where} (start one with ray start "
                              "--head, or give --address HOST:PORT)")
    host, sep, port = target.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RbenchError(f"--address {address!r}: give HOST:PORT of the Ray head node, or auto")
    if not 0 < int(port) < 65536:
        raise RbenchError(f"--address {address!r}: port {port} is out of range (1-65535)")
    tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")
    client = target.startswith("ray://")
    try:
        if tls:  # a TLS server: a bare connect only
            with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT):
                speaks = True
        else:
            speaks = speaks_grpc(host.strip("[]"), int(port), CONNECT_TIMEOUT)
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise RbenchError(f"--address {address}: no Ray cluster answers at {host}:{port} ({why})") from None
    if not speaks:
        raise RbenchError(f"--address {address}: something answers at {host}:{port}, but not a Ray cluster (no gRPC "
                          "server): give the head node's GCS port (ray start --head prints it), or auto")
    if tls or client or address == "auto" or os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        # the call below carries no TLS and no token (Ray finds a local cluster's token itself for auto), and a Ray
        # Client server is no GCS: ray.init will tell
        return
    try:
        gcs = serves_gcs(host.strip("[]"), int(port), CONNECT_TIMEOUT)
    except OSError:
        gcs = False
    if not gcs:
        # another gRPC server (a raylet's port) or a GCS that wants a token: ray.init retried for 23 s, printing 20
        # lines of its C++ log, and ended with a generic line
        raise RbenchError(f"--address {address}: a gRPC server answers at {host}:{port}, but not as a Ray head's GCS: "
                          "give the head's GCS port (ray start --head prints it), or, if the cluster uses token "
                          "authentication, set RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or the token file the nodes "
                          "use")


#: seconds every node of a cluster has to answer the store probe before the run is refused
PROBE_TIMEOUT = 60.0


def _probe_store(store_root: str, marker: str, token: str) -> str | None:
    """On a node: None if the store at ``store_root`` is the driver's (its ``marker`` file holds ``token``) and
    can be written (a file made and removed beside it); else the problem, in words."""
    import ray

    where = f"node {ray.util.get_node_ip_address()}"
    try:
        found: str | None = Path(marker).read_text()
    except OSError:
        found = None
    if found != token:
        return (f"{where} does not see the driver's store at {store_root} (another folder there): mount the same "
                "shared filesystem at the same path on every node")
    try:
        probe = write_probe(Path(marker))
        probe.write_bytes(b"")
        probe.unlink(missing_ok=True)  # written is what was asked (gc removes one whose run has ended)
    except OSError as exc:
        return f"{where} cannot write the store at {store_root} ({exc.strerror or exc})"
    return None


@contextlib.contextmanager
def store_marker(store: Store) -> Iterator[tuple[str, str]]:
    """The run's marker file in the store (:meth:`Store.run_marker`): (its path, the token it holds), read by
    :func:`_probe_store` on the nodes."""
    with store.run_marker() as (path, token):
        yield str(path.resolve()), token


def check_nodes_see_store(ray: ModuleType, store: Store, marker: str, token: str) -> None:
    """Refuse (one line, before any work) a cluster any of whose nodes that take jobs (those with CPUs now)
    cannot read and write the driver's store at the same path: a node that mounted another folder there computed
    every job into it and reported it done, while the driver's tables found nothing; a read-only one failed every
    job blaming its plugin. One zero-CPU task pinned to each node reads the run's marker. Nodes that join later
    (an autoscaler's, beside a head of 0 CPUs) are checked by each worker before its first job (:func:`_ray_job`)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    root = str(store.root.resolve())
    nodes = [n for n in ray.nodes() if n.get("Alive") and float(n.get("Resources", {}).get("CPU", 0)) > 0]
    if not nodes:
        return
    task = ray.remote(_probe_store)
    refs = {task.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote(root, marker, token): n for n in nodes}
    ready, late = _unwrapped(ray.wait, list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT)
    problems = []
    for ref in ready:
        try:
            problem = _unwrapped(ray.get, ref)
        except ray.exceptions.RayError as exc:
            problem = f"node {refs[ref].get('NodeManagerAddress', '?')} failed the store probe: {_first_line(exc)}"
        if problem is not None:
            problems.append(problem)
    problems += [f"node {refs[ref].get('NodeManagerAddress', '?')} did not answer the store probe within "
                 f"{PROBE_TIMEOUT:g} s" for ref in late]
    for ref in late:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
    if problems:
        more = f" (and {len(problems) - 1} more nodes)" if len(problems) > 1 else ""
        raise RbenchError(f"executor 'ray': --store {store.root}: {problems[0]}{more}")


# -- task side (in a Ray worker process) ---------------------------------------------------------------------
_stores: dict[str, Store] = {}
#: the runs' markers (token) this worker has found in its store
_seen: set[str] = set()


def _ray_job(job: Job, store_root: str, timeout: float | None, threads: int, events: Any, env: dict[str, str],
             marker: tuple[str, str] | None = None) -> tuple[str, float, str | None, str, list[str]]:
    """One job in a Ray worker: ``(status, seconds, error, where, warnings)``; a plugin's exception fails the job
    here (it is not a Ray failure: Ray retries only a worker that died). ``env``: the driver's ``RBENCH_*``
    variables (set here rather than through a Ray runtime_env, which would keep the cluster's idle workers from
    taking jobs). ``marker``: (path, token) of the run's store marker, checked before this worker's first job
    of the run (:func:`_probe_store`): a node that joined after the run's probe fails its jobs, named, rather
    than computing them into another folder."""
    import ray

    os.environ.update(env)
    torch.set_num_threads(threads)
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    where = f"{device}@{ray.util.get_node_ip_address()}"
    if marker is not None and marker[1] not in _seen:
        problem = _probe_store(store_root, *marker)
        if problem is not None:
            return "failed", 0.0, f"{job.label}: {problem}", where, []
        _seen.add(marker[1])
    store = _stores.setdefault(store_root, Store(store_root))
    started = time.perf_counter()
    last = 0.0

    def progress(completed: float, total: float, text: str = "") -> None:
        nonlocal last
        now = time.monotonic()
        if completed >= total or now - last >= PROGRESS_EVERY:
            last = now
            events.push.remote(("progress", job.key, (completed, total, text)))

    def on_start() -> None:
        events.push.remote(("started", job.key, where))

    warnings: list[str] = []  # returned with the result, so none is lost with a last progress message
    status, error = compute_or_fail(job, store, device, progress, on_start=on_start, timeout=timeout,
                                    warn=warnings.append)
    return status, time.perf_counter() - started, error, where, warnings


def _events_actor(ray: ModuleType) -> Any:
    """The actor that carries ``started`` and progress messages from tasks to the coordinator. Defined here, so
    Ray ships it by value: its process imports neither torch nor rbench. It runs on the driver's node (it could land
    on any node, and losing that node lost every start message, so the hard deadlines, which count from a job's
    start, went unenforced: a job stuck outside Python ran 184 s past a 3 s limit) and is restarted if its process
    dies, messages sent meanwhile retried; ``drain`` returns the incarnation with the messages, so the coordinator
    knows when what the dead one held was lost."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    class RbenchEvents:
        def __init__(self) -> None:
            self.events: list[Any] = []
            self.incarnation = os.urandom(8).hex()

        def push(self, event: Any) -> None:
            self.events.append(event)

        def drain(self) -> tuple[str, list[Any]]:
            events, self.events = self.events, []
            return self.incarnation, events

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, scheduling_strategy=here)(
        RbenchEvents).remote()


# -- coordinator side ----------------------------------------------------------------------------------------
#: the environment variables of Ray's authentication (mode, token, token file)
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@functools.cache
def _process_token() -> str:
    """One token per process: Ray's driver keeps the token it first read, so a second instance started by the same
    process must get the same one."""
    return secrets.token_hex(32)


@contextlib.contextmanager
def private_instance() -> Iterator[str | None]:
    """What a Ray instance of the run's own needs so that Ray writes nothing outside the store and the run folder
    that outlives the run; yields the temp dir to hand ``ray.init`` (None: Ray's own, which the user chose).

    - Ray turns token authentication on for a new local instance and, with no token, writes one to
      ``~/.ray/auth_token``; unless one of :data:`AUTH_VARS` is set, a random token goes in ``RAY_AUTH_TOKEN``
      for the run (the instance's processes inherit it; authentication stays on).
    - Ray keeps its session files and logs under ``/tmp/ray`` after the instance stops; unless ``RAY_TMPDIR``
      is set (the user wants them), the instance gets a fresh temporary folder, removed after it stopped."""
    token = {} if any(var in os.environ for var in AUTH_VARS) else {"RAY_AUTH_TOKEN": _process_token()}
    temp = None if "RAY_TMPDIR" in os.environ else tempfile.mkdtemp(prefix="rb")  # short: socket paths
    try:
        # the environment as before the run afterwards: Ray sets RAY_AUTH_MODE itself, which would keep the next
        # run of this process from its token
        with mock.patch.dict(os.environ, token):
            yield temp
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


class RayExecutor(Executor):
    """Every job a Ray task, with per-kind resources (fractional GPUs for attacks and evaluations); results are
    written by the tasks straight into the store on a shared filesystem; a job whose worker died is retried."""

    name = "ray"
    Params = RayParams

    def check(self, params: RayParams) -> None:
        """An ``--address`` that answers is joined and left here, before the store or the run folder is made: a
        cluster that refuses the run (a token it wants, no node with ``--num-cpus``) is bad input, one line.
        (:meth:`run` joins again: a connection kept from here would outlive a run stopped before it computes.)"""
        ray = _import_ray()
        if params.address is None:
            if params.num_cpus != RayParams().num_cpus:  # the run's own instance runs --workers jobs at once
                raise RbenchError(f"--num-cpus {params.num_cpus:g}: sizes the jobs on a cluster (--address); on the "
                                  "Ray instance rbench starts for a run, --workers jobs run at once, with the local "
                                  "executor's threads each")
            return
        check_address(params.address)
        if ray.is_initialized():  # a program using rbench's API connected Ray itself: its cluster, its checks
            return
        try:
            self._connect(ray, params, [], 1, None)
            check_fits(ray.nodes(), params, ray.cluster_resources().get("GPU", 0) > 0)
        finally:
            ray.shutdown()

    def capacity(self, params: RayParams, devices: list[str], workers: int) -> str:
        if params.address is None:
            return f"{super().capacity(params, devices, workers)}, on a Ray instance started for the run"
        gpu = "" if params.gpu_fraction == 1 else f", {params.gpu_fraction:g} GPU per attack or evaluation"
        return (f"as many as the nodes of the Ray cluster at {params.address} hold ({params.num_cpus:g} CPU per "
                f"job{gpu})")

    def run(self, plan: Plan, store: Store, jobs: list[Job], *, devices: list[str], workers: int,
            observer: Observer, job_timeout: float | None = None, params: RayParams | None = None
            ) -> dict[str, JobResult]:
        params = params if params is not None else RayParams()
        scheduler = Scheduler(plan, jobs, observer)
        if not jobs:
            return scheduler.results
        ray = _import_ray()
        owned = not ray.is_initialized()  # else a program using rbench's API connected Ray itself: use that
        private = owned and params.address is None
        # Ray's driver prints the raylet's notices (a worker died, a task is retried) to stdout from a thread of its
        # own whatever log_to_driver says: they went among the tables; until the shutdown below stops that thread,
        # stdout is stderr (rbench writes nothing to stdout while jobs run)
        with private_instance() if private else contextlib.nullcontext() as temp_dir, \
                contextlib.redirect_stdout(sys.stderr) if owned else contextlib.nullcontext():
            # torch threads per job: on a Ray instance of the run's own, as the local executor's workers (so the
            # numbers are the local executor's: float sums depend on the thread count); on a cluster, num_cpus
            threads = cpu_threads_per_worker(workers) if private else max(1, int(params.num_cpus))
            try:
                if owned:
                    self._connect(ray, params, devices, workers, temp_dir)
                gpus = ray.cluster_resources().get("GPU", 0) > 0
                if private:
                    params = params.model_copy(update={"num_cpus": task_cpus(workers, params)})
                    _Dispatch(ray, scheduler, store, observer, params, gpus, job_timeout, threads).run()
                else:
                    check_fits(ray.nodes(), params, gpus)
                    with store_marker(store) as marker:
                        check_nodes_see_store(ray, store, *marker)
                        _Dispatch(ray, scheduler, store, observer, params, gpus, job_timeout, threads,
                                  marker).run()
            finally:
                if owned:
                    with contextlib.suppress(Exception):
                        ray.shutdown()  # a Ray instance started here stops; a cluster ends this run's tasks
        return scheduler.results

    @staticmethod
    def _connect(ray: ModuleType, params: RayParams, devices: list[str], workers: int, temp_dir: str | None
                 ) -> None:
        """``ray.init`` under the run's signal handlers (Ray's on SIGTERM would exit the process where it is).
        Starting an instance of the run's own, a stop signal waits until it is up (one cut short leaves processes
        that ``ray.shutdown`` cannot reach), then stops the run; the caller shuts the instance down."""
        if threading.current_thread() is not threading.main_thread():
            return RayExecutor._init(ray, params, devices, workers, temp_dir)
        with handlers_kept(hold=params.address is None):
            RayExecutor._init(ray, params, devices, workers, temp_dir)

    @staticmethod
    def _init(ray: ModuleType, params: RayParams, devices: list[str], workers: int, temp_dir: str | None) -> None:
        import logging

        # the tasks' own output stays in Ray's session logs: forwarded, it would be printed among the tables on
        # stdout (results and errors come back with each task's result)
        common = {"logging_level": logging.WARNING, "log_to_driver": False}
        token_note = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = token_note.level
        token_note.setLevel(logging.ERROR)  # its notice, on every start or join, that the instance has a token
        try:
            if params.address is not None:
                ray.init(address=params.address, **common)
                return
            sizes = local_instance(devices, workers, params)
            visible = sizes.pop("cuda_visible_devices")
            before = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = visible
            try:  # "local": a new instance, never a cluster ray.init would otherwise find on this machine
                ray.init(address="local", include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                         **({"_temp_dir": temp_dir} if temp_dir else {}), **sizes, **common)
            finally:
                if visible is not None:
                    if before is None:
                        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                    else:
                        os.environ["CUDA_VISIBLE_DEVICES"] = before
        except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
            where = f"--address {params.address}" if params.address is not None else "a local Ray instance"
            text = " ".join(str(exc).split())
            if "socket" in text and params.address is None:  # Ray's socket paths must fit in 107 bytes
                text += " (the temporary folder's path is too long for Ray's sockets: set RAY_TMPDIR to a short one)"
            elif params.address not in (None, "auto") and "RAY_AUTH_MODE" not in os.environ:
                # Ray turns token authentication on for "auto" only; a HOST:PORT of a `ray start` cluster with
                # tokens fails after its retries with InvalidAuthToken in its log and this generic text
                text += (" (if the cluster uses token authentication: set RAY_AUTH_MODE=token, with RAY_AUTH_TOKEN "
                         "or the token file the nodes use)")
            raise RbenchError(f"executor 'ray': cannot start or join {where}: {text}") from None
        finally:
            token_note.setLevel(level)


class _Dispatch:
    """One run's tasks: submit what is ready, wait, relay events, finish; cancel everything if interrupted."""

    def __init__(self, ray: ModuleType, scheduler: Scheduler, store: Store, observer: Observer, params: RayParams,
                 gpus: bool, timeout: float | None, threads: int, marker: tuple[str, str] | None = None):
        self.ray, self.scheduler, self.observer, self.params, self.threads = ray, scheduler, observer, params, threads
        self.store_root, self.gpus, self.timeout = str(store.root.resolve()), gpus, timeout
        self.task = ray.remote(_ray_job)
        self.env, self.marker = forwarded_env(), marker
        self.events = _events_actor(ray)
        self.draining: Any = self.events.drain.remote()
        self.incarnation: str | None = None  # of the events actor, as its first drain gives it
        self.inflight: dict[Any, Job] = {}
        self.submitted: dict[str, float] = {}  # key -> when its task was submitted
        self.started: dict[str, float] = {}  # key -> when it (or its latest retry) started computing

    def run(self) -> None:
        try:
            while not self.scheduler.finished:
                for job in self.scheduler.ready():
                    self.submit(job)
                if not self.inflight:
                    return  # nothing runs and nothing is ready: the rest was skipped
                done, rest = _unwrapped(self.ray.wait, list(self.inflight), num_returns=1, timeout=POLL)
                if done and rest:
                    done += _unwrapped(self.ray.wait, rest, num_returns=len(rest), timeout=0)[0]
                self.relay()
                for ref in done:
                    job = self.inflight.pop(ref)
                    result = self.result(ref, job)
                    if result.status in ("done", "failed") and result.device != "ray" and job.key not in self.started:
                        # its start message travels apart from its result and was not relayed yet: an observer
                        # pairing starts with ends (the progress display, rbench_job_started) saw only the end
                        self.observer.started(job, result.device)
                    self.scheduler.finish(job, result)
                self.enforce_deadline()
        except BaseException:
            self.cancel()
            raise
        finally:
            try:  # the last drain answered first: one pending when its actor is killed is logged on stderr as a
                # failed task ("(raylet) Task RbenchEvents.drain failed"), after a run that went well
                with contextlib.suppress(Exception):
                    _unwrapped(self.ray.wait, [self.draining], timeout=2)
            finally:
                with contextlib.suppress(Exception):
                    self.ray.kill(self.events)

    def submit(self, job: Job) -> None:
        self.scheduler.take(job)
        resources = job_resources(job.kind, self.params, self.gpus)
        ref = self.task.options(**resources, max_retries=self.params.max_retries, retry_exceptions=False,
                                name=f"rbench: {job.label}"[:200]).remote(job, self.store_root, self.timeout,
                                                                           self.threads, self.events, self.env,
                                                                           self.marker)
        self.inflight[ref] = job
        self.submitted[job.key] = time.monotonic()

    def relay(self) -> None:
        """Pass the tasks' ``started`` and progress messages on to the observer (a job's first start only)."""
        ready, _ = _unwrapped(self.ray.wait, [self.draining], timeout=0)
        if not ready:
            return
        try:
            incarnation, events = _unwrapped(self.ray.get, self.draining)
        except self.ray.exceptions.RayError:
            incarnation, events = None, []  # its restart failed: no more progress, the jobs still finish
        if incarnation != self.incarnation:
            if self.incarnation is not None:
                self.observer.warning(
                    "executor 'ray': the process relaying the tasks' start and progress messages "
                    + ("died and was restarted" if incarnation is not None else "died")
                    + ": a job that started before may run past its hard deadline unnoticed (its own time limit "
                    "still applies where Python runs) and its progress is not shown", None)
            self.incarnation = incarnation
        self.draining = self.events.drain.remote()
        running = {job.key: job for job in self.inflight.values()}
        for kind, key, payload in events:
            job = running.get(key)
            if job is None:
                continue  # already finished
            if kind == "started":
                if key not in self.started:
                    self.observer.started(job, payload)
                self.started[key] = time.monotonic()
            else:
                self.observer.progress(key, *payload)

    def result(self, ref: Any, job: Job) -> JobResult:
        exceptions = self.ray.exceptions
        try:
            status, seconds, error, where, warnings = _unwrapped(self.ray.get, ref)
            for text in warnings:
                self.observer.warning(text, job)
            return JobResult(job.key, job.label, status, seconds, where, error)
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.OutOfMemoryError,
                exceptions.ObjectLostError) as exc:
            n = self.params.max_retries
            error = (f"{job.label} [{job.plugin}]: its Ray worker died ({type(exc).__name__}: {_first_line(exc)}) "
                     f"after {n} {'retry' if n == 1 else 'retries'}")
        except exceptions.RayError as exc:  # e.g. a node without rbench: the task's own error, not Ray's header
            cause = getattr(exc, "cause", None)
            why = exc if not isinstance(cause, BaseException) else cause
            error = f"{job.label} [{job.plugin}]: Ray could not run it: {type(why).__name__}: {_first_line(why)}"
        seconds = time.monotonic() - self.submitted.get(job.key, time.monotonic())
        return JobResult(job.key, job.label, "failed", seconds, "ray", error)

    def enforce_deadline(self) -> None:
        """End (kill) a task stuck past the job time limit where its own SIGALRM could not stop it."""
        if self.timeout is None:
            return
        now = time.monotonic()
        for ref, job in list(self.inflight.items()):
            since = self.started.get(job.key)
            if since is not None and now - since > hard_deadline(self.timeout):
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref, force=True)
                del self.inflight[ref]
                self.scheduler.finish(job, JobResult(job.key, job.label, "failed", now - since, "ray",
                                                     stuck_failure(job, self.timeout, "its Ray worker")))

    def cancel(self) -> None:
        """Interrupt every running task (KeyboardInterrupt: it removes its temporary file and releases its lock),
        then kill those still running after :data:`STOP_GRACE` seconds."""
        refs = list(self.inflight)
        if not refs:
            return
        for ref in refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref)
        with contextlib.suppress(Exception):
            _, refs = self.ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE)
        for ref in refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)


def _unwrapped(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)`` (a Ray call); Ctrl-C or a stopping signal that arrives inside Ray's compiled code
    comes out as a SystemError caused by it: raise the KeyboardInterrupt or Terminated itself."""
    try:
        return call(*args, **kwargs)
    except SystemError as exc:
        cause = exc.__cause__ or exc.__context__
        if cause is not None and not isinstance(cause, Exception):
            raise cause from None
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(text[0].split())[:200] if text else "(no message)"


@hookimpl
def rbench_executors() -> list[Executor]:
    return [RayExecutor()]
