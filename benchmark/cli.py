"""The ``rbench`` command line. Every user error prints one line and exits with code 2 (no traceback)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from rbench.envflag import flag
from rbench.errors import Interrupted, RbenchError
from rbench.report.terminal import output_console
from rbench.store import Store
from rbench.suite_schema import MAX_JOB_TIMEOUT

if TYPE_CHECKING:
    from rbench.runner import DryRun, RunOutcome

ENVIRONMENT = (
    "Environment: RBENCH_DATA (a folder with the dataset files, tried first; then the download cache), "
    "RBENCH_DATA_CACHE (download cache), RBENCH_DATA_MIRROR (download base URL), RBENCH_OFFLINE=1 (never "
    "download), RBENCH_STORE (artifact store; default the platform cache dir), RBENCH_PLUGINS / "
    "RBENCH_DISABLE_PLUGINS (allow / deny lists of plugin distributions), RBENCH_TRACE_PLUGINS=1 (print hook "
    "calls), RBENCH_DEBUG=1 (tracebacks for internal errors), RBENCH_FIGURE_CACHE / RBENCH_LIBRARY_CACHE "
    "(where drawn figures and libraries' answers are kept; default the store's library-cache/; a figure "
    "folder that cannot be made, or a library folder that does not exist, keeps none).")
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark the adversarial robustness of classifiers with declarative suites and plugins.",
                  epilog=ENVIRONMENT)
cache_app = typer.Typer(no_args_is_help=True, help="Inspect and clean the artifact store.")
app.add_typer(cache_app, name="cache")

console = output_console()
#: a run's live log (progress, per-job lines, warnings as they happen): stderr, apart from the tables
log = output_console(stderr=True)


#: ``--job-timeout``'s bounds (the suite's ``job_timeout`` has the same ceiling)
JOB_TIMEOUT_RANGE = (0.001, MAX_JOB_TIMEOUT)
#: the exit code of a command stopped by Ctrl-C
INTERRUPTED = Interrupted.exit_code


def seconds_value(value: str) -> float:
    """``--job-timeout``'s value: a finite number of seconds within :data:`JOB_TIMEOUT_RANGE` (nan was refused as
    "should be less than or equal to 10000000")."""
    low, high = JOB_TIMEOUT_RANGE
    try:
        seconds = float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number of seconds") from None
    if not low <= seconds <= high:  # also false for nan
        raise typer.BadParameter(f"{value} seconds: give a number from {low:g} to {high:g}")
    return seconds


def path_value(value: str) -> Path:
    """A path option's or argument's value; an empty one is refused (``Path("")`` is the current folder, so
    ``--run-dir ""`` would write a run, and ``--store ""`` a store, into whatever folder the shell is in)."""
    if not value.strip():
        raise typer.BadParameter("an empty path (for the current folder, write '.')")
    return Path(value)


StoreOpt = Annotated[Path | None, typer.Option("--store", parser=path_value, metavar="PATH",
                                               help="Artifact store folder (env: RBENCH_STORE; "
                                               "default: the platform cache dir)")]
ExecutorOpt = Annotated[str, typer.Option(help="Executor plugin: local, ray, or a plugin's")]
# options that fill the executor's parameters (rbench.executors.OPTIONS); an executor without one refuses it
AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="ray: the Ray cluster to run on, HOST:PORT of its head or auto (default: a Ray instance "
    "started for the run on --device/--workers)")]
GpuFractionOpt = Annotated[float | None, typer.Option(
    "--gpu-fraction", help="ray: the share of a GPU each attack or evaluation job asks for, in [0.0001, 1] "
    "(training and transform jobs take a whole GPU; default 1)")]
MaxRetriesOpt = Annotated[int | None, typer.Option(
    "--max-retries", help="ray: times a job whose worker or node died is run again before it fails (default 3)")]
NumCpusOpt = Annotated[float | None, typer.Option(
    "--num-cpus", help="ray, with --address: CPUs each job asks for, at least 0.0001 and at most a node's, also "
    "its torch threads, which the numbers' last bits depend on (default 1)")]


def _executor_options(address: str | None, gpu_fraction: float | None, num_cpus: float | None,
                      max_retries: int | None) -> dict[str, object]:
    """The executor options as given on the command line (None: not given), for rbench.executors.configure."""
    return {"--address": address, "--gpu-fraction": gpu_fraction, "--num-cpus": num_cpus,
            "--max-retries": max_retries}
PrecisionOpt = Annotated[str | None, typer.Option(
    "--precision", metavar="fp32|bf16|fp16", help="Arithmetic of the attacks and evaluations: fp32, or bf16/fp16 "
    "autocast (part of their store keys; training stays fp32) (default: the suite's precision, else fp32)")]


#: the library-cache variables rbench set in this process, and to what (an in-process caller may run commands on
#: several stores: each command's own store then holds the caches)
_CACHES_SET: dict[str, str] = {}


def _store(path: Path | None, *, writes: bool = True) -> Store:
    """The store at ``path`` (default: ``RBENCH_STORE`` or the platform cache); the caches of the libraries rbench
    uses are pointed into it (:meth:`Store.library_caches`; each unless the user set its variable, and worker
    processes inherit them), so a command writes nothing outside the store and the run folder. A command that
    only reads a store that is not there (``report`` of a run whose store is gone) gets a temporary folder for
    them instead, removed at exit, rather than a store made for them; so does one whose store is not a store
    (results.json names the folder: an empty one, or someone else's, gets no caches written into it)."""
    store = Store(path)
    caches = store.library_caches()
    if not writes and not _is_a_store(store):
        import atexit
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="rbench-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        caches = {var: str(folder / Path(where).name) for var, where in caches.items()}
    for var, where in caches.items():  # what the user set stays; what an earlier command here set follows
        if var not in os.environ or os.environ[var] == _CACHES_SET.get(var):
            os.environ[var] = _CACHES_SET[var] = where
    return store


def _is_a_store(store: Store) -> bool:
    """Whether ``store`` is a store that holds entries (its ``objects`` folder exists, nothing foreign beside)."""
    if not (store.root / "objects").is_dir():
        return False
    try:
        store.check_is_store()
    except RbenchError:
        return False
    return True


def _absent(store: Store) -> str:
    """A note for a store folder that does not exist (a mistyped --store reads as empty otherwise)."""
    return "" if store.root.is_dir() else f" (no store at {escape(str(store.root))} yet)"


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:  # torch's from its metadata: importing torch took 1.3 s
            torch = version("torch")
        except PackageNotFoundError:  # a torch without metadata (a source tree on PYTHONPATH)
            import torch as imported

            torch = imported.__version__
        print(f"rbench {version('rbench')} (torch {torch}, Python {sys.version.split()[0]})")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="Print the rbench, torch and Python versions")] = False
             ) -> None:
    """Benchmark the adversarial robustness of classifiers with declarative suites and plugins."""


