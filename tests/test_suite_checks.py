"""Suite checks found missing by an audit, each refused in one line before any work: numbers that are not finite
(anywhere in a suite, include, profile or published file), metric params naming suite entries that do not exist
(or do not hold the cells the metric reads), and published files naming tables, rows or columns the suite lacks."""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from support import BASE_SUITE as BASE
from support import rbench

from rbench.compare import Published, check_claims, compare, load_published
from rbench.errors import RbenchError, SuiteError
from rbench.manager import get_registry
from rbench.metric import Reference
from rbench.results import Cell, ResultTable, RunResults
from rbench.suite import load_suite
from rbench.tomlfile import non_finite, read_toml


def _refused(path: Path, *fragments: str, profile: str | None = None) -> str:
    """The one-line message loading ``path`` ends in; it starts with the file and holds every fragment."""
    with pytest.raises(SuiteError) as info:
        load_suite(path, profile)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# -- 1. numbers that are not finite ------------------------------------------------------------------------------
TRAINER = 'dataset = "mnist"\n\n[attacks'
NON_FINITE = [
    (TRAINER, 'dataset = "mnist"\ntrainer = { params = { lr = inf } }\n\n[attacks',
     "models.mlp.trainer.params.lr: inf is not a finite number"),
    (TRAINER, 'dataset = "mnist"\ntrainer = { params = { weight_decay = inf } }\n\n[attacks',
     "models.mlp.trainer.params.weight_decay: inf is not a finite number"),
    ("eps = 0.1, steps = 5", "eps = 0.1, steps = 5, step_size = inf", "attacks.pgd.params.step_size: inf is not"),
    ("eps = 0.1, steps = 5", "eps = nan, steps = 5", "attacks.pgd.params.eps: nan is not a finite number"),
    ("eps = 0.1, steps = 5", "eps = 0.1, steps = 5, step_size = -inf", "step_size: -inf is not a finite number"),
    ("eps = 0.1, steps = 5", "eps = 0.1, steps = 5, step_size = 1e400", "step_size: inf is not a finite number"),
    ("params = { eps = 0.1, steps = 5 }", "params = { steps = 5 }\ngrid = { eps = [0.1, inf] }",
     "attacks.pgd.grid.eps[1]: inf is not a finite number"),
    ("[evaluations.ev]", '[attacks.noise]\nplugin = "gaussian_noise"\nparams = { sigma = inf }\n\n[evaluations.ev]',
     "attacks.noise.params.sigma: inf is not a finite number"),
    ("eps = 0.1, steps = 5", "eps = 0.1, steps = 5, norm = inf",
     'attacks.pgd.params.norm: inf is not a finite number; write an infinite norm as the string "inf"'),
    # finite, but not a 32-bit float's: inf there (a run-time overflow), or an eps that did nothing
    ("eps = 0.1, steps = 5", "eps = 1e300, steps = 5",
     "attacks.pgd.params.eps: 1e+300 is beyond what a 32-bit float holds"),
    ("eps = 0.1, steps = 5", "eps = 1e-320, steps = 5",
     "attacks.pgd.params.eps: 1e-320 is nonzero but below what a 32-bit float holds"),
    # a profile is read whole, applied or not
    ('metric = "error"\n', 'metric = "error"\n\n[profiles.quick.attacks.pgd.params]\nstep_size = inf\n',
     "profiles.quick.attacks.pgd.params.step_size: inf is not a finite number"),
]


@pytest.mark.parametrize(("old", "new", "fragment"), NON_FINITE, ids=[f[2].split(":")[0] for f in NON_FINITE])
def test_a_number_that_is_not_finite_is_refused(write_suite, old, new, fragment):
    assert old in BASE, old
    _refused(write_suite(BASE.replace(old, new, 1)), fragment)


def test_a_job_time_limit_beyond_ten_million_seconds_is_refused(write_suite):
    """As --job-timeout: 1e300 s passed validation and then overflowed the timer of every job."""
    _refused(write_suite(BASE.replace('name = "s"', 'name = "s"\njob_timeout = 1e30')), "suite.job_timeout",
             "less than or equal to 10000000")
    assert load_suite(write_suite(BASE.replace('name = "s"', 'name = "s"\njob_timeout = 1e7'))).job_timeout == 1e7


