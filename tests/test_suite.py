"""Suite loading and validation: every malformed suite ends in one clear SuiteError before any work."""

from __future__ import annotations

import os
import re

import pytest
from support import BASE_SUITE as BASE
from support import rbench

from rbench.errors import SuiteError
from rbench.plan import build_plan
from rbench.suite import load_suite


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
    ('rows = "attack"', 'rows = "atack"', ["tables.t.rows", "(got 'atack'); did you mean 'attack'?"]),
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
    with pytest.raises(SuiteError, match=r"evaluations.ev.n: .* \(set by profile 'quick': the suite without it is "):
        load_suite(bad, "quick")
    nested = write_suite(BASE + "\n[profiles.quick.profiles.quick.suite]\nseed = 3\n", "nested.toml")
    for profile in (None, "quick"):  # it was merged in and ignored
        with pytest.raises(SuiteError, match=r"profiles.quick.profiles: a profile cannot define profiles"):
            load_suite(nested, profile)


def test_validate_without_a_profile_checks_every_profile_too(write_suite, capsys):
    """A profile is applied only when asked for, so ``rbench validate SUITE`` loads the suite with each one too:
    a typo in a profile is found before the run that uses it."""
    from support import cli_in_process, rbench

    good = write_suite(BASE + "\n[profiles.quick.evaluations.ev]\nn = 3\n", "good.toml")
    out = rbench("validate", str(good))
    assert out.returncode == 0 and " jobs with profile quick)" in out.stdout, out.stdout + out.stderr
    warned = write_suite(BASE + "\n[profiles.quick.evaluations.ev]\neot = 4\n", "warned.toml")  # EOT, no defense
    out = rbench("validate", str(warned))
    assert out.returncode == 0 and "warning:" in out.stdout and "eot: 4 draws" in out.stdout and \
        "(profile quick)" in out.stdout, out.stdout
    bad = write_suite(BASE + "\n[profiles.quick.evaluations.ev]\nnx = 3\n", "bad.toml")
    code, err = cli_in_process(capsys, "validate", str(bad))
    assert code == 2 and "evaluations.ev.nx: unknown key" in err and "set by profile 'quick'" in err, err


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


def test_an_included_files_run_settings_that_differ_are_named_in_a_warning(write_suite):
    """The first file's [suite] table governs seed, precision and job_timeout; an included file's other value is not
    used, and the warning says so (including a suite under another seed is a seed sweep, so it is not an error)."""
    write_suite(BASE.replace('name = "s"', 'name = "s"\nseed = 3\nprecision = "bf16"\njob_timeout = 60'), "part.toml")
    top = write_suite('[suite]\nname = "top"\nseed = 1\ninclude = ["part.toml"]\n', "top.toml")
    suite = load_suite(top)
    assert suite.seed == 1 and suite.precision == "fp32" and suite.job_timeout is None
    lines = suite.warning_lines()
    assert [line.split(": ")[1] for line in lines] == ["suite.seed = 3 is not read",
                                                        "suite.precision = 'bf16' is not read",
                                                        "suite.job_timeout = 60.0 is not read"]
    assert lines[1].endswith("precision = 'fp32'; --precision overrides both)")
    assert all(line.startswith(str(top.parent / "part.toml")) and "top.toml: " in line for line in lines)
    same = write_suite('[suite]\nname = "same"\nseed = 3\nprecision = "bf16"\njob_timeout = 60\n'
                       'include = ["part.toml"]\n', "same.toml")
    assert load_suite(same).warning_lines() == []
    out = rbench("validate", str(top))
    assert out.returncode == 0 and "suite.seed = 3 is not read" in out.stdout


def test_plan_keys_are_content_addressed(write_suite):
    plan = build_plan(load_suite(write_suite(BASE)))
    assert [j.kind for j in plan.jobs.values()] == ["train", "attack", "eval", "eval"]
    again = build_plan(load_suite(write_suite(BASE.replace('name = "s"', 'name = "renamed"'), "b.toml")))
    assert list(again.jobs) == list(plan.jobs)  # names and titles do not enter keys
    changed = build_plan(load_suite(write_suite(BASE.replace("eps = 0.1", "eps = 0.2"), "c.toml")))
    assert set(changed.jobs) & set(plan.jobs) == {plan.trained["mlp"], plan.evaluated[("ev", "mlp", "clean", "mlp")]}
    seeded = build_plan(load_suite(write_suite(BASE.replace('name = "s"', 'name = "s"\nseed = 1'), "d.toml")))
    assert not set(seeded.jobs) & set(plan.jobs)


