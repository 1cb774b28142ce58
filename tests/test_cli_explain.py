"""The CLI that explains itself: ``rbench plugins NAME`` / ``--kind KIND --params`` (read from the plugins' Params
models), ``rbench run --dry-run`` (the plan, what is stored, an estimate; nothing written), ``rbench run --only
TABLE``, and close-match suggestions for misspelt suite keys."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field
from support import TINY_SUITE, rbench

from rbench.errors import SuiteError
from rbench.explain import constraints, describe, params_of, type_text
from rbench.manager import get_registry
from rbench.plan import build_plan, restrict
from rbench.suite import load_suite

SMALL = """
[suite]
name = "small"
seed = 1

[datasets.mnist]
plugin = "mnist"

[models.mlp]
plugin = "mlp"
params = { widths = [16] }
dataset = "mnist"
n_train = 500
trainer = { params = { epochs = 1, batch_size = 50 } }

[attacks.fgsm]
plugin = "fgsm"
params = { eps = 0.1 }

[attacks.pgd]
plugin = "pgd"
params = { eps = 0.1, steps = 2 }

[evaluations.ev]
dataset = "mnist"
n = 32
sources = ["mlp"]
attacks = ["fgsm", "pgd"]

[tables.fast]
evaluation = "ev"
rows = "model"
columns = "metric"
metrics = ["error", "clean_error"]
where = { attack = "fgsm" }

[tables.all]
evaluation = "ev"
rows = "attack"
columns = "model"
metric = "error"
"""


def _one_line_error(out) -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    return out.stderr


def _kind_rows(stdout: str) -> dict[str, list[str]]:
    """The dry run's table: kind -> [jobs, stored, stored took, to compute, estimate]."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines() if line.startswith("│")]
    return {row[0]: row[1:] for row in rows}


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