def test_an_included_file_and_its_profiles_are_checked_too(write_suite):
    write_suite(BASE.replace('name = "s"', 'name = "part"') + '\n[profiles.big.evaluations.ev]\nn = 10\n'
                '[profiles.big.models.mlp.trainer.params]\nlr = nan\n', "part.toml")
    top = write_suite('[suite]\nname = "top"\ninclude = ["part.toml"]\n', "top.toml")
    message = _refused(top, "suite.include[0]", "part.toml: profiles.big.models.mlp.trainer.params.lr: nan is not")
    assert message.count("part.toml") == 1


def test_non_finite_walks_in_document_order():
    path, value = non_finite({"a": [1.0, {"b": 2}], "c": {"d": [0.5, [float("nan")]], "e": float("inf")}})
    assert path == "c.d[1][0]" and math.isnan(value)
    assert non_finite({"x": {"y": float("-inf")}, "z": float("inf")}) == ("x.y", float("-inf"))
    assert non_finite({"a": [1, 2.5, "inf", "nan", True], "b": {"c": -3e38, "d": 0.0}}) is None
    assert non_finite({"b": {"c": -1e300}}) == ("b.c", -1e300)  # no 32-bit float holds it


def test_no_shipped_file_holds_a_number_that_is_not_finite():
    from support import REPO

    files = [*(REPO / "suites").glob("*.toml"), *(REPO / "results" / "published").glob("*.toml")]
    assert len(files) >= 10
    for path in files:
        read_toml(path)  # refuses one


# -- 2. metric params naming suite entries ------------------------------------------------------------------------
REFS = BASE + """
[models.other]
plugin = "mlp"
dataset = "mnist"
params = { widths = [8] }

[evaluations.elsewhere]
dataset = "mnist"
n = 10
sources = ["other"]
attacks = ["pgd"]

[evaluations.bare]
dataset = "mnist"
split = "train"
n = 10
sources = ["mlp"]
"""


def _metric_table(metric: str, rows: str = '"attack"') -> str:
    return REFS + f'\n[tables.m]\nevaluation = "ev"\nrows = {rows}\ncolumns = "model"\nmetric = {metric}\n'


BAD_REFERENCES = [
    ('{ plugin = "worst_case", params = { attacks = [{ attack = "pgd(eps=0.1)" }] } }',
     "tables.m.metric.params.attacks[0].attack: no attack 'pgd(eps=0.1)' in evaluation 'ev' (defined: clean, pgd)"),
    ('{ plugin = "worst_case", params = { attacks = [{ attack = "pgd" }, { attack = "pgd", evaluation = "nope" }] } }',
     "tables.m.metric.params.attacks[1].evaluation: no evaluation 'nope' in the suite (defined: ev, elsewhere, bare)"),
    ('{ plugin = "worst_case", params = { attacks = [{ attack = "pgd", evaluation = "bare" }] } }',
     "attacks[0].attack: no attack 'pgd' in evaluation 'bare' (defined: clean)"),
    ('{ plugin = "worst_case", params = { attacks = [{ attack = "pgd", evaluation = "elsewhere" }] } }',
     "attacks[0].attack: evaluation 'elsewhere' does not evaluate 'mlp' on the 'pgd' sets of 'mlp', as cell "),
    ('{ plugin = "worst_case", params = { attacks = [{ attack = "clean", evaluation = "elsewhere" }] } }',
     "attacks[0].attack: evaluation 'elsewhere' does not evaluate 'mlp' on its clean inputs, as cell (clean, mlp)"),
    ('{ plugin = "ood_auroc", params = { ood = "nope" } }',
     "tables.m.metric.params.ood: no evaluation 'nope' in the suite (defined: ev, elsewhere, bare)"),
    ('{ plugin = "ood_auroc", params = { ood = "bare" } }',
     "tables.m.metric.params.ood: evaluation 'bare' has no attack 'pgd', the attack of cell (pgd, mlp) (defined: "
     "clean)"),
    ('{ plugin = "nearest_distance", params = { reference = "trian" } }',
     "tables.m.metric.params.reference: no evaluation 'trian' in the suite"),
]


@pytest.mark.parametrize(("metric", "fragment"), BAD_REFERENCES, ids=[b[1].split(":")[0] for b in BAD_REFERENCES])
def test_a_metric_param_naming_what_the_suite_lacks_is_refused(write_suite, metric, fragment):
    _refused(write_suite(_metric_table(metric)), fragment)