def test_the_whole_split_is_one_key_whether_n_is_given_or_not(write_suite):
    """``n = 10000`` of MNIST's test split, ``n_train = 60000`` and ``n`` equal to a part's size select every image
    in order, as leaving them out does: the same jobs (they were computed again); one image fewer is another."""
    plan = build_plan(load_suite(write_suite(BASE.replace("n = 10\n", ""))))
    whole = BASE.replace("n = 10\n", "n = 10000\n").replace('dataset = "mnist"\n\n[attacks',
                                                             'dataset = "mnist"\nn_train = 60000\n\n[attacks')
    assert list(build_plan(load_suite(write_suite(whole, "b.toml"))).jobs) == list(plan.jobs)
    fewer = build_plan(load_suite(write_suite(whole.replace("n = 10000", "n = 9999"), "c.toml")))
    assert set(fewer.jobs) & set(plan.jobs) == {plan.trained["mlp"]}
    parts = BASE.replace("n = 10\n", 'split = "train"\nparts = [100, 50]\npart = 1\n')
    by_part = build_plan(load_suite(write_suite(parts, "d.toml")))
    sized = build_plan(load_suite(write_suite(parts.replace("part = 1", "part = 1\nn = 50"), "e.toml")))
    assert list(sized.jobs) == list(by_part.jobs)


def test_the_default_profile_is_the_base_unless_the_suite_defines_one(write_suite):
    """Reports call the suite without a profile "default": ``--profile default`` names it; a suite's own profile of
    that name is applied; any other unknown profile is refused."""
    plan = build_plan(load_suite(write_suite(BASE)))
    assert list(build_plan(load_suite(write_suite(BASE), "default")).jobs) == list(plan.jobs)
    own = write_suite(BASE + '\n[profiles.default]\nevaluations.ev.n = 20\n', "own.toml")
    assert list(build_plan(load_suite(own, "default")).jobs) != list(plan.jobs)
    with pytest.raises(SuiteError, match="profiles.quick: no such profile"):
        load_suite(write_suite(BASE), "quick")


def test_cli_validate_exit_codes(write_suite):
    good = write_suite(BASE)
    ok = rbench("validate", str(good))
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = write_suite(BASE.replace("eps = 0.1", "eps = -1"), "bad.toml")
    out = rbench("validate", str(bad))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "attacks.pgd.params.eps" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


# -- names: the suite's and table names become file names; every entry name is short and printable -----------
@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "a/b", "a\\\\b", "..", "a..b", ".hidden", "-x", "a b",
                                  "x" * 65, "x" * 300, "a\\u0000b", "a\\nb", "a\\u001bb", "a\\u007fb", "a\\u0085b", ""])
def test_unsafe_suite_names_are_refused(write_suite, name):
    path = write_suite(BASE.replace('name = "s"', f'name = "{name}"'))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(f"{path}: suite.name: ") and message.isprintable(), repr(message)
    assert len(message) < 400, message


@pytest.mark.parametrize("name", ["a", "mini_szegedy", "example-mifgsm", "v1.2", "X" * 64])
def test_safe_suite_names_are_accepted(write_suite, name):
    assert load_suite(write_suite(BASE.replace('name = "s"', f'name = "{name}"'))).name == name


@pytest.mark.parametrize(("old", "new", "fragment"), [
    ("[tables.t]", '[tables."../t"]', "tables.'../t': name holds a path separator"),
    ("[tables.t]", '[tables."/etc/t"]', "tables.'/etc/t'"),
    ("[tables.t]", '[tables."a b"]', "is not a safe file name"),
    ("[tables.t]", f'[tables.{"t" * 65}]', "65 characters long, more than 64"),
    ("[tables.t]", '[tables."t\\u0000"]', "control or unprintable"),
    ("[models.mlp]", f'[models.{"m" * 65}]', "models.'mmmm"),
    ("[models.mlp]", '[models."m\\nx"]', "models.'m\\nx': name holds a control"),
    ("[attacks.pgd]", '[attacks."p\\u0007"]', "attacks.'p\\x07'"),
    ("[evaluations.ev]", '[evaluations."e\\u001b[31m"]', "evaluations.'e\\x1b[31m'"),
    ("[datasets.mnist]", '[datasets."d\\u0000"]', "datasets.'d\\x00'"),
    ("[tables.t]", '[profiles."q\\u0000"]\n[tables.t]', "profiles.'q\\x00'"),
])
def test_bad_entry_names_are_refused(write_suite, old, new, fragment):
    assert old in BASE
    path = write_suite(BASE.replace(old, new, 1))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(str(path)) and message.isprintable() and fragment in message, message