@app.command()
def run(
    suite: Annotated[Path, typer.Argument(parser=path_value, help="Suite TOML file")],
    profile: Annotated[str | None, typer.Option(help="Profile to apply (e.g. quick; without one, the suite as "
                                                "written: the paper suites' full profile)")] = None,
    store: StoreOpt = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", parser=path_value, metavar="PATH",
                                                 help="Where to write results (default: runs/<suite>-<time>)")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or a comma list (default: every "
                                               "visible GPU, else cpu)")] = None,
    workers: Annotated[int | None, typer.Option(help="Number of workers (default: one per device)")] = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    gpu_fraction: GpuFractionOpt = None,
    num_cpus: NumCpusOpt = None,
    max_retries: MaxRetriesOpt = None,
    job_timeout: Annotated[float | None, typer.Option(
        "--job-timeout", parser=seconds_value, metavar="SECONDS", help="Seconds any one job may run; a job that "
        "runs longer fails alone, "
        "naming its plugin (default: the suite's job_timeout, else no limit)")] = None,
    precision: PrecisionOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars")] = False,
    only: Annotated[list[str] | None, typer.Option(
        "--only", metavar="TABLE", help="Only this table (repeatable): compute just the jobs it reads and render "
        "only it")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Validate and plan, then print the jobs per kind, how many are stored and an estimate "
        "of the time left (from the stored durations of similar jobs); computes and writes nothing")] = False,
) -> None:
    """Run a suite: train, attack and evaluate what the store lacks, then print the tables."""
    from rbench.runner import dry_run as plan_only
    from rbench.runner import run_suite

    options = _executor_options(address, gpu_fraction, num_cpus, max_retries)
    if dry_run:
        _print_dry_run(plan_only(suite, profile=profile, store=_store(store), device=device, workers=workers,
                                 executor=executor, only=only, executor_options=options, precision=precision,
                                 run_dir=run_dir), suite)
        return
    _run_outcome(lambda: run_suite(suite, profile=profile, store=_store(store), run_dir=run_dir, device=device,
                                   workers=workers, executor=executor, console=log, quiet=quiet,
                                   job_timeout=job_timeout, only=only, executor_options=options,
                                   precision=precision))