def test_the_key_path_names_where_the_table_gives_the_metric(write_suite):
    ood = '{ plugin = "ood_auroc", params = { ood = "nope" } }'
    rows = f'[{{ label = "a", attack = "clean" }}, {{ label = "b", attack = "pgd", metric = {ood} }}]'
    _refused(write_suite(_metric_table('"error"', rows)), "tables.m.rows[1].metric.params.ood: no evaluation 'nope'")
    listed = REFS + ('\n[tables.m]\nevaluation = "ev"\nrows = "metric"\ncolumns = "model"\nwhere = { attack = "pgd" }\n'
                     f'metrics = ["error", {ood}]\n')
    _refused(write_suite(listed), "tables.m.metrics[1].params.ood: no evaluation 'nope'")


def test_a_close_name_is_suggested(write_suite):
    grid = REFS.replace("params = { eps = 0.1, steps = 5 }", "params = { steps = 5 }\ngrid = { eps = [0.1, 0.2] }")
    text = grid + ('\n[tables.m]\nevaluation = "ev"\nrows = "attack"\ncolumns = "model"\nmetric = { plugin = '
                   '"worst_case", params = { attacks = [{ attack = "pgd(eps=0.3)" }] } }\n')
    _refused(write_suite(text), "no attack 'pgd(eps=0.3)' in evaluation 'ev' (defined: clean, pgd(eps=0.1), "
             "pgd(eps=0.2)); did you mean")


def test_references_that_hold_pass(write_suite):
    good = [
        '{ plugin = "worst_case", params = { attacks = [{ attack = "pgd" }, { attack = "clean", evaluation = "bare" '
        '}] } }',
        '{ plugin = "ood_auroc", params = { ood = "ev" } }',
        '{ plugin = "nearest_distance", params = { reference = "bare" } }',
    ]
    same_split = _metric_table(good[0]).replace('split = "train"', 'split = "test"')
    for text in [same_split] + [_metric_table(metric) for metric in good[1:]]:
        suite = load_suite(write_suite(text))
        assert set(suite.tables["m"].cells) == {("clean", "mlp"), ("pgd", "mlp")}
    # the worst case over the test split's pgd and the training split's clean inputs paired test image i with
    # training image i (accepted until an audit)
    _refused(write_suite(_metric_table(good[0])), "tables.m.metric.params.attacks[1].attack: evaluation 'ev' reads "
             "split 'test' of dataset 'mnist' and evaluation 'bare' reads split 'train' of dataset 'mnist'")
    # clean cells of another evaluation: any of its sources evaluated on the target will do
    clean = REFS.replace('sources = ["other"]', 'sources = ["other", "mlp"]\ntargets = ["mlp"]')
    text = clean + ('\n[tables.m]\nevaluation = "ev"\nrows = "attack"\ncolumns = "model"\nmetric = { plugin = '
                    '"ood_auroc", params = { ood = "elsewhere" } }\n')
    load_suite(write_suite(text))


MONITORED = BASE.replace('dataset = "mnist"\n\n[attacks', 'dataset = "mnist"\nmonitor = { dataset = "mnist", n = 10, '
                         'probes = [{ plugin = "accuracy", label = "acc" }] }\n\n[models.plain]\nplugin = "mlp"\n'
                         'dataset = "mnist"\n\n[attacks').replace('sources = ["mlp"]', 'sources = ["mlp", "plain"]')


def test_an_observed_probe_must_be_in_the_targets_monitor(write_suite):
    def table(probe: str, model: str) -> str:
        return MONITORED + (f'\n[tables.o]\nevaluation = "ev"\nrows = [{{ label = "x", model = "{model}" }}]\n'
                            'columns = "metric"\nwhere = { attack = "clean" }\nmetrics = [{ plugin = "observed", '
                            f'params = {{ probe = "{probe}", value = "accuracy" }} }}]\n')

    load_suite(write_suite(table("acc", "mlp")))
    _refused(write_suite(table("accuracy", "mlp")), "tables.o.metrics[0].params.probe: no probe labelled 'accuracy' in "
             "the monitor of model 'mlp', the target of cell (x, observed (probe=accuracy, value=accuracy)) (defined: "
             "acc)")
    load_suite(write_suite(table("acc", "plain")))  # not monitored at all: the cell's error, as before


def test_any_metric_may_declare_references(write_suite, monkeypatch):
    """The mechanism is the metric's: the engine asks each metric plugin for its ``references`` (here one added to
    ``error``, naming a model)."""
    error = type(get_registry().get("metric", "error").obj)
    path = write_suite(BASE)
    monkeypatch.setattr(error, "references", lambda self, params: [Reference("whom", "model", "ghost")], raising=False)
    _refused(path, "tables.t.metric.params.whom: no model 'ghost' in the suite (defined: mlp)")
    monkeypatch.setattr(error, "references", lambda self, params: [Reference("whom", "model", "mlp")], raising=False)
    load_suite(path)