def test_entry_names_may_be_any_short_printable_text(write_suite):
    text = BASE.replace("[models.mlp]", '[models."MLP (σ, 2 layers)"]').replace('sources = ["mlp"]',
                                                                               'sources = ["MLP (σ, 2 layers)"]')
    assert list(load_suite(write_suite(text)).models) == ["MLP (σ, 2 layers)"]


@pytest.mark.parametrize(("old", "new", "fragment"), [
    ('name = "s"', 'name = "s"\ntitle = "\\u001b[2J\\u001b[31mHACK"', "suite.title: title holds a control"),
    ('evaluation = "ev"', 'title = "RED\\u0007"\nevaluation = "ev"', "tables.t.title"),
    ('name = "s"', f'name = "s"\ntitle = "{"x" * 301}"', "301 characters long, more than 300"),
    ('name = "s"', 'name = "s"\ndescription = "a\\u001b[31m"', "suite.description"),
])
def test_titles_and_descriptions_hold_no_control_characters(write_suite, old, new, fragment):
    """A title reaches the terminal and every report as it is: an escape sequence in it cleared the screen or
    coloured the output (the input audit), and it had no length limit. A description may hold newlines."""
    with pytest.raises(SuiteError, match=re.escape(fragment)) as info:
        load_suite(write_suite(BASE.replace(old, new, 1)))
    assert str(info.value).isprintable()
    text = BASE.replace('name = "s"', 'name = "s"\ntitle = "MNIST (σ)"\ndescription = "line one\\nline two"')
    assert load_suite(write_suite(text)).title == "MNIST (σ)"


@pytest.mark.parametrize(("label", "fragment"), [("x" * 101, "101 characters"), ("a\\u0000b", "control")])
def test_bad_labels_are_refused(write_suite, label, fragment):
    text = BASE.replace('rows = "attack"', f'rows = [{{ label = "{label}", attack = "pgd" }}]')
    with pytest.raises(SuiteError, match=fragment) as info:
        load_suite(write_suite(text))
    assert "tables.t.rows" in str(info.value) and str(info.value).isprintable()


def test_unprintable_keys_are_quoted_in_messages(write_suite):
    path = write_suite(BASE.replace("eps = 0.1, steps = 5", 'eps = 0.1, steps = 5, "k\\u0000\\n" = 1'))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.isprintable() and "attacks.pgd.params.'k\\x00\\n'" in message, message


def test_every_shipped_suite_and_profile_is_valid():
    import tomllib

    from support import REPO

    from rbench.suite_schema import name_problem

    suites = sorted((REPO / "suites").glob("*.toml"))
    assert len(suites) >= 4
    for path in suites:
        for profile in [None, *tomllib.loads(path.read_text()).get("profiles", {})]:
            load_suite(path, profile)
    for path in (REPO / "examples").glob("*/suite.toml"):  # its plugin is installed by its own test only
        doc = tomllib.loads(path.read_text())
        for name in [doc["suite"]["name"], *doc.get("tables", {})]:
            assert name_problem(name, safe=True) is None, (path, name)