def _print_dry_run(plan: DryRun, path: Path) -> None:
    """The plan of ``rbench run --dry-run``: jobs per kind, stored, to compute, estimate."""
    from rbench.preview import duration, estimate_text, recorded_text

    p = plan.preview
    tables = ", ".join(plan.suite.tables) or "none"
    console.print(f"{escape(str(path))}: suite {escape(plan.suite.name)}, tables: {escape(tables)}; {p.jobs} jobs, "
                  f"{p.stored} stored, {p.jobs - p.stored} to compute", highlight=False, soft_wrap=True)
    table = Table("kind", "jobs", "stored", "stored took", "to compute", "estimate", title_justify="left")
    for k in p.kinds:
        table.add_row(k.kind, str(k.jobs), str(k.stored), recorded_text(k.recorded, k.stored, k.unrecorded),
                      str(k.to_compute), estimate_text(k.seconds, k.to_compute, k.unknown, k.borrowed))
    console.print(table)
    if p.stored and p.unrecorded < p.stored:
        cold = duration(p.recorded + p.seconds)
        gaps = [f"{n} {what}" for n, what in ((p.unrecorded, "stored without a record"),
                                              (p.unknown, "to compute without an estimate")) if n]
        estimated = p.jobs - p.stored > p.unknown
        console.print(f"A cold run: {'at least ' if gaps else '' if cold.startswith('<') else '~'}{cold} of compute "
                      f"on one worker (what the stored jobs took when they were computed"
                      f"{', plus the estimate' if estimated else ''}{'; ' + ', '.join(gaps) if gaps else ''}).",
                      highlight=False, soft_wrap=True)
    left = estimate_text(p.seconds, p.jobs - p.stored, p.unknown, p.borrowed)
    store = escape(str(plan.store)) + ("" if plan.store_exists else " (it does not exist yet)")
    if left == "unknown":
        left += f": no similar job is stored in {store}"
    elif left != "-":
        left += f" of compute on one worker, from the durations of similar jobs stored in {store}"
    else:
        left = "none: every job is stored"
    console.print(f"Time left: {left}. Jobs at once: {escape(plan.capacity)}.", highlight=False, soft_wrap=True)
    for warning in plan.suite.warning_lines():
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    console.print("Dry run: nothing was computed or written.", highlight=False)


@contextlib.contextmanager
def _signals_as_one_line(before: str = "", after: str = "") -> Iterator[None]:
    """SIGTERM and SIGHUP inside the block end the command with the one line ``<before>stopped by SIGTERM<after>``
    and exit code 128 + the signal's number, as Ctrl-C's one line and 130 (:func:`main`)."""
    from rbench.interrupt import Terminated, stop_on_signals

    try:
        with stop_on_signals():
            yield
    except Terminated as exc:
        raise Interrupted(f"{before}stopped by {exc.name}{after}", 128 + exc.signum) from None


def _run_outcome(go: Callable[[], RunOutcome]) -> None:
    """Run ``go()`` under the signal handlers, turn Ctrl-C/SIGTERM/SIGHUP into one line, print the summary."""
    from rbench.runner import summarize

    resume = "everything finished so far is stored: re-run the same command to resume"
    try:
        with _signals_as_one_line(after=f"; {resume}"):  # the summary too: a signal while it prints is one line
            outcome = go()
            summarize(outcome, console)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {resume}") from None
    if outcome.failed or outcome.failed_cells:
        raise typer.Exit(1)


