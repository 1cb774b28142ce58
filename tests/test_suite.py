"""Suite loading and validation: every malformed suite ends in one clear SuiteError before any work."""

from __future__ import annotations

import pytest
from support import rbench

from rbench.errors import SuiteError
from rbench.plan import build_plan
from rbench.suite import load_suite

BASE = """
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


def test_base_suite_is_valid(write_suite):
    suite = load_suite(write_suite(BASE))
    assert set(suite.models) == {"mlp"} and list(suite.evaluations["ev"].attacks) == ["pgd"]
    assert suite.evaluations["ev"].attacks["pgd"].call.params.eps == 0.1


# (replace this, with that) in BASE -> the error must contain every fragment
MALFORMED = [
    ('name = "s"', 'name = 5', ["suite.name", "5"]),
    ('[suite]\nname = "s"', '[suite]\ntitle = "x"', ["suite.name", "required"]),
    ('name = "s"', 'name = "s"\nseed = -1', ["suite.seed", "-1"]),
    ('name = "s"', 'name = "s"\ncolour = "red"', ["suite.colour", "unknown key"]),
    ('plugin = "pgd"', 'plugin = "pgdd"', ["attacks.pgd.plugin", "'pgdd'", "did you mean 'pgd'"]),
    ('plugin = "mlp"', 'plugin = "resnet"', ["models.mlp.plugin", "'resnet'"]),
    ('plugin = "mnist"', 'plugin = "mnits"', ["datasets.mnist.plugin", "did you mean 'mnist'"]),
    ("eps = 0.1, steps = 5", "eps = -0.1, steps = 5", ["attacks.pgd.params.eps", "-0.1", "greater than 0"]),
    ("eps = 0.1, steps = 5", "eps = 'big', steps = 5", ["attacks.pgd.params.eps", "'big'"]),
    ("eps = 0.1, steps = 5", "steps = 5", ["attacks.pgd.params.eps", "required"]),
    ("eps = 0.1, steps = 5", "eps = 0.1, steps = 0", ["attacks.pgd.params.steps", "0"]),
    ("eps = 0.1, steps = 5", "eps = 0.1, setps = 5", ["attacks.pgd.params.setps", "unknown key"]),
    ("eps = 0.1, steps = 5", "eps = 0.1, norm = 'l3'", ["attacks.pgd.params.norm", "'l3'"]),
    ('params = { eps = 0.1, steps = 5 }', 'grid = { epz = [0.1] }', ["attacks.pgd.grid.epz", "did you mean 'eps'"]),
    ('params = { eps = 0.1, steps = 5 }', 'grid = { eps = [] }', ["attacks.pgd.grid.eps", "at least 1"]),
    ('params = { eps = 0.1, steps = 5 }', 'grid = { eps = [0.1, -2] }', ["attacks.pgd.params.eps", "-2"]),
    ('dataset = "mnist"\n\n[attacks', 'dataset = "mnistt"\n\n[attacks', ["models.mlp.dataset", "did you mean 'mnist'"]),
    ('dataset = "mnist"\n\n[attacks', 'dataset = "mnist"\nn_train = 0\n\n[attacks', ["models.mlp.n_train", "0"]),
    ('dataset = "mnist"\n\n[attacks', 'dataset = "mnist"\nsplit = "val"\n\n[attacks',
     ["models.mlp.split", "no split 'val'"]),
    ('dataset = "mnist"\n\n[attacks', 'dataset = "mnist"\nparams = { widths = [0] }\n\n[attacks',
     ["models.mlp.params.widths.0", "greater than 0"]),
    ('dataset = "mnist"\n\n[attacks', 'dataset = "mnist"\nparams = { activation = "swish" }\n\n[attacks',
     ["models.mlp.params.activation", "'swish'"]),
    ('dataset = "mnist"\n\n[attacks',
     'dataset = "mnist"\nparams = { widths = [8], weight_decay = [1, 2, 3] }\n\n[attacks',
     ["models.mlp.params", "weight_decay"]),
    ('dataset = "mnist"\n\n[attacks', 'dataset = "mnist"\ntrainer = { plugin = "adamw" }\n\n[attacks',
     ["models.mlp.trainer.plugin", "'adamw'"]),
    ('dataset = "mnist"\n\n[attacks', 'dataset = "mnist"\ntrainer = { params = { epochs = "two" } }\n\n[attacks',
     ["models.mlp.trainer.params.epochs", "'two'"]),
    ('sources = ["mlp"]', 'sources = ["mpl"]', ["evaluations.ev.sources[0]", "did you mean 'mlp'"]),
    ('sources = ["mlp"]', 'sources = []', ["evaluations.ev.sources", "at least 1"]),
    ('attacks = ["pgd"]', 'attacks = ["cw"]', ["evaluations.ev.attacks[0]", "'cw'"]),
    ('attacks = ["pgd"]', 'attacks = ["pgd"]\ntargets = ["mlp", "lenet"]', ["evaluations.ev.targets[1]", "'lenet'"]),
    ("n = 10", "n = -10", ["evaluations.ev.n", "-10"]),
    ("n = 10", "n = 10\nbatch_size = 0", ["evaluations.ev.batch_size", "0"]),
    ('evaluation = "ev"', 'evaluation = "eval"', ["tables.t.evaluation", "'eval'"]),
    ('rows = "attack"', 'rows = "attacks"', ["tables.t.rows", "'attacks'"]),
    ('columns = "model"', 'columns = "attack"', ["tables.t.columns", "both 'attack'"]),
    ('metric = "error"', 'metric = "eror"', ["tables.t.metric.plugin", "did you mean 'error'"]),
    ('metric = "error"', 'metric = { plugin = "distortion", params = { norm = "l7" } }',
     ["tables.t.metric.params.norm", "'l7'"]),
    ('metric = "error"', 'metrics = ["error", "accuracy"]', ["tables.t.metrics", "rows or columns = 'metric'"]),
    ('metric = "error"', 'metric = "error"\nmetrics = ["error"]', ["tables.t.metric", "exactly one"]),
    ('rows = "attack"\ncolumns = "model"', 'rows = "source"\ncolumns = "target"', ["tables.t.where", "attack"]),
    ('metric = "error"', 'metric = "error"\nwhere = { attack = "fgsm" }', ["tables.t", "rows"]),
    ('columns = "model"', 'columns = "source"\nwhere = { model = "mlp" }', ["tables.t.where", "excludes"]),
    ('rows = "attack"\ncolumns = "model"', 'rows = "model"\ncolumns = "metric"\nwhere = { attack = "pdg" }',
     ["tables.t.where.attack", "did you mean 'pgd'"]),
    ('[tables.t]', '[tables.t]\nsize = 3', ["tables.t.size", "unknown key"]),
    ('[tables.t]', '[widgets.w]\nx = 1\n[tables.t]', ["widgets", "unknown key"]),
]


@pytest.mark.parametrize(("old", "new", "fragments"), MALFORMED, ids=[m[2][0] for m in MALFORMED])
def test_malformed_suite_is_one_clear_error(write_suite, old, new, fragments):
    assert old in BASE, old
    path = write_suite(BASE.replace(old, new, 1))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_invalid_toml_names_the_file_and_line(write_suite):
    path = write_suite(BASE + "\n[tables.t2\n")
    with pytest.raises(SuiteError, match=r"invalid TOML.*line"):
        load_suite(path)


def test_missing_file(tmp_path):
    with pytest.raises(SuiteError, match="file not found"):
        load_suite(tmp_path / "nope.toml")


def test_grid_expands_to_labelled_instances(write_suite):
    path = write_suite(BASE.replace("params = { eps = 0.1, steps = 5 }",
                                    'params = { steps = 5 }\ngrid = { eps = [0.1, 0.2], norm = ["linf", "l2"] }'))
    ev = load_suite(path).evaluations["ev"]
    assert list(ev.attacks) == ["pgd(eps=0.1, norm=linf)", "pgd(eps=0.1, norm=l2)",
                                "pgd(eps=0.2, norm=linf)", "pgd(eps=0.2, norm=l2)"]
    assert ev.attacks["pgd(eps=0.2, norm=l2)"].call.params.norm == "l2"


def test_profiles_override_and_unknown_profile(write_suite):
    text = BASE + "\n[profiles.quick.evaluations.ev]\nn = 3\n[profiles.quick.models.mlp.trainer.params]\nepochs = 2\n"
    path = write_suite(text)
    assert load_suite(path).evaluations["ev"].data.n == 10
    quick = load_suite(path, "quick")
    assert quick.evaluations["ev"].data.n == 3 and quick.models["mlp"].trainer.params.epochs == 2
    with pytest.raises(SuiteError, match="profiles.fast: no such profile"):
        load_suite(path, "fast")
    bad = write_suite(BASE + "\n[profiles.quick.evaluations.ev]\nn = 0\n", "bad.toml")
    load_suite(bad)  # the base is fine; the profile breaks it
    with pytest.raises(SuiteError, match="evaluations.ev.n"):
        load_suite(bad, "quick")


def test_includes_merge_and_detect_conflicts_and_cycles(write_suite):
    write_suite(BASE, "part.toml")
    top = write_suite('[suite]\nname = "top"\ninclude = ["part.toml"]\n'
                      '[tables.again]\nevaluation = "ev"\nrows = "model"\ncolumns = "attack"\nmetric = "accuracy"\n',
                      "top.toml")
    suite = load_suite(top)
    assert set(suite.tables) == {"t", "again"} and len(suite.files) == 2
    clash = write_suite('[suite]\nname = "c"\ninclude = ["part.toml"]\n[attacks.pgd]\nplugin = "fgsm"\n'
                        'params = { eps = 0.1 }\n', "clash.toml")
    with pytest.raises(SuiteError, match=r"attacks.pgd: already defined differently in .*part.toml"):
        load_suite(clash)
    write_suite('[suite]\nname = "a"\ninclude = ["b.toml"]\n', "a.toml")
    b = write_suite('[suite]\nname = "b"\ninclude = ["a.toml"]\n', "b.toml")
    with pytest.raises(SuiteError, match="include cycle: b.toml -> a.toml -> b.toml"):
        load_suite(b)
    missing = write_suite('[suite]\nname = "m"\ninclude = ["gone.toml"]\n', "m.toml")
    with pytest.raises(SuiteError, match=r"suite.include\[0\].*gone.toml: file not found"):
        load_suite(missing)


def test_plan_keys_are_content_addressed(write_suite):
    plan = build_plan(load_suite(write_suite(BASE)))
    assert [j.kind for j in plan.jobs.values()] == ["train", "attack", "eval", "eval"]
    again = build_plan(load_suite(write_suite(BASE.replace('name = "s"', 'name = "renamed"'), "b.toml")))
    assert list(again.jobs) == list(plan.jobs)  # names and titles do not enter keys
    changed = build_plan(load_suite(write_suite(BASE.replace("eps = 0.1", "eps = 0.2"), "c.toml")))
    assert set(changed.jobs) & set(plan.jobs) == {plan.trained["mlp"], plan.evaluated[("ev", "mlp", "clean", "mlp")]}
    seeded = build_plan(load_suite(write_suite(BASE.replace('name = "s"', 'name = "s"\nseed = 1'), "d.toml")))
    assert not set(seeded.jobs) & set(plan.jobs)


def test_cli_validate_exit_codes(write_suite):
    good = write_suite(BASE)
    ok = rbench("validate", str(good))
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = write_suite(BASE.replace("eps = 0.1", "eps = -1"), "bad.toml")
    out = rbench("validate", str(bad))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "attacks.pgd.params.eps" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