# -- published files are loaded with the suite ---------------------------------------------------------------
PUBLISHED = '[source]\ncitation = "x"\n[tables.t]\nfigure = "f"\nwhy = "w"\ntolerance = { abs = 1.0 }\n' \
            'values = { "pgd" = { mlp = 10.0 } }\n'


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "pub.toml: file not found"),
    (b"\xff\xfe[source]", "pub.toml: not a UTF-8 text file"),
    (b"[source\n", "pub.toml: invalid TOML"),
    (b'[source]\ncitation = "x"\n[tables.t]\nfigure = "f"\nwhy = "w"\nvalues = {}\n',
     "pub.toml: tables.t.tolerance: Field required"),
    (b'[source]\ncitation = "x"\ncolour = 1\n[tables]\n', "pub.toml: source.colour"),
    ("folder", "pub.toml: is a directory"),
    ("huge", "pub.toml: is 1048577 bytes, more than the 1048576"),
    # read strictly, as suites: a string or a boolean is never taken for a number
    (PUBLISHED.replace("mlp = 10.0", 'mlp = "70.0"').encode(), "pub.toml: tables.t.values.pgd.mlp: Input should be"),
    (PUBLISHED.replace("mlp = 10.0", "mlp = true").encode(), "pub.toml: tables.t.values.pgd.mlp: Input should be"),
    (PUBLISHED.replace("abs = 1.0", 'abs = "5"').encode(), "pub.toml: tables.t.tolerance.abs: Input should be"),
    ((PUBLISHED + '[[claims]]\ntext = "c"\ntable = "t"\nkind = "at_least"\na = { row = "pgd", column = "mlp" }\n'
      'value = "50"\n').encode(), "pub.toml: claims.0.value: Input should be"),
    # beside a cell in % (an error rate), a number no percentage is: a typo or another unit
    (PUBLISHED.replace("mlp = 10.0", "mlp = -5.0").encode(),
     "pub.toml: tables.t.values.pgd.mlp: -5 is no percentage, and the table's cell is in %"),
    (PUBLISHED.replace("mlp = 10.0", "mlp = 100.5").encode(), "pub.toml: tables.t.values.pgd.mlp: 100.5 is no"),
    ((PUBLISHED + '[[claims]]\ntext = "c"\ntable = "t"\nkind = "at_most"\ncells = [{ row = "pgd", column = '
      '"mlp" }]\nvalue = 150.0\n').encode(), "pub.toml: claims[0].value: 150 is no percentage"),
    ((PUBLISHED + '[[claims]]\ntext = "c"\ntable = "t"\nkind = "within"\na = { row = "pgd", column = "mlp" }\n'
      'b = { row = "pgd", column = "mlp" }\nmargin = 101.0\n').encode(),
     "pub.toml: claims[0].margin: 101 points is more than two percentages can differ by"),
])
def test_bad_published_file_is_a_suite_error(write_suite, tmp_path, content, fragment):
    pub = tmp_path / "pub.toml"
    if content == "folder":
        pub.mkdir()
    elif content == "huge":
        with open(pub, "wb") as f:
            f.truncate((1 << 20) + 1)
    elif content is not None:
        pub.write_bytes(content)
    path = write_suite(BASE.replace('name = "s"', 'name = "s"\npublished = ["pub.toml"]'))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(f"{path}: suite.published[0]: {pub.parent}") and fragment in message, message
    assert "\n" not in message


def test_a_published_number_of_any_size_may_sit_beside_a_cell_that_is_not_in_percent(write_suite, tmp_path):
    """Only cells in % bound what may be published beside them: a distortion of 250 (or a claim about it) loads."""
    (tmp_path / "pub.toml").write_text(PUBLISHED.replace("mlp = 10.0", "mlp = 250.0") + (
        '[[claims]]\ntext = "c"\ntable = "t"\nkind = "at_least"\na = { row = "pgd", column = "mlp" }\n'
        'value = -3.0\n'))
    suite = load_suite(write_suite(BASE.replace('name = "s"', 'name = "s"\npublished = ["pub.toml"]').replace(
        'metric = "error"', 'metric = { plugin = "distortion", params = { norm = "l2" } }')))
    assert suite.published == [str(tmp_path / "pub.toml")]


def test_good_published_file_is_listed(write_suite, tmp_path):
    (tmp_path / "pub.toml").write_text(PUBLISHED)
    suite = load_suite(write_suite(BASE.replace('name = "s"', 'name = "s"\npublished = ["pub.toml"]')))
    assert suite.published == [str(tmp_path / "pub.toml")]
    twice = write_suite(BASE.replace('name = "s"', 'name = "s"\npublished = ["pub.toml", "./pub.toml"]'), "t.toml")
    with pytest.raises(SuiteError, match=r"t.toml: suite.published\[1\]: './pub.toml' is listed twice "
                                         r"\(also published\[0\]\)$"):
        load_suite(twice)