# -- 3. published files against the suite -------------------------------------------------------------------------
PUBLISHED = """
[source]
citation = "x"

[tables.t]
figure = "Table 1"
why = "w"
tolerance = { abs = 1.0 }
column_tolerance = { mlp = { rel = 0.5 } }
values = { pgd = { mlp = 10.0 }, clean = { mlp = 2.0 } }

[[claims]]
text = "pgd hurts"
table = "t"
kind = "less"
a = { row = "clean", column = "mlp" }
b = { row = "pgd", column = "mlp" }
"""

BAD_PUBLISHED = [
    ("[tables.t]", "[tables.nope]", "tables.nope: the suite has no table 'nope' (tables: t)"),
    ('table = "t"', 'table = "ghost"', "claims[0].table: the suite has no table 'ghost' (tables: t)"),
    ("pgd = { mlp", "fgsm = { mlp", "tables.t.values.fgsm: table 't' has no row 'fgsm' (rows: clean, pgd)"),
    ("pgd = { mlp = 10.0 }", "pgd = { lenet = 10.0 }", "tables.t.values.pgd.lenet: table 't' has no column 'lenet' "
     "(columns: mlp)"),
    ("column_tolerance = { mlp", "column_tolerance = { mpl", "tables.t.column_tolerance.mpl: table 't' has no column"),
    ('b = { row = "pgd"', 'b = { row = "pdg"', "claims[0].b.row: table 't' has no row 'pdg'"),
    ('a = { row = "clean", column = "mlp" }', 'a = { row = "clean", column = "x" }',
     "claims[0].a.column: table 't' has no column 'x'"),
    ("pgd = { mlp = 10.0 }", "pgd = { mlp = nan }", "tables.t.values.pgd.mlp: nan is not a finite number"),
    ("tolerance = { abs = 1.0 }", "tolerance = { abs = inf }", "tables.t.tolerance.abs: inf is not a finite number"),
    ("{ rel = 0.5 }", "{ rel = inf }", "tables.t.column_tolerance.mlp.rel: inf is not a finite number"),
    ('kind = "less"', 'kind = "less"\nmargin = inf', "claims[0].margin: inf is not a finite number"),
]


@pytest.mark.parametrize(("old", "new", "fragment"), BAD_PUBLISHED, ids=[b[2].split(":")[0] for b in BAD_PUBLISHED])
def test_a_published_file_naming_what_the_suite_lacks_is_refused(write_suite, tmp_path, old, new, fragment):
    assert old in PUBLISHED, old
    pub = tmp_path / "pub.toml"
    pub.write_text(PUBLISHED.replace(old, new, 1))
    path = write_suite(BASE.replace('name = "s"', 'name = "s"\npublished = ["pub.toml"]'))
    _refused(path, f"{path}: suite.published[0]: {pub}: {fragment}")


def test_a_claim_among_rows_the_table_lacks_is_refused(write_suite, tmp_path):
    (tmp_path / "pub.toml").write_text(PUBLISHED + '\n[[claims]]\ntext = "c"\ntable = "t"\nkind = "lowest"\n'
                                       'a = { row = "clean", column = "mlp" }\namong = ["pgd", "fgsm"]\n')
    path = write_suite(BASE.replace('name = "s"', 'name = "s"\npublished = ["pub.toml"]'))
    _refused(path, "claims[1].among[1]: table 't' has no row 'fgsm'")


def test_a_published_file_matching_the_suite_passes(write_suite, tmp_path):
    (tmp_path / "pub.toml").write_text(PUBLISHED)
    suite = load_suite(write_suite(BASE.replace('name = "s"', 'name = "s"\npublished = ["pub.toml"]')))
    assert suite.published == [str(tmp_path / "pub.toml")]


def test_published_numbers_must_be_finite_in_process_too(tmp_path):
    """``rbench compare --published`` reads a file no suite checked; the schema refuses non-finite numbers as well
    (for files built in Python)."""
    pub = tmp_path / "pub.toml"
    pub.write_text(PUBLISHED.replace("clean = { mlp = 2.0 }", "clean = { mlp = nan }"))
    with pytest.raises(RbenchError, match=r"pub.toml: tables.t.values.clean.mlp: nan is not a finite number$"):
        load_published(pub)
    table = {"figure": "f", "why": "w", "tolerance": {"abs": float("inf")}, "values": {}}
    with pytest.raises(ValueError, match="finite number"):
        Published.model_validate({"source": {"citation": "x"}, "tables": {"t": table}})