def _kwargs(text: str) -> dict:
    """``--kwargs``: a JSON object of constructor arguments, as the generated suite's TOML can hold them (no null,
    no key given twice: JSON keeps the last silently); else one line naming the argument."""

    def pairs(items: list[tuple[str, object]]) -> dict:
        keys = [k for k, _ in items]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            raise RbenchError(f"--kwargs: {twice!r} is given twice")
        return dict(items)

    try:
        value = json.loads(text, object_pairs_hook=pairs)
    except ValueError as exc:
        raise RbenchError(f"--kwargs: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RbenchError(f"--kwargs {text!r}: give a JSON object of constructor arguments")

    def no_null(item: object, where: str) -> None:
        if item is None:
            raise RbenchError(f"--kwargs.{where}: null has no TOML form (the generated suite is TOML); leave the "
                              "argument out for its default")
        if isinstance(item, list):
            item = dict(enumerate(item))
        if isinstance(item, dict):
            for key, sub in item.items():
                no_null(sub, f"{where}.{key}" if where else str(key))

    no_null(value, "")
    return value


def _floats(option: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise RbenchError(f"{option} {text!r}: give numbers separated by commas (one per channel)") from None


@app.command("eval")
def eval_cmd(
    module: Annotated[str, typer.Argument(help="Your network's class: path/to/nets.py:Class or "
                                          "package.module:Class")],
    weights: Annotated[Path, typer.Option("--weights", parser=path_value, metavar="PATH",
                                          help="Its weights: .safetensors, or a .pt/.pth "
                                          "state_dict")],
    kwargs: Annotated[str | None, typer.Option("--kwargs", help="The class's constructor arguments as a JSON "
                                               "object")] = None,
    mean: Annotated[str | None, typer.Option(help="Input normalization inside the model: mean per channel "
                                             "(comma list); attacks stay in [0, 1] pixels")] = None,
    std: Annotated[str | None, typer.Option(help="... and std per channel (comma list)")] = None,
    name: Annotated[str | None, typer.Option(help="The model's name in the tables (default: the class name)")
                    ] = None,
    dataset: Annotated[str, typer.Option(help="Dataset plugin (mnist, fashion-mnist, ...)")] = "mnist",
    n: Annotated[int | None, typer.Option("--n", min=1, help="Test images evaluated (default: 1000)")] = None,
    attack: Annotated[list[str] | None, typer.Option(
        "--attack", help="An attack, repeatable: NAME or NAME:key=value,... (e.g. pgd:eps=0.3,steps=100) "
        "(default: fgsm, pgd and margin-loss pgd at linf eps 0.1 and 0.3, gaussian noise)")] = None,
    suite: Annotated[Path | None, typer.Option(parser=path_value, metavar="PATH",
                                               help="Add the model to this suite's evaluations on the dataset "
                                               "instead: it appears beside the suite's models in every "
                                               "table")] = None,
    profile: Annotated[str | None, typer.Option(help="Profile of --suite to apply")] = None,
    store: StoreOpt = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", parser=path_value, metavar="PATH",
                                                 help="Where to write results and the generated "
                                                 "suite.toml (default: runs/<suite>-<time>)")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or a comma list")] = None,
    workers: Annotated[int | None, typer.Option(help="Number of workers (default: one per device)")] = None,
    job_timeout: Annotated[float | None, typer.Option("--job-timeout", parser=seconds_value, metavar="SECONDS",
                                                      help="Seconds any one job may run")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars")] = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    gpu_fraction: GpuFractionOpt = None,
    num_cpus: NumCpusOpt = None,
    max_retries: MaxRetriesOpt = None,
    precision: PrecisionOpt = None,
) -> None:
    """Evaluate your own trained model (class + weights file, evaluated as it is) and print the leaderboard; the
    suite it generates is written into the run folder (rbench run RUN_DIR/suite.toml repeats the run)."""
    from rbench.api import run_generated
    from rbench.flatten import flatten_suite
    from rbench.own_model import (
        DEFAULT_N,
        add_to_suite,
        attack_entries,
        checkpoint_entry,
        dataset_plugin,
        default_attacks,
        model_name,
        near_chance,
        standalone_suite,
    )
    from rbench.precision import check_precision
    from rbench.suite import load_suite

    if precision is not None:
        precision = check_precision(precision)
    params: dict = {"module": module, "weights": str(weights)}
    if kwargs is not None:
        params["kwargs"] = _kwargs(kwargs)
    for option, value in (("mean", _floats("--mean", mean)), ("std", _floats("--std", std))):
        if value is not None:
            params[option] = value
    label = model_name(module, name)
    data = dataset_plugin(dataset)
    channels = int(data.input_shape[0])
    given_values = {len(params[option]) for option in ("mean", "std") if option in params}
    if len(given_values) == 1 and not given_values <= {1, channels}:  # else the network got 2 channels, and said so
        raise RbenchError(f"--mean/--std: {given_values.pop()} values each, but {dataset} images have {channels} "
                          f"channel{'s' if channels > 1 else ''}: give one value per channel")
    entry = checkpoint_entry(params, dataset, Path.cwd())
    # the options that shape the generated suite, as they were given (the header says how it was made)
    given = " ".join([quote(module), "--weights", quote(str(weights))] + [
        f"{option} {quote(value)}" for option, value in (("--kwargs", kwargs), ("--mean", mean), ("--std", std),
                                                          ("--name", name), ("--dataset", dataset))
        if value is not None and not (option == "--dataset" and value == "mnist")])
    if suite is not None:
        if attack or n is not None:
            raise RbenchError(f"--suite {suite}: the suite's attacks and sizes are used; drop --attack and --n")
        load_suite(suite, profile)  # its own problems name its file, not the suite generated from it
        doc = add_to_suite(flatten_suite(suite, profile), label, entry, dataset, str(suite))
        header = f"Generated by: rbench eval {given} --suite {quote(str(suite))}" + (
            f" --profile {quote(profile)}" if profile else "")
    else:
        if profile is not None:
            raise RbenchError("--profile applies to --suite only")
        attacks = default_attacks(tuple(data.input_shape)) if not attack else attack_entries(attack)
        doc = standalone_suite(label, entry, dataset, n or DEFAULT_N, attacks)
        header = f"Generated by: rbench eval {given}" + (f" --n {n}" if n is not None else "") + "".join(
            f" --attack {quote(a)}" for a in attack or [])
    if precision is not None:  # in the generated suite, so that rbench run RUN_DIR/suite.toml repeats it
        doc["suite"]["precision"] = precision
        header += f" --precision {precision}"
    header += "\nRepeat it with: rbench run <this file> (paths are absolute; weights are keyed by their SHA-256)"
    options = _executor_options(address, gpu_fraction, num_cpus, max_retries)

    def go() -> RunOutcome:
        outcome = run_generated(doc, run_dir, header=header, store=_store(store), device=device, workers=workers,
                                job_timeout=job_timeout, console=log, quiet=quiet, executor=executor,
                                executor_options=options)
        warning = None if suite is not None else near_chance(outcome.results, label, int(data.num_classes))
        if warning:
            log.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
        return outcome

    _run_outcome(go)


@app.command()
def validate(
    suites: Annotated[list[Path], typer.Argument(parser=path_value, help="Suite TOML files")],
    profile: Annotated[str | None, typer.Option(help="Profile to apply")] = None,
) -> None:
    """Check suites (structure, plugin names and parameters, references) without running anything; without
    --profile, each with every profile it defines too. Every file is checked: each bad one is a line on stderr
    (exit 2 if any)."""
    _store(None, writes=False)  # libraries a plugin imports while validating keep their caches there, or in a temp
    bad = 0
    for path in suites:
        try:
            _validate_one(path, profile)
        except RbenchError as exc:
            if len(suites) == 1:
                raise
            bad += 1
            print(f"rbench: error: {exc}", file=sys.stderr)
    if bad:
        raise typer.Exit(2)


def _validate_one(path: Path, profile: str | None) -> None:
    """One suite of ``rbench validate``: its line (and its warnings), or the RbenchError of its first problem."""
    from rbench.plan import build_plan
    from rbench.suite import load_suite, suite_profiles

    suite = load_suite(path, profile)
    plan = build_plan(suite)
    warnings = dict.fromkeys(suite.warning_lines())
    jobs = []
    for name in [] if profile is not None else suite_profiles(path):  # without --profile, every profile too
        with_profile = load_suite(path, name)
        jobs.append(f"; {len(build_plan(with_profile).jobs)} jobs with profile {name}")
        warnings.update(dict.fromkeys(f"{w} (profile {name})" for w in with_profile.warning_lines()
                                      if w not in warnings))
    console.print(f"{escape(str(path))}: ok ({len(suite.models)} models, {len(suite.evaluations)} evaluations, "
                  f"{len(suite.tables)} tables, {len(plan.jobs)} jobs{''.join(jobs)})", highlight=False,
                  soft_wrap=True)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


@app.command()
def plugins(
    name: Annotated[str | None, typer.Argument(
        metavar="NAME", help="Explain this plugin: kind, distribution, version, what it does and every parameter "
        "(type, default, constraints, doc)")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only plugins of this kind (attack, model, metric, "
                                             "...)")] = None,
    params: Annotated[bool, typer.Option("--params", help="With --kind: explain every plugin of the kind, "
                                         "parameters included")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List every plugin: kind, name, version, distribution (and load errors); or explain one (NAME), or every
    plugin of a kind (--kind KIND --params)."""
    from rbench.explain import describe, render
    from rbench.manager import KINDS, get_registry, suggest

    registry = get_registry()
    if kind is not None and kind not in KINDS:
        raise RbenchError(f"--kind {kind!r}: no such plugin kind{suggest(kind, KINDS)} (kinds: {', '.join(KINDS)})")
    if name is not None or params:
        if name is not None:
            kinds = [kind] if kind is not None else [k for k in KINDS if name in registry.plugins[k]]
            if not kinds or name not in registry.plugins[kinds[0]]:
                broken = next((f for f in registry.failures if f.name == name), None)
                if broken is not None:
                    raise RbenchError(f"{name!r} ({broken.distribution}) failed to load: {broken.error}")
                where = f"{kind} plugin" if kind is not None else "plugin"
                known = registry.plugins[kind] if kind is not None else {n for k in KINDS for n in registry.plugins[k]}
                raise RbenchError(f"no {where} named {name!r}{suggest(name, known)} (rbench plugins lists them)")
            infos = [registry.get(k, name) for k in kinds]
        elif kind is None:
            raise RbenchError("--params: give a plugin NAME or --kind KIND (e.g. rbench plugins --kind attack "
                              "--params)")
        else:
            infos = [registry.get(kind, n) for n in sorted(registry.plugins[kind])]
        described = [describe(info) for info in infos]
        if as_json:
            print(json.dumps({"plugins": described}, indent=1))
        else:
            print("\n\n".join(render(d, max(60, min(console.width, 120))) for d in described))
        return
    rows = [{"kind": p.kind, "name": p.name, "version": p.version, "distribution": p.distribution,
             "entry_point": p.entry_point, "error": p.error} for p in registry.all() if kind in (None, p.kind)]
    if as_json:
        print(json.dumps({"plugins": rows, "conflicts": registry.conflicts}, indent=1))
        return
    table = Table("kind", "name", "version", "distribution", "status")
    for r in rows:
        table.add_row(*(escape(str(r[k])) for k in ("kind", "name", "version", "distribution")),
                      f"[red]failed to load: {escape(str(r['error']))}[/]" if r["error"] else "ok")
    console.print(table)
    for conflict in registry.conflicts:
        console.print(f"[red]conflict:[/] {escape(conflict)}", highlight=False)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(parser=path_value, help="A run folder (or its results.json)")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Reporter: md, csv, json (printed); html, tidy, "
                                     "figures, reliability, ... (files written into the run folder: "
                                     "rbench plugins --kind reporter)")] = "md",
    store: Annotated[Path | None, typer.Option("--store", parser=path_value, metavar="PATH",
                                               help="Artifact store a figure reporter reads "
                                               "(default: the run's store)")] = None,
) -> None:
    """Re-render a finished run's tables from its results.json (nothing is recomputed; its rate cells are checked
    against the run's per-sample outcomes where it kept them); a file reporter (html, tidy, figures, reliability)
    rewrites its files in the run folder, reliability from the stored predictions."""
    from rbench.errors import RunFolderRemoved
    from rbench.manager import get_registry
    from rbench.report.reporters import renders_text
    from rbench.report.tidy import outcomes_gone, read_outcomes
    from rbench.results import RunResults
    from rbench.rundir import folder_kept, writing_into

    results = RunResults.read(run_dir)
    read_outcomes(run_dir, results)  # the rate cells' values checked against their per-sample outcomes
    gone = outcomes_gone(run_dir, results)
    if gone:
        print(f"rbench: note: {gone}: their values are not checked against them", file=sys.stderr)
    reporter = get_registry().get("reporter", fmt).obj
    if renders_text(reporter):
        sys.stdout.write(reporter.render(results))
        return
    folder = run_dir if run_dir.is_dir() else run_dir.parent
    read = _store(store or results.provenance.get("store"), writes=False)
    read.expect(results.entry_checksums())  # figures from the entries the run's cells came from, or an error
    with writing_into(folder, "run folder"):
        try:
            written = reporter.write(results, folder, read)
        except (RbenchError, OSError):
            if not folder_kept(folder):  # the folder went meanwhile: not the input's fault (exit 1)
                raise RunFolderRemoved(f"run folder {folder} was removed while rbench report wrote into it: it "
                                       "was not made again") from None
            raise
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"{fmt}: nothing to draw for this run")


@app.command("compare")
def compare_cmd(
    run_dir: Annotated[Path, typer.Argument(parser=path_value, help="A run folder (or its results.json)")],
    published: Annotated[list[Path] | None, typer.Option("--published", parser=path_value, metavar="PATH",
                                                         help="Published-table files (default: those the suite "
                                                         "names)")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, md or json")] = "table",
    other: Annotated[Path | None, typer.Option("--run", parser=path_value, metavar="PATH",
                                               help="Another run folder: put its cells beside this run's "
                                               "instead, with the difference's 95% interval")] = None,
) -> None:
    """Put every published cell beside the run's: ours, theirs, the difference, within tolerance or not; or, with
    --run OTHER, every cell of another run beside this run's."""
    from rbench.compare import as_json, as_markdown, check_claims, compare, table_notes
    from rbench.report.terminal import print_comparison
    from rbench.results import RunResults

    if fmt not in ("table", "md", "json"):
        raise RbenchError(f"--format: {fmt!r} is not one of table, md, json")
    if other is not None and published:
        raise RbenchError("--run and --published: give one (a run is compared with another run or with papers)")
    results = RunResults.read(run_dir)
    if other is not None:
        from rbench import run_diff
        from rbench.report.terminal import print_run_diff
        from rbench.report.tidy import outcomes_gone, read_outcomes

        theirs = RunResults.read(other)
        if not run_diff.shared_cells(results, theirs):
            raise RbenchError(f"{run_dir} and {other} share no table cell (suites {results.suite!r} and "
                              f"{theirs.suite!r}): nothing to compare")
        diffs = run_diff.diff_runs(results, theirs, read_outcomes(run_dir, results), read_outcomes(other, theirs))
        for note in filter(None, (outcomes_gone(run_dir, results), outcomes_gone(other, theirs))):
            print(f"rbench: note: {note}: they are compared as independent samples (conservative); restore the "
                  "file, or run the suite into that folder again, to pair them", file=sys.stderr)
        if results.suite != theirs.suite:
            print(f"rbench: note: the runs are of two suites ({results.suite!r}, {theirs.suite!r}); cells pair up "
                  "by table, row and column", file=sys.stderr)
        if results.profile != theirs.profile:
            print(f"rbench: note: the runs are of two profiles ({results.profile or 'none'}, "
                  f"{theirs.profile or 'none'}): their cells may rest on other samples and models", file=sys.stderr)
        sizes = run_diff.other_sizes(results, theirs)
        if sizes:
            cells = "1 cell of both runs rests" if sizes == 1 else f"{sizes} cells of both runs rest"
            print(f"rbench: note: {cells} on other numbers of samples in each (their differences compare other "
                  "sample sets)", file=sys.stderr)
        if fmt == "json":
            print(json.dumps(run_diff.as_json(diffs), indent=1))
        elif fmt == "md":
            sys.stdout.write(run_diff.as_markdown(diffs, str(run_dir), str(other)))
        else:
            print_run_diff(diffs, console, str(run_dir), str(other))
        return
    paths = [str(p) for p in published] if published else None
    given = paths or []
    for i, path in enumerate(given):  # one file under two names (./x, a link) would be counted twice
        if first := next((q for q in given[:i] if os.path.realpath(q) == os.path.realpath(path)), None):
            raise RbenchError(f"--published {path}: the same file as --published {first}, given twice")
    if paths is None and not results.published:
        raise RbenchError(f"{run_dir}: the suite names no published tables; pass --published FILE")
    rows, claims = compare(results, paths), check_claims(results, paths)
    if fmt == "json":
        print(json.dumps(as_json(rows, claims), indent=1))
    elif fmt == "md":
        sys.stdout.write(as_markdown(rows, claims, table_notes(results, paths)))
    else:
        print_comparison(rows, console, claims=claims)


@cache_app.command("ls")
def cache_ls(store: StoreOpt = None) -> None:
    """List stored artifacts (key, kind, size, created, label)."""
    s = _store(store)
    s.check_is_store()
    table = Table("key", "kind", "MB", "created", "label", title=escape(str(s.root)), title_justify="left")
    total = 0
    for e in s.entries():
        total += e.bytes
        table.add_row(e.key[:16], escape(e.kind), f"{e.bytes / 1e6:.2f}", escape(e.created), escape(e.label))
    console.print(table)
    unlisted = _unlisted(s)
    console.print(f"{len(s.keys())} entries, {total / 1e6:.1f} MB{unlisted}{_absent(s)}", highlight=False)


@cache_app.command("verify")
def cache_verify(store: StoreOpt = None) -> None:
    """Check every entry (checksum, binding to its key, format, finite values); corrupt entries are moved to
    quarantine (exit 1 if any). Entries another process is writing are skipped."""
    from rbench.store import CorruptEntry, StoreReadError

    s = _store(store)
    s.check_is_store()
    bad = busy = unread = incomplete = 0
    keys = s.keys()
    for key in keys:
        try:
            outcome = s.verify(key)
            busy += outcome == "busy"
            if outcome == "incomplete":
                incomplete += 1
                console.print(f"[yellow]incomplete:[/] {key}: a checkpoint's weights without their sidecar (an "
                              "interrupted write: not an entry, nothing reads it; `rbench cache gc` removes it)",
                              highlight=False)
        except CorruptEntry as exc:
            bad += 1
            console.print(f"[red]corrupt:[/] {escape(str(exc))}", highlight=False)
        except StoreReadError as exc:  # the machine's failure, not the entry's: left in place
            unread += 1
            console.print(f"[yellow]unread:[/] {escape(str(exc))}", highlight=False)
    skipped = f", {busy} being written (skipped)" if busy else ""
    skipped += f", {incomplete} interrupted writes (left for gc)" if incomplete else ""
    skipped += f", {unread} could not be read (left in place)" if unread else ""
    debris = len(s.abandoned_temporaries()) + len(s.lease_temporaries()) + len(s.stale_cache_temporaries())  # a
    # killed writer's (a live run's are not counted): said, as gc will remove them
    skipped += f", {debris} temporary file{'s' * (debris != 1)} of interrupted writes (left for gc)" if debris else ""
    unlisted = _unlisted(s)
    console.print(f"{len(keys)} entries checked, {bad} corrupt{skipped}{unlisted}{_absent(s)}", highlight=False)
    if bad or unread or unlisted:
        raise typer.Exit(1)


def _unlisted(store: Store) -> str:
    """``", and N folders ... could not be listed"`` for the store's folders this process cannot list (each named on
    a line of its own first), or "": a listing that skipped them silently read as the whole store."""
    folders = store.unlisted()
    for folder in folders:
        console.print(f"[yellow]unlisted:[/] {escape(str(folder))}: cannot be listed (permission denied?): its "
                      "entries are not counted", highlight=False)
    return f", and {len(folders)} folders of entries could not be listed" if folders else ""


@cache_app.command("gc")
def cache_gc(
    keep: Annotated[list[Path] | None, typer.Argument(parser=path_value,
                                                      help="Suites whose artifacts to keep; everything else "
                                                       "is deleted. Without suites, only debris is removed.")] = None,
    profile: Annotated[list[str] | None, typer.Option(help="Profiles of those suites to keep (repeatable; "
                                                      "default: the suite's base and every profile)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed")] = False,
    store: StoreOpt = None,
) -> None:
    """Remove interrupted writes and quarantined entries; with suites, also every entry they do not use."""
    from rbench.gc import collect

    if profile and not keep:  # it was ignored: a gc of debris only, read as one keeping the profile
        raise RbenchError("cache gc: --profile names profiles of the suites to keep; give those suites too")
    s = _store(store)
    s.check_layout()
    with _signals_as_one_line(before="cache gc: "):  # a SIGTERM ended it without a word (the signal audit)
        removed, freed = collect(s, keep or [], profile, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for path in removed:
        console.print(f"{verb} {escape(str(path))}", highlight=False)
    console.print(f"{verb} {len(removed)} files, {freed / 1e6:.1f} MB")


def main() -> None:
    """Entry point: run the app; usage errors (an unknown option, a value of the wrong type or out of range) and
    user errors become one line on stderr with their exit code (2; 130 for Ctrl-C)."""
    try:  # typer 0.29 vendors click (its exceptions are not click's); older typers use click itself
        from typer._click.exceptions import ClickException, UsageError
    except ImportError:
        from click import ClickException, UsageError  # type: ignore[assignment]

    try:
        for name in ("RBENCH_DEBUG", "RBENCH_TRACE_PLUGINS"):  # a bad value is one line before anything runs
            flag(name)
        code = app(standalone_mode=False)  # click's errors come here, instead of typer's boxed usage panel
    except UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "rbench"
        message = " ".join(exc.format_message().split())
        if message:  # none: a command given no arguments, whose help typer has printed
            print(f"rbench: error: {where}: {message} (see {where} --help)", file=sys.stderr)
        sys.exit(2)
    except ClickException as exc:  # e.g. a file argument click could not open
        print(f"rbench: error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:  # EOF at a prompt
        print("rbench: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except RbenchError as exc:
        print(f"rbench: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if flag("RBENCH_DEBUG"):  # its value was checked at the start: reading it again cannot fail
            raise
        print(f"rbench: internal error: {type(exc).__name__}: {exc} (set RBENCH_DEBUG=1 for a traceback)",
              file=sys.stderr)
        sys.exit(1)
    if code == INTERRUPTED:  # typer turns Ctrl-C in a command into a silent Exit(130); `run` says more itself
        print("rbench: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(n) comes back as n without standalone mode