def test_load_published_refuses_devices_and_non_utf8(tmp_path):
    from rbench.compare import load_published
    from rbench.errors import RbenchError

    with pytest.raises(RbenchError, match="/dev/zero: is a character device, not a regular file"):
        load_published("/dev/zero")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[source]\ncitation = "Szegedy, é"\n'.encode("latin-1"))
    with pytest.raises(RbenchError, match="latin1.toml: not a UTF-8 text file"):
        load_published(bad)


# -- sizes: n, n_train and parts against the split ----------------------------------------------------------
@pytest.mark.parametrize(("old", "new", "message"), [
    ("n = 10", "n = 20000", "evaluations.ev.n: 20000 exceeds the 10000 images of mnist/test"),
    ("n = 10", "n = 10001\nsplit = \"test\"", "evaluations.ev.n: 10001 exceeds the 10000 images of mnist/test"),
    ("n = 10", "n = 60000\nsplit = \"train\"", None),
    ("n = 10", "n = 60001\nsplit = \"train\"", "evaluations.ev.n: 60001 exceeds the 60000 images of mnist/train"),
    ('dataset = "mnist"\n\n[attacks', 'dataset = "mnist"\nn_train = 70000\n\n[attacks',
     "models.mlp.n_train: 70000 exceeds the 60000 images of mnist/train"),
    ('dataset = "mnist"\n\n[attacks', 'dataset = "mnist"\nparts = [50000, 20000]\n\n[attacks',
     "models.mlp.parts: [50000, 20000] add up to 70000, more than the 60000 images of mnist/train"),
    ('dataset = "mnist"\n\n[attacks',
     'dataset = "mnist"\nparts = [30000, 30000]\npart = 1\nn_train = 30001\n\n[attacks',
     "models.mlp.n_train: 30001 exceeds the 30000 images of part 1 (parts = [30000, 30000]) of mnist/train"),
    ("n = 10", "parts = [5000, 5001]",
     "evaluations.ev.parts: [5000, 5001] add up to 10001, more than the 10000 images of mnist/test"),
    ("n = 10", "parts = [5000, 5000]\npart = 1\nn = 5000", None),
])
def test_sizes_beyond_the_split_are_suite_errors(write_suite, old, new, message):
    assert old in BASE
    path = write_suite(BASE.replace(old, new, 1))
    if message is None:
        load_suite(path)
        return
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_profile_that_asks_for_too_many_images_is_an_error(write_suite):
    path = write_suite(BASE + "\n[profiles.full.evaluations.ev]\nn = 10000\n"
                              "[profiles.huge.evaluations.ev]\nn = 12000\n")
    assert load_suite(path, "full").evaluations["ev"].data.n == 10000
    with pytest.raises(SuiteError, match="evaluations.ev.n: 12000 exceeds the 10000 images of mnist/test"):
        load_suite(path, "huge")


def test_a_model_whose_weights_outgrow_the_machine_is_refused_at_validation(write_suite):
    """Counted on torch's meta device (no memory used): 10^11 hidden units passed validate and failed only when the
    training job allocated them."""
    ok = load_suite(write_suite(BASE.replace('dataset = "mnist"\n\n[attacks',
                                             'dataset = "mnist"\nparams = { widths = [4096] }\n\n[attacks')))
    assert ok.models["mlp"].call.params.widths == [4096]
    huge = write_suite(BASE.replace('dataset = "mnist"\n\n[attacks',
                                    'dataset = "mnist"\nparams = { widths = [100000000000] }\n\n[attacks'), "huge.toml")
    with pytest.raises(SuiteError, match=r"models.mlp.params: its weights alone take 2.96e\+05 GiB, more than this "
                                         r"machine's .* GiB of memory"):
        load_suite(huge)


def test_fashion_mnist_sizes_and_unknown_sizes(write_suite, monkeypatch):
    text = BASE.replace('plugin = "mnist"', 'plugin = "fashion-mnist"').replace("n = 10", "n = 10001")
    path = write_suite(text)
    with pytest.raises(SuiteError, match=r"10001 exceeds the 10000 images of mnist/test \(plugin fashion-mnist\)"):
        load_suite(path)
    from rbench.dataset import Dataset
    from rbench.plugins.datasets.idx import _IdxDigits

    monkeypatch.setattr(_IdxDigits, "size", lambda self, split, params: None)  # unknown: left to the job
    assert load_suite(path).evaluations["ev"].data.n == 10001
    monkeypatch.delattr(_IdxDigits, "size")
    monkeypatch.delattr(Dataset, "size")  # a plugin without ``size`` at all (the contract makes it optional)
    assert load_suite(path).evaluations["ev"].data.n == 10001