def _run(tmp_path: Path, only: list[str] | None = None) -> RunResults:
    cells = [Cell("clean", "mlp", 2.0), Cell("pgd", "mlp", 10.0)]
    table = ResultTable("t", "t", ["clean", "pgd"], ["mlp"], "attack", "model", {"error": "%"}, {"error": ".1f"},
                        cells)
    return RunResults("s", "", None, [], {}, [table], only=only or [])


def test_compare_refuses_a_given_file_naming_what_the_run_lacks(tmp_path):
    pub = tmp_path / "pub.toml"
    pub.write_text(PUBLISHED.replace("[tables.t]", "[tables.other]").replace('table = "t"', 'table = "other"'))
    results = _run(tmp_path)
    for check in (compare, check_claims):
        with pytest.raises(RbenchError, match=r"pub.toml: tables.other: the run has no table 'other' \(tables: t\)$"):
            check(results, [str(pub)])
    # the run's own files were checked against its suite when it ran: a file edited since shows missing cells
    own = RunResults(**{**asdict(results), "tables": results.tables, "published": [str(pub)]})
    assert [c.verdict for c in compare(own)] == ["missing", "missing"]
    assert compare(_run(tmp_path, only=["t"]), [str(pub)]) == []  # --only left the table out: not checked
    good = tmp_path / "good.toml"
    good.write_text(PUBLISHED)
    assert [c.verdict for c in compare(results, [str(good)])] == ["within", "within"]
    assert [c.held for c in check_claims(results, [str(good)])] == [True]


def test_the_cli_refuses_each_before_any_work(tmp_path):
    """``rbench validate`` and ``rbench run`` refuse a bad suite with one line and exit code 2, and nothing is
    computed; ``rbench compare --published`` refuses a bad published file."""
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "pub.toml").write_text(PUBLISHED.replace("[tables.t]", "[tables.nope]"))
    cases = {
        "lr.toml": (BASE.replace(TRAINER, TRAINER.replace('"mnist"', '"mnist"\ntrainer = { params = { lr = inf } }')),
                    "models.mlp.trainer.params.lr: inf is not a finite number"),
        "ref.toml": (BASE.replace('metric = "error"', 'metric = { plugin = "ood_auroc", params = { ood = "nope" } }'),
                     "tables.t.metric.params.ood: no evaluation 'nope' in the suite"),
        "pub.toml": (BASE.replace('name = "s"', 'name = "s"\npublished = ["pub.toml"]'),
                     "pub.toml: tables.nope: the suite has no table 'nope'"),
    }
    for name, (text, fragment) in cases.items():
        path = folder / f"suite_{name}"
        path.write_text(textwrap.dedent(text))
        for command in (["validate", str(path)], ["run", str(path), "--store", str(tmp_path / "store"), "--run-dir",
                                                  str(tmp_path / "run"), "-q", "--device", "cpu"]):
            out = rbench(*command)
            assert out.returncode == 2, (command, out.stdout, out.stderr)
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in out.stderr, out.stderr
    store = tmp_path / "store"
    assert not (tmp_path / "run").exists() and not (store.exists() and any(p.is_file() for p in store.rglob("*")))
    run = tmp_path / "done"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(asdict(_run(tmp_path))))
    out = rbench("compare", str(run), "--published", str(folder / "pub.toml"))
    assert out.returncode == 2 and "pub.toml: tables.nope: the run has no table 'nope' (tables: t)" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


# -- 5. plugin bugs a suite would meet in every job ---------------------------------------------------------------
class _SelfContradicting:
    """An attack whose Params default breaks its own rule, or whose budget() cannot be stated."""

    class Params(BaseModel):
        eps: float = Field(5.0, le=1.0)  # pydantic does not validate defaults
        steps: int = 3
        step_size: float | None = None  # unset: what resolved_params may give

    def __init__(self, name: str, budget_raises: bool = False, resolves: dict | None = None,
                 revision: object = None):
        self.name, self.budget_raises, self.resolves, self.revision = name, budget_raises, resolves or {}, revision

    def key_revision(self, params):
        return self.revision

    def budget(self, params):
        if self.budget_raises:
            raise AttributeError("'Budgetless' object has no attribute 'norm'")
        return None

    def resolved_params(self, params):
        return self.resolves