# -- rbench plugins NAME ------------------------------------------------------------------------------------------
def test_a_plugin_is_explained_from_its_params_model(tmp_path):
    out = rbench("plugins", "pgd", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("pgd (attack) -- distribution rbench, version ")
    assert "Iterated gradient steps" in text  # the first paragraph of Pgd's docstring
    for line in ('norm: "linf" | "l2" = "linf"', "eps: float = required; gt=0", "steps: int = 40; ge=1",
                 "step_size: float | None = None; gt=0", 'loss: "ce" | "margin" = "ce"'):
        assert line in text, line
    assert "notes: ``step_size`` defaults to" in text  # the Params class's docstring documents the fields


def test_json_shows_nested_models_and_every_kind_of_a_name(tmp_path):
    out = rbench("plugins", "worst_case", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    [desc] = json.loads(out.stdout)["plugins"]
    assert (desc["kind"], desc["distribution"], desc["params_model"]) == ("metric", "rbench", "WorstCaseParams")
    params = {p["name"]: p for p in desc["params"]}
    attacks = params["attacks"]
    assert attacks["type"] == "list[AttackRef]" and attacks["required"] and attacks["constraints"] == ["min_length=1"]
    [ref] = attacks["models"]
    assert ref["model"] == "AttackRef"
    assert [(p["name"], p["type"], p["required"], p["default"]) for p in ref["params"]] == [
        ("attack", "str", True, None), ("evaluation", "str | None", False, None)]
    assert params["gap_to"]["constraints"] == ["ge=0"] and params["include_clean"]["default"] is True
    # "accuracy" is a metric and a probe: both are shown; --kind narrows
    both = rbench("plugins", "accuracy", cwd=tmp_path)
    assert both.returncode == 0 and "accuracy (metric)" in both.stdout and "accuracy (probe)" in both.stdout
    probe = json.loads(rbench("plugins", "accuracy", "--kind", "probe", "--json", cwd=tmp_path).stdout)
    assert [d["kind"] for d in probe["plugins"]] == ["probe"]


def test_unknown_plugin_or_kind_is_one_line_with_a_suggestion(tmp_path):
    assert "no plugin named 'pgdd'; did you mean 'pgd'?" in _one_line_error(rbench("plugins", "pgdd", cwd=tmp_path))
    err = _one_line_error(rbench("plugins", "fgsm", "--kind", "metric", cwd=tmp_path))
    assert "no metric plugin named 'fgsm'" in err
    assert "did you mean 'attack'?" in _one_line_error(rbench("plugins", "--kind", "atack", cwd=tmp_path))


def test_every_plugin_of_a_kind_with_its_params(tmp_path):
    out = rbench("plugins", "--kind", "attack", "--params", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    names = sorted(get_registry().plugins["attack"])
    headers = [line.split(" (attack)")[0] for line in out.stdout.splitlines() if " (attack) -- " in line]
    assert headers == names
    assert "eps: float = required; gt=0" in out.stdout and "(model)" not in out.stdout


class _Inner(BaseModel):
    """Inner model."""

    depth: Annotated[int, Field(ge=1, le=9)] = 2


class _Documented(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: documented by a comment
    #: on two lines
    commented: int = 1
    described: float = Field(0.5, description="documented by pydantic")
    stringed: str = "x"
    """documented by an attribute docstring"""
    plain: Literal["a", "b"] | None = None
    trailing: int = 3  #: documented at the end of its line
    hashed: str = "#: not a comment"  # a plain comment, and a string that looks like one
    parts: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)] = [1]
    inner: list[_Inner] = []


def test_types_defaults_constraints_and_docs_of_fields():
    assert type_text(Literal["ce", "margin"]) == '"ce" | "margin"'
    assert type_text(list[int]) == "list[int]" and type_text(dict[str, float] | None) == "dict[str, float] | None"
    fields = _Documented.model_fields
    assert constraints(fields["parts"]) == ["min_length=1", "items (gt=0)"]
    params = {p["name"]: p for p in params_of(_Documented)}
    assert params["commented"]["doc"] == "documented by a comment on two lines"
    assert params["described"]["doc"] == "documented by pydantic"
    assert params["stringed"]["doc"] == "documented by an attribute docstring"
    assert params["plain"]["doc"] == "" and params["plain"]["type"] == '"a" | "b" | None'
    assert params["trailing"]["doc"] == "documented at the end of its line" and params["hashed"]["doc"] == ""
    [inner] = params["inner"]["models"]
    assert inner["params"][0]["constraints"] == ["ge=1", "le=9"] and inner["doc"] == "Inner model."
    # the built-ins document fields with #: comments: those are read
    denoising = {p["name"]: p for p in describe(get_registry().get("trainer", "denoising"))["params"]}
    assert "nesterov" in denoising["optimizer"]["doc"]


# -- misspelt keys ------------------------------------------------------------------------------------------------
def test_misspelt_params_key_gets_a_close_match(write_suite, tmp_path):
    path = write_suite(TINY_SUITE.replace("params = { eps = 0.2, steps = 3 }", "params = { eps = 0.2, step = 3 }"))
    err = _one_line_error(rbench("validate", str(path), cwd=tmp_path))
    assert "attacks.pgd.params.step: unknown key" in err and "did you mean 'steps'?" in err


@pytest.mark.parametrize(("old", "new", "path", "hint"), [
    ("seed = 3", "seeed = 3", "suite.seeed", "'seed'"),
    ('[models.mlp]\nplugin = "mlp"', '[models.mlp]\nplugin = "mlp"\nn_trian = 5', "models.mlp.n_trian", "'n_train'"),
    ('metric = "error"\n', 'metric = { plugin = "error", parms = {} }\n', "tables.errors.metric.parms", "'params'"),
    ("[tables.errors]", "[tables.errors]\ntitel = 'x'", "tables.errors.titel", "'title'"),
    ('params = { widths = [32] }', 'params = { widths = [32], activaton = "relu" }', "models.mlp.params.activaton",
     "'activation'"),
    ("[tables.errors]", "[tables.errors]\nsize = 3", "tables.errors.size", None),
])
def test_unknown_suite_keys_suggest_the_closest_field(write_suite, old, new, path, hint):
    assert old in TINY_SUITE
    with pytest.raises(SuiteError) as info:
        load_suite(write_suite(TINY_SUITE.replace(old, new, 1)))
    message = str(info.value)
    assert f"{path}: unknown key" in message
    assert (f"did you mean {hint}?" in message) if hint else ("did you mean" not in message)


def test_nested_params_keys_get_a_close_match(write_suite):
    suite = TINY_SUITE + textwrap.dedent("""
        [tables.worst]
        evaluation = "wb"
        rows = "model"
        columns = "attack"
        where = { attack = "clean" }
        metric = { plugin = "worst_case", params = { attacks = [{ atack = "pgd" }] } }
        """)
    with pytest.raises(SuiteError) as info:
        load_suite(write_suite(suite))
    assert "tables.worst.metric.params.attacks.0.atack: unknown key" in str(info.value)
    assert "did you mean 'attack'?" in str(info.value)


# -- --only and --dry-run -----------------------------------------------------------------------------------------
def worst_table(pgd_in: str) -> str:
    """A table of wb's models under worst_case over wb's noise and the pgd of evaluation ``pgd_in``."""
    return textwrap.dedent(f"""
        [tables.worst]
        evaluation = "wb"
        rows = "model"
        columns = "metric"
        where = {{ attack = "clean" }}
        [[tables.worst.metrics]]
        plugin = "worst_case"
        params = {{ attacks = [{{ attack = "noise" }}, {{ attack = "pgd", evaluation = "{pgd_in}" }}] }}
        """)


def test_only_keeps_what_the_tables_read(write_suite):
    """Plan level: a table of one attack needs none of the others; a metric naming attacks (worst_case) or another
    evaluation pulls their jobs in."""
    suite = load_suite(write_suite(TINY_SUITE + worst_table("tr")))
    plan = build_plan(suite)

    def attacks_of(table: str) -> set[str]:
        part = restrict(plan, [suite.tables[table]])
        assert all(set(job.deps) <= set(part.jobs) for job in part.jobs.values())  # closed under dependencies
        return {job.label for job in part.jobs.values() if job.kind == "attack"}

    assert attacks_of("transfer") == {"attack pgd on mlp", "attack pgd on cnn"}
    assert attacks_of("summary") == {f"attack {a} on cnn" for a in ("fgsm(eps=0.1)", "fgsm(eps=0.3)", "pgd", "noise")}
    assert attacks_of("worst") == {f"attack {a} on {m}" for a in ("noise", "pgd") for m in ("mlp", "cnn")}
    assert len(restrict(plan, suite.tables.values()).jobs) == len(plan.jobs)


#: an evaluation whose jobs no other evaluation of TINY_SUITE shares (another n: other keys)
FAR = """
[evaluations.far]
dataset = "mnist"
n = 32
sources = ["mlp", "cnn"]
attacks = ["pgd", "noise"]
"""


def test_only_computes_what_a_metric_declares_not_every_name_in_its_params(write_suite):
    """worst_case naming pgd in 'far' needs far's pgd, not wb's; nearest_distance reads the clean *inputs* of its
    reference evaluation (data, no job), so its table evaluates nothing there (a scan of the params' strings
    pulled in both)."""
    suite = load_suite(write_suite(TINY_SUITE + FAR + worst_table("far") + textwrap.dedent("""
        [tables.near]
        evaluation = "wb"
        rows = "attack"
        columns = "model"
        metric = { plugin = "nearest_distance", params = { reference = "far" } }
        """)))
    plan = build_plan(suite)
    far = {key for (ev, *_), key in plan.evaluated.items() if ev == "far"}
    worst = set(restrict(plan, [suite.tables["worst"]]).jobs)
    far_pgd = {plan.evaluated[("far", m, "pgd", m)] for m in ("mlp", "cnn")}
    assert far_pgd | {plan.attacked[("far", m, "pgd")] for m in ("mlp", "cnn")} <= worst
    assert not {plan.evaluated[("wb", m, "pgd", m)] for m in ("mlp", "cnn")} & worst
    assert not (far - far_pgd) & worst  # not far's noise or clean
    near = set(restrict(plan, [suite.tables["near"]]).jobs)
    assert not far & near
    assert {key for (ev, *_), key in plan.evaluated.items() if ev == "wb"} <= near


def test_dry_run_of_a_cold_store_writes_nothing(write_suite, tmp_path):
    path = write_suite(TINY_SUITE)
    store = tmp_path / "never" / "store"
    out = rbench("run", str(path), "--dry-run", "--store", str(store), "--device", "cpu", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "never").exists() and not (tmp_path / "runs").exists()  # no store, no run folder
    counts = Counter(job.kind for job in build_plan(load_suite(path)).jobs.values())
    assert _kind_rows(out.stdout) == {kind: [str(n), "0", "-", str(n), "unknown"] for kind, n in counts.items()}
    assert f"{sum(counts.values())} jobs, 0 stored" in out.stdout and "A cold run" not in out.stdout
    assert "Time left: unknown" in out.stdout and "Dry run: nothing was computed or written" in out.stdout


@pytest.fixture(scope="module")
def only_run(tmp_path_factory):
    """The SMALL suite run with --only fast on a fresh store: (folder, suite, store, run folder, process)."""
    root = tmp_path_factory.mktemp("only")
    suite = root / "small.toml"
    suite.write_text(SMALL)
    out = rbench("run", str(suite), "--only", "fast", "--store", str(root / "store"), "--run-dir", str(root / "run"),
                 "-q", "--device", "cpu", cwd=root)
    return root, suite, root / "store", root / "run", out


def test_only_runs_and_renders_just_the_named_table(only_run):
    _, _, _, run_dir, out = only_run
    assert out.returncode == 0, out.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert [t["name"] for t in results["tables"]] == ["fast"]
    assert sorted(j["label"] for j in results["jobs"].values()) == [
        "attack fgsm on mlp", "eval mlp on clean mnist/test", "eval mlp on fgsm@mlp", "train mlp"]
    assert "## all" not in (run_dir / "tables.md").read_text() and "fast" in (run_dir / "tables.md").read_text()
    assert "4 jobs: 4 done" in out.stdout


def test_unknown_only_table_stops_before_any_work(only_run, tmp_path):
    _, suite, _, _, _ = only_run
    out = rbench("run", str(suite), "--only", "fats", "--store", str(tmp_path / "store"), cwd=tmp_path)
    err = _one_line_error(out)
    assert f"{suite}: --only 'fats'" in err and "did you mean 'fast'?" in err and "(tables: fast, all)" in err
    assert not (tmp_path / "store").exists() and not (tmp_path / "runs").exists()


def test_dry_run_counts_stored_jobs_and_estimates_from_their_durations(only_run):
    root, suite, store, _, _ = only_run
    before = _files(store)
    out = rbench("run", str(suite), "--dry-run", "--store", str(store), "--device", "cpu", cwd=root,
                 env={"COLUMNS": "200"})  # a table row per line, whatever the terminal the tests run in
    assert out.returncode == 0, out.stderr
    assert _files(store) == before  # nothing written, not even a lock or a gate stamp
    cells = _kind_rows(out.stdout)
    assert [cells["train"][i] for i in (0, 1, 3, 4)] == ["1", "1", "0", "-"]
    # the pgd set and its evaluation are missing; the stored fgsm attack and evaluations give their estimates
    assert [cells["attack"][i] for i in (0, 1, 3)] == ["2", "1", "1"]
    assert [cells["eval"][i] for i in (0, 1, 3)] == ["3", "2", "1"]
    assert cells["attack"][4] not in ("unknown", "-") and cells["eval"][4] not in ("unknown", "-")
    assert cells["attack"][4].endswith("(all from other plugins' jobs: rough)")  # pgd, from the stored fgsm
    assert all(cells[kind][2] not in ("-", "not recorded") for kind in ("train", "attack", "eval"))
    assert "6 jobs, 4 stored, 2 to compute" in out.stdout and "Time left: unknown" not in out.stdout
    assert "A cold run: ~" in out.stdout
    # --only narrows the plan: everything the fast table reads is stored
    narrowed = rbench("run", str(suite), "--dry-run", "--only", "fast", "--store", str(store), cwd=root)
    assert narrowed.returncode == 0 and "4 jobs, 4 stored, 0 to compute" in narrowed.stdout
    assert "Time left: none" in narrowed.stdout


def test_estimate_is_the_stored_duration_of_similar_jobs(only_run):
    """In process: the pgd attack (no stored pgd) is estimated from the stored attack of the same kind (fgsm, same
    number of samples) per sample-pass: its 2 steps cost 2 fgsm passes; the missing evaluation from the stored
    evaluations of the same model plugin."""
    from rbench.preview import preview
    from rbench.store import Store

    _, suite, store_dir, _, _ = only_run
    store = Store(store_dir)
    plan = build_plan(load_suite(suite))
    recorded = {job.label: store.recorded_meta(job.key)["provenance"]["seconds"] for job in plan.jobs.values()
                if store.has(job.key)}
    kinds = {k.kind: k for k in preview(plan, store).kinds}
    assert kinds["attack"].seconds == pytest.approx(2 * recorded["attack fgsm on mlp"])  # pgd: steps = 2
    # what the stored jobs took: their own records, summed per kind
    assert kinds["train"].recorded == pytest.approx(recorded["train mlp"]) and kinds["train"].unrecorded == 0
    assert kinds["eval"].recorded == pytest.approx(recorded["eval mlp on clean mnist/test"]
                                                   + recorded["eval mlp on fgsm@mlp"])
    evals = sorted(recorded[label] / 32 for label in ("eval mlp on clean mnist/test", "eval mlp on fgsm@mlp"))
    assert kinds["eval"].seconds == pytest.approx(sum(evals) / 2 * 32)
    assert (kinds["attack"].unknown, kinds["eval"].unknown, kinds["train"].seconds) == (0, 0, 0)
    # pgd from fgsm's record: another plugin's job, so the estimate is counted as borrowed (and said to be rough)
    assert (kinds["attack"].borrowed, kinds["eval"].borrowed) == (1, 0)
    from rbench.preview import estimate_text

    assert estimate_text(80.0, 3, 1, 2) == "at least ~80 s (1 unknown; all from other plugins' jobs: rough)"
    assert estimate_text(80.0, 3, 0, 1) == "~80 s (1 from other plugins' jobs: rough)"


def test_a_loaded_or_assembled_model_never_estimates_a_training():
    """A checkpoint's load (trainer 'none', which reads no data) and a defended model's assembly (no trainer) take
    no time: they are one group, apart from trainings, even as a fallback."""
    from rbench.preview import ASSEMBLY, similarity

    def spec_of(key):
        return {}

    loaded = {"kind": "train", "model": {"plugin": "checkpoint"}, "trainer": {"plugin": "none", "params": {}}}
    assembled = {"kind": "train", "defended": {"model": "k"}}
    trained = {"kind": "train", "model": {"plugin": "mlp"}, "trainer": {"plugin": "standard", "params": {}}}
    assert similarity(loaded, spec_of) == similarity(assembled, spec_of) == ASSEMBLY
    assert similarity(trained, spec_of) == "standard mlp"


def test_only_leaves_the_tables_it_skipped_out_of_the_comparison(tmp_path):
    from rbench.compare import check_claims, compare
    from rbench.results import RunResults

    published = tmp_path / "paper.toml"
    published.write_text('[source]\ncitation = "x"\n[tables.t]\nfigure = "T1"\ntolerance = { abs = 1.0 }\n'
                         'why = "w"\n[tables.t.values]\nr = { c = 1.0 }\n'
                         '[[claims]]\ntext = "r below"\ntable = "t"\nkind = "at_most"\n'
                         'a = { row = "r", column = "c" }\nvalue = 2.0\n')
    full = RunResults("s", "", None, [], {}, [], published=[str(published)])
    assert [r.verdict for r in compare(full)] == ["missing"] and len(check_claims(full)) == 1
    only = RunResults("s", "", None, [], {}, [], published=[str(published)], only=["other"])
    assert compare(only) == [] and check_claims(only) == []


def test_work_counts_sample_passes():
    from rbench.preview import work

    def spec_of(key):
        return {}

    attack = {"kind": "attack", "attack": {"plugin": "pgd", "params": {"steps": 40}}, "data": {"n": 100}}
    assert work(attack, spec_of) == 4000.0
    train = {"kind": "train", "trainer": {"plugin": "standard", "params": {"epochs": 3}}, "data": {"n": 2000}}
    assert work(train, spec_of) == 6000.0
    assert work({"kind": "attack", "attack": {"plugin": "fgsm", "params": {}}, "data": {"n": 7}}, spec_of) == 7.0
    assert work({"kind": "attack", "attack": {"plugin": "pgd", "params": {"steps": True}}, "data": {"n": 7}},
                spec_of) == 7.0  # a flag is not a count
    assert work({"kind": "train", "trainer": {"plugin": "standard", "params": {}}, "data": {"n": None}},
                spec_of) is None  # a whole split: unknown


def test_a_whole_split_counts_its_samples_in_the_estimate():
    """A training on a whole split (n_train unset) does its split's samples: the estimate scales by them, instead
    of taking a whole-split training's seconds for one on 2000 images (it estimated 25 s for 7 s of training)."""
    from rbench.preview import samples, work

    whole = {"kind": "train", "data": {"dataset": {"plugin": "mnist", "version": "1", "params": {}}, "split": "train",
                                       "n": None, "subset_seed": 0},
             "trainer": {"plugin": "standard", "params": {"epochs": 2}}}
    part = {**whole, "data": {**whole["data"], "parts": [30000, 30000], "part": 1}}
    assert samples(whole, lambda key: {}) == 60000 and work(whole, lambda key: {}) == 120000.0
    assert samples(part, lambda key: {}) == 30000
    unknown = {**whole, "data": {**whole["data"], "dataset": {"plugin": "no such dataset", "params": {}}}}
    assert samples(unknown, lambda key: {}) is None


def test_a_plugin_whose_defaults_a_suite_refuses_says_so():
    """``rbench plugins NAME`` showed ``steps: int = 0; ge=1`` without a word, though every suite refuses that
    default; a plugin needing parameters (a validator asking for a combination) is no such case."""
    from rbench.explain import render
    from rbench.manager import PluginInfo

    class Steps(BaseModel):
        steps: Annotated[int, Field(ge=1)] = 0

    class Infinite(BaseModel):
        tol: float = float("inf")

    def described(params: type[BaseModel]) -> dict:
        plugin = type("Plugin", (), {"name": "self_contradicting", "Params": params})()
        return describe(PluginInfo("attack", "self_contradicting", "0", "tests", "tests", plugin))

    assert described(Infinite)["defaults_problem"] == "tol = inf is not a finite number"
    assert "warning: a suite refuses its defaults: has a default steps = 0 that breaks its own rule" in \
        " ".join(render(described(Steps)).split())
    assert describe(get_registry().get("attack", "gaussian_noise"))["defaults_problem"] is None
    assert describe(get_registry().get("attack", "pgd"))["defaults_problem"] is None


def test_a_defense_is_explained_with_what_it_declares_and_its_whole_docstring():
    """The defense audits: `rbench plugins median` showed only the docstring's first paragraph, so a suite author
    learnt neither the parameters' meaning nor that bit_depth needs bpda, noise eot, dae a dataset and trainer."""
    from rbench.explain import describe, render
    from rbench.manager import get_registry

    def shown(name: str) -> str:
        return render(describe(get_registry().get("defense", name)), width=200)

    assert "\n  - not differentiable: adaptive gradient attacks through it need bpda = true (BPDA)" in shown(
        "bit_depth")
    assert "\n  - differentiable: adaptive gradient attacks follow its gradient\n  - deterministic\n" in shown("median")
    noise = shown("noise_injection")
    assert "\n  - randomized: draws seeded from each job's key; set eot" in noise
    assert "\n\n  Params: ``sigma`` (> 0, required)" in noise  # the Params paragraph, after a blank line
    assert "\n  - deterministic at the defaults; its params decide" in shown("lowpass")  # noise_sigma = 0 by default
    assert "\n  - trained by its own job" in shown("dae") and "\n  - aggregates trained models" in shown("committee")
    assert "\n  - " not in render(describe(get_registry().get("attack", "fgsm")), width=200)  # defenses only