# -- files: only small regular files; nesting and include depth -------------------------------------------
@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null", "/dev/urandom", "fifo", "folder", "huge"])
def test_include_of_a_device_fifo_folder_or_huge_file_is_refused(write_suite, tmp_path, target):
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
    elif target == "folder":
        (tmp_path / "folder").mkdir()
    elif target == "huge":
        with open(tmp_path / "huge", "wb") as f:
            f.truncate(10**10)  # sparse
    path = write_suite(BASE.replace('name = "s"', f'name = "s"\ninclude = ["{target}"]'))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(f"{path}: suite.include[0]: ") and target in message, message
    assert any(w in message for w in ("device", "FIFO", "directory", "10000000000 bytes, more than")), message


def test_the_suite_file_itself_must_be_a_small_regular_file(tmp_path):
    with pytest.raises(SuiteError, match="^/dev/zero: is a character device, not a regular file$"):
        load_suite("/dev/zero")
    os.mkfifo(tmp_path / "fifo.toml")
    with pytest.raises(SuiteError, match="fifo.toml: is a FIFO, not a regular file"):
        load_suite(tmp_path / "fifo.toml")
    big = tmp_path / "big.toml"
    big.write_text('[suite]\nname = "big"\n' + "# padding\n" * 110_000)
    with pytest.raises(SuiteError, match=r"big.toml: is 11000\d+ bytes, more than the 1048576 a suite file may have"):
        load_suite(big)
    with pytest.raises(SuiteError, match="not a usable path"):
        load_suite(tmp_path / "nul\x00.toml")