@pytest.mark.parametrize(("plugin", "params", "fragment"), [
    ("self_contradicting", "{ steps = 2 }", "attack plugin 'self_contradicting' (distribution 'tests') has a "
     "default eps = 5.0 that breaks its own rule: Input should be less than or equal to 1"),
    ("budgetless", "{ eps = 0.5 }", "attack plugin 'budgetless' (distribution 'tests') cannot state its budget: "
     "AttributeError: 'Budgetless' object has no attribute 'norm'"),
    ("overresolving", "{ eps = 0.5 }", "attack plugin 'overresolving' (distribution 'tests') resolved_params names "
     "'eps', which is not an unset parameter"),
    ("nan_resolving", "{ eps = 0.5 }", "attack plugin 'nan_resolving' (distribution 'tests') resolved_params gives "
     "step_size = nan, not a finite number"),
    ("bad_revision", "{ eps = 0.5 }", "attack plugin 'bad_revision' (distribution 'tests') key_revision returned "
     "'l2 step', not None or a tag of at most 64 letters, digits, '.', '_' or '-'"),
])
def test_a_plugin_bug_every_job_would_hit_is_one_line_before_any_work(write_suite, monkeypatch, plugin, params,
                                                                       fragment):
    from rbench.manager import PluginInfo

    attacks = get_registry().plugins["attack"]
    resolves = {"overresolving": {"eps": 0.5}, "nan_resolving": {"step_size": math.nan}}.get(plugin)
    obj = _SelfContradicting(plugin, budget_raises=plugin == "budgetless", resolves=resolves,
                             revision="l2 step" if plugin == "bad_revision" else None)
    monkeypatch.setitem(attacks, plugin, PluginInfo("attack", plugin, "0", "tests", "tests", obj))
    path = write_suite(BASE.replace('plugin = "pgd"\nparams = { eps = 0.1, steps = 5 }',
                                    f'plugin = "{plugin}"\nparams = {params}'))
    _refused(path, f"attacks.pgd.plugin: {fragment}")
    if plugin == "self_contradicting":  # the default given explicitly is the user's error, said as such
        path = write_suite(BASE.replace('plugin = "pgd"\nparams = { eps = 0.1, steps = 5 }',
                                        f'plugin = "{plugin}"\nparams = {{ eps = 5.0 }}'))
        _refused(path, "attacks.pgd.params.eps", "less than or equal to 1")


def test_a_non_finite_or_unkeyable_parameter_is_refused_before_any_work(write_suite, monkeypatch):
    """A default of inf or nan passed validation (a value given in the suite never did); the run
    computed every job, then failed writing results.json ("Out of range float values are not JSON compliant"),
    exit 1, no plugin named. A ``set`` default passed too and failed every job, which read its params strictly
    from their JSON (a list). Each is one line naming the key path now."""
    from rbench.manager import PluginInfo

    class Loose(_SelfContradicting):
        class Params(BaseModel):
            eps: float = Field(0.1, le=1.0)
            tol: float = math.inf
            scale: dict[str, float] = {}
            skip: set[int] = set()

    class Setted(_SelfContradicting):
        class Params(BaseModel):
            eps: float = Field(0.1, le=1.0)
            skip: set[int] = {1, 2}

    attacks = get_registry().plugins["attack"]
    for name, obj in (("loose", Loose("loose")), ("setted", Setted("setted"))):
        monkeypatch.setitem(attacks, name, PluginInfo("attack", name, "0", "tests", "tests", obj))

    def refused(plugin: str, params: str, *fragments: str) -> None:
        _refused(write_suite(BASE.replace('plugin = "pgd"\nparams = { eps = 0.1, steps = 5 }',
                                          f'plugin = "{plugin}"\nparams = {params}')), *fragments)

    refused("loose", "{ eps = 0.5 }", "attacks.pgd.params.tol: inf is not a finite number (a default of attack "
            "plugin 'loose')")
    refused("loose", "{ tol = 1.0, scale = { a = nan } }", "attacks.pgd.params.scale.a: nan is not a finite number")
    refused("setted", "{ eps = 0.5 }", "attacks.pgd.plugin: attack plugin 'setted' (distribution 'tests') has a "
            "default skip = ", "that breaks its own rule: Input should be a valid set")


def test_a_key_a_third_party_params_would_ignore_is_refused(write_suite, monkeypatch):
    """pydantic drops unknown keys unless a Params forbids them: a plugin whose Params did not ran a misspelt
    ``stepz = 5`` with its default ``steps``, and the table looked like FGSM's. The suite's keys are checked
    against the Params' fields whatever its config."""
    from pydantic import ConfigDict

    from rbench.manager import PluginInfo

    class Keeps(_SelfContradicting):
        class Params(BaseModel):
            model_config = ConfigDict(extra="allow")
            eps: float = Field(0.1, le=1.0)

    attacks = get_registry().plugins["attack"]
    monkeypatch.setitem(attacks, "loose", PluginInfo("attack", "loose", "0", "tests", "tests",
                                                     _SelfContradicting("loose")))
    path = write_suite(BASE.replace('plugin = "pgd"\nparams = { eps = 0.1, steps = 5 }',
                                    'plugin = "loose"\nparams = { eps = 0.5, stepz = 5 }'))
    _refused(path, "attacks.pgd.params.stepz: attack plugin 'loose': unknown key (its params: eps, step_size, steps); "
                   "did you mean 'steps'?")
    monkeypatch.setitem(attacks, "loose", PluginInfo("attack", "loose", "0", "tests", "tests", Keeps("loose")))
    assert load_suite(path).evaluations["ev"].attacks["pgd"].call.params.stepz == 5  # a Params keeping extras


def test_the_keys_a_params_reads_are_its_aliases():
    """An aliased field is read under its alias only (its name would be dropped), a path alias by its first step,
    names too where the config lets them through."""
    from pydantic import AliasChoices, AliasPath, ConfigDict
    from pydantic.alias_generators import to_camel

    from rbench.suite_schema import accepted_keys, ignored_keys, validate_params

    class Aliased(BaseModel):
        lambda_: float = Field(1.0, alias="lambda")
        steps: int = Field(3, validation_alias=AliasPath("cfg", "steps"))
        eps: float = Field(0.1, validation_alias=AliasChoices("eps", "epsilon"))
        plain: int = 0

    assert accepted_keys(Aliased) == {"lambda", "cfg", "eps", "epsilon", "plain"}
    assert ignored_keys(Aliased, {"lambda_": 2.0, "cfg": {"steps": 4}}) == ["lambda_"]
    with pytest.raises(ValueError, match="params key 'lamda': unknown key .*did you mean 'lambda'"):
        validate_params(Aliased, {"lamda": 2.0})
    assert validate_params(Aliased, {"cfg": {"steps": 4}, "epsilon": 0.2}).steps == 4

    class Both(Aliased):
        model_config = ConfigDict(populate_by_name=True)

    class Camel(BaseModel):
        model_config = ConfigDict(alias_generator=to_camel)
        step_size: float = 0.1

    assert {"lambda_", "lambda"} <= accepted_keys(Both) and accepted_keys(Camel) == {"stepSize"}


def test_attack_labels_and_listed_names_are_the_suites_own(write_suite):
    """An attack named 'clean' replaced the clean row (two 'clean' rows, the true clean error gone); an attack
    named like another's grid instance had its result shown under that label and the other dropped; duplicated
    list entries gave identical columns or were dropped silently. Each is one line before any work."""
    from rbench.errors import SuiteError
    from rbench.suite import load_suite

    base = """
[suite]
name = "labels"
[datasets.mnist]
plugin = "mnist"
[models.mlp]
plugin = "mlp"
dataset = "mnist"
[attacks.fgsm]
plugin = "fgsm"
grid = { eps = [0.1] }
[evaluations.wb]
dataset = "mnist"
n = 8
sources = ["mlp"]
attacks = ["fgsm"]
[tables.t]
evaluation = "wb"
rows = "attack"
columns = "model"
metric = "error"
"""
    load_suite(write_suite(base))
    cases = {
        '[attacks.clean]\nplugin = "fgsm"\nparams = { eps = 0.1 }\n': ("attacks.clean: 'clean' names the clean",
                                                                       'attacks = ["fgsm", "clean"]'),
        '[attacks."fgsm(eps=0.1)"]\nplugin = "fgsm"\nparams = { eps = 0.3 }\n': (
            "has the label of an instance of attacks.fgsm", 'attacks = ["fgsm", "fgsm(eps=0.1)"]'),
    }
    for extra, (message, listed) in cases.items():
        text = base.replace("[evaluations.wb]", extra + "[evaluations.wb]").replace('attacks = ["fgsm"]', listed)
        with pytest.raises(SuiteError, match=re.escape(message)):
            load_suite(write_suite(text))
    for old, new, message in (('sources = ["mlp"]', 'sources = ["mlp", "mlp"]', "wb.sources: 'mlp' is listed twice"),
                              ('attacks = ["fgsm"]', 'attacks = ["fgsm", "fgsm"]', "wb.attacks: 'fgsm' is listed"),
                              ("eps = [0.1]", "eps = [0.1, 0.1]", "fgsm.grid.eps: 0.1 is listed twice"),
                              ('grid = { eps = [0.1] }', 'params = { eps = 0.2 }\ngrid = { eps = [0.1] }',
                               "fgsm.grid.eps: also given in params")):
        with pytest.raises(SuiteError, match=re.escape(message)):
            load_suite(write_suite(base.replace(old, new)))