@pytest.mark.parametrize("nested", [
    "x = " + "[" * 1000 + "]" * 1000,  # the TOML parser's own recursion
    "x = " + "{ a = " * 1000 + "1" + " }" * 1000,
    "x = " + "[" * 40 + "]" * 40,  # parsed, too deep to validate
    "[" + ".".join(["a"] * 1000) + "]",  # parsed without recursion
])
def test_deep_nesting_is_one_line(write_suite, nested):
    path = write_suite(BASE + "\n[profiles.q]\n" + nested + "\n")
    with pytest.raises(SuiteError, match="nests deeper than 32 levels") as info:
        load_suite(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_include_depth_is_limited_and_repeated_includes_are_read_once(write_suite, tmp_path):
    for i in range(40):
        write_suite(f'[suite]\nname = "c{i}"\ninclude = ["c{i + 1}.toml"]\n', f"c{i}.toml")
    write_suite('[suite]\nname = "c40"\n', "c40.toml")
    with pytest.raises(SuiteError, match=r"c32.toml: suite.include\[0\]: .*c33.toml: includes nest deeper than 32"):
        load_suite(tmp_path / "c0.toml")
    assert len(load_suite(tmp_path / "c8.toml").files) == 33  # 32 levels below the top are fine
    # a diamond 30 levels deep includes 2^30 paths but 60 files: each is read once
    for i in range(30):
        for side in "ab":
            write_suite(f'[suite]\nname = "d{i}{side}"\ninclude = ["d{i + 1}a.toml", "d{i + 1}b.toml"]\n',
                        f"d{i}{side}.toml")
    for side in "ab":
        write_suite(BASE.replace('name = "s"', f'name = "d30{side}"'), f"d30{side}.toml")
    suite = load_suite(tmp_path / "d0a.toml")
    assert len(suite.files) == 61 and set(suite.models) == {"mlp"}


def test_a_grid_that_expands_too_far_is_refused(write_suite):
    grid = "grid = { eps = [" + ", ".join(f"0.{i + 1:03d}" for i in range(100)) + "], steps = [" + \
        ", ".join(str(i + 1) for i in range(100)) + "] }"
    path = write_suite(BASE.replace("params = { eps = 0.1, steps = 5 }", grid))
    with pytest.raises(SuiteError, match=r"attacks.pgd.grid: expands to 10000 instances, more than 1000$"):
        load_suite(path)


def test_job_timeout_is_a_positive_number_of_seconds(write_suite):
    base = '[suite]\nname = "t"\n{line}\n'
    assert load_suite(write_suite(base.format(line="job_timeout = 600"))).job_timeout == 600.0
    assert load_suite(write_suite(base.format(line=""))).job_timeout is None
    for bad in ("job_timeout = 0", "job_timeout = -1.5", 'job_timeout = "60"', "job_timeout = nan"):
        with pytest.raises(SuiteError, match="suite.job_timeout"):
            load_suite(write_suite(base.format(line=bad)))


def test_the_readme_suite_example_is_a_valid_suite(tmp_path):
    """README's "Writing a suite" block, as a user would copy it, validates and plans in both its profiles (it once
    included quickstart.toml while redefining its model, which the merge rightly refuses)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Writing a suite", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    path = tmp_path / "my_suite.toml"
    path.write_text(block.group(1))
    for profile in (None, "quick"):
        suite = load_suite(path, profile)
        assert suite.name == "my_suite" and build_plan(suite).jobs


PAIRED = BASE.split("[evaluations.ev]")[0] + """[attacks.fool]
plugin = "map_elites"
params = { generations = 2 }

[evaluations.test]
dataset = "mnist"
n = 10
sources = ["mlp"]
attacks = ["pgd", "fool"]

[evaluations.train]
dataset = "mnist"
split = "train"
n = 10
sources = ["mlp"]
attacks = ["pgd"]

[tables.t]
evaluation = "test"
"""


@pytest.mark.parametrize(("table", "fragments"), [
    ('rows = [{ label = "test", evaluation = "test" }, { label = "train", evaluation = "train" }]\n'
     'columns = "model"\nmetric = "error"\nwhere = { attack = "pgd" }\npaired = [["test", "train"]]',
     ["tables.t.paired[0]", "['test', 'train'] at 'mlp'", "evaluation 'test' reads split 'test' of dataset 'mnist' "
      "and evaluation 'train' reads split 'train' of dataset 'mnist': a paired test needs the same images"]),
    ('rows = "attack"\ncolumns = "model"\nmetric = "success_rate"\npaired = [["pgd", "fool"]]',
     ["tables.t.paired[0]", "attack 'fool' generates its images: there is no dataset sample to pair them on"]),
    ('rows = [{ label = "error", metric = "error" }, { label = "accuracy", metric = "accuracy" }]\n'
     'columns = "model"\nwhere = { attack = "pgd" }\npaired = [["error", "accuracy"]]',
     ["tables.t.paired[0]", "the cells hold different metrics ('error', 'accuracy')"]),
])
def test_paired_rows_must_pair_the_same_images_of_one_metric(write_suite, table, fragments):
    """McNemar's test pairs outcomes by dataset index, an image's position in its split: a review paired test image
    i with training image i (accepted, and a p-value printed), and a generated set's images, all index -1, collapsed
    to one pair (p = 1 for any difference)."""
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(PAIRED + table))
    assert all(f in str(err.value) for f in fragments), str(err.value)
    if "evaluation" in table:  # two evaluations of one split (another n, say) pair: the test takes shared images
        same = PAIRED.replace('split = "train"', 'split = "test"')
        assert load_suite(write_suite(same + table)).tables["t"].paired == (("test", "train"),)


def test_worst_case_pairs_only_the_same_images(write_suite):
    """worst_case matches each attack's predictions by dataset index: one over the test split's pgd and the training
    split's was accepted (and an audit's over MNIST and notMNIST printed a number), each sample the worst of two
    unrelated images. The OOD metrics, which read another dataset as a whole, are left free."""
    table = ('rows = [{ label = "worst", metric = { plugin = "worst_case", params = { attacks = [{ attack = "pgd" }, '
             '{ attack = "pgd", evaluation = "train" }] } } }]\ncolumns = "model"\nwhere = { attack = "pgd" }')
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(PAIRED + table))
    assert ("tables.t.rows[0].metric.params.attacks[1].attack: evaluation 'test' reads split 'test' of dataset "
            "'mnist' and evaluation 'train' reads split 'train' of dataset 'mnist': the metric pairs their "
            "predictions sample by sample, by dataset index, for cell (worst, mlp)") in str(err.value), str(err.value)
    same = PAIRED.replace('split = "train"', 'split = "test"')  # another n of the same split: shared images
    assert load_suite(write_suite(same + table)).tables["t"].rows == ("worst",)