def test_eval_refuses_an_attack_parameter_given_twice():
    from rbench.errors import RbenchError
    from rbench.own_model import parse_attack

    with pytest.raises(RbenchError, match=r"--attack 'fgsm:eps=0.1,eps=0.2': 'eps' is given twice"):
        parse_attack("fgsm:eps=0.1,eps=0.2")


def test_a_metric_refuses_cells_it_cannot_compute_before_any_work(write_suite):
    """success_rate with among = "correct" counts the images the source classifies correctly when clean: on a
    transfer cell (another target) or a generated set it only failed its cells after every job had run."""
    among = '{ plugin = "success_rate", params = { among = "correct" } }'
    load_suite(write_suite(_metric_table(among)))  # white-box: each source is its own target
    cross = REFS + ('\n[evaluations.cross]\ndataset = "mnist"\nn = 10\nsources = ["mlp", "other"]\n'
                    'targets = ["mlp", "other"]\nattacks = ["pgd"]\n'
                    '\n[tables.x]\nevaluation = "cross"\nrows = "source"\ncolumns = "target"\n'
                    f'where = {{ attack = "pgd" }}\nmetric = {among}\n')
    _refused(write_suite(cross), "tables.x.metric.params: cell (mlp, other): among = \"correct\" counts the images "
             "'mlp' classifies correctly when clean, so the cell's target must be its source (it is 'other')")


def test_a_metric_whose_cell_check_breaks_is_named(write_suite):
    """A third-party metric's cell_problem raising came out as an internal error naming no plugin."""
    from rbench.errors import PluginError
    from rbench.manager import PluginInfo, get_registry
    from rbench.metric import Metric

    class Broken(Metric):
        name, label = "broken_check", "broken"

        def cell_problem(self, params, place):
            raise AttributeError("boom")

        def compute(self, cell, params):
            return None

    registry = get_registry()
    registry.plugins["metric"]["broken_check"] = PluginInfo("metric", "broken_check", "0", "tests", "tests", Broken())
    try:
        with pytest.raises(PluginError, match=r"metric 'broken_check': cell_problem raised AttributeError: boom"):
            load_suite(write_suite(_metric_table('"broken_check"')))
    finally:
        registry.plugins["metric"].pop("broken_check")


def test_evaluations_of_one_dataset_with_other_params_do_not_pair(write_suite, monkeypatch):
    """A review: two evaluations of a dataset plugin with other params (another set of images) crashed the check
    meant to refuse pairing them (json could not write the params object: an internal error, exit 1)."""
    from pydantic import ConfigDict

    from rbench.manager import PluginInfo

    mnist = get_registry().get("dataset", "mnist").obj

    class Inverted(type(mnist)):  # type: ignore[misc]
        name = "inverted"

        class Params(BaseModel):
            model_config = ConfigDict(extra="forbid")
            invert: bool = False

    monkeypatch.setitem(get_registry().plugins["dataset"], "inverted",
                        PluginInfo("dataset", "inverted", "0", "tests", "tests", Inverted()))
    suite = """[suite]\nname = "p"\n[datasets.plain]\nplugin = "inverted"\n[datasets.flipped]\nplugin = "inverted"
params = { invert = true }\n[models.mlp]\nplugin = "mlp"\ndataset = "plain"\n[attacks.fgsm]\nplugin = "fgsm"
params = { eps = 0.1 }\n[evaluations.a]\ndataset = "plain"\nn = 10\nsources = ["mlp"]\nattacks = ["fgsm"]
[evaluations.b]\ndataset = "flipped"\nn = 10\nsources = ["mlp"]\nattacks = ["fgsm"]\n[tables.t]\nevaluation = "a"
rows = "attack"\ncolumns = "model"\nmetric = { plugin = "worst_case", params = { attacks = [{ attack = "fgsm" }, \
{ attack = "fgsm", evaluation = "b" }] } }\n"""
    _refused(write_suite(suite), "tables.t.metric.params.attacks[1].attack: evaluation 'a' reads split 'test' of "
             "dataset 'plain' with params '{\"invert\": false}' and evaluation 'b' reads split 'test' of dataset "
             "'flipped' with params '{\"invert\": true}': the metric pairs their predictions")
