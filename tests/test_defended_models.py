"""Defended models: suite syntax and its validation, job keys, and end-to-end runs through both threat models
(transferred from the undefended model, adaptive white-box with BPDA and EOT) with the built-in defenses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from rich.console import Console
from support import rbench

from rbench.errors import SuiteError
from rbench.plan import build_plan
from rbench.runner import run_suite, select_tables
from rbench.store import Store
from rbench.suite import load_suite

BASE = """
[suite]
name = "defended"
seed = 3

[datasets.mnist]
plugin = "mnist"

[models.mlp]
plugin = "mlp"
params = { widths = [32] }
dataset = "mnist"
n_train = 2000
trainer = { params = { epochs = 1, batch_size = 32, lr = 3e-3 } }

[models.mlp_b]
plugin = "mlp"
params = { widths = [32] }
dataset = "mnist"
n_train = 2000
seed = 11
trainer = { params = { epochs = 1, batch_size = 32, lr = 3e-3 } }

[defenses.lowpass]
plugin = "lowpass"
params = { size = 3, variance = 7.0 }

[defenses.noisy_lowpass]
plugin = "lowpass"
params = { size = 3, variance = 7.0, noise_sigma = 0.2 }

[defenses.squeeze]
plugin = "bit_depth"
params = { bits = 1 }

[defenses.dae]
plugin = "dae"
params = { widths = [128] }
dataset = "mnist"
n_train = 2000
trainer = { plugin = "denoising", params = { epochs = 5, batch_size = 64, optimizer = "adam", lr = 3e-3 } }

[defenses.committee]
plugin = "committee"

[models.mlp_lowpass]
base = "mlp"
defenses = ["lowpass"]

[models.mlp_noisy]
base = "mlp"
defenses = ["noisy_lowpass"]

[models.mlp_squeezed]
base = "mlp"
defenses = ["squeeze"]

[models.mlp_dae]
base = "mlp"
defenses = ["dae"]

[models.mlp_b_dae]
base = "mlp_b"
defenses = ["dae", "lowpass"]

[models.committee]
members = ["mlp", "mlp_b"]
defenses = ["committee"]
undefended = "mlp"

[attacks.fgsm]
plugin = "fgsm"
params = { eps = 0.15 }

[attacks.noise]
plugin = "gaussian_noise"
params = { norm = "l2", eps = 3.0 }

[evaluations.adaptive]
dataset = "mnist"
n = 64
sources = ["mlp", "mlp_lowpass", "mlp_noisy", "mlp_squeezed", "mlp_dae", "mlp_b_dae", "committee"]
attacks = ["fgsm", "noise"]
bpda = true
eot = 4

[evaluations.transfer]
dataset = "mnist"
n = 64
sources = ["mlp_lowpass", "mlp_noisy", "mlp_squeezed", "mlp_dae", "committee"]
attacks = ["fgsm"]
threat_model = "transfer"

[tables.adaptive]
evaluation = "adaptive"
rows = "model"
columns = "attack"
metric = "error"

[tables.transfer]
evaluation = "transfer"
rows = "model"
columns = "attack"
metric = "error"

[tables.transfer_success]
evaluation = "transfer"
rows = "model"
columns = "attack"
metric = "success_rate"

[tables.transfer_distortion]
evaluation = "transfer"
rows = "model"
columns = "attack"
metric = "distortion"
"""


def _suite(write_suite, text: str = BASE, **replace: str):
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return write_suite(text)


@pytest.mark.parametrize("change, fragment", [
    ({'defenses = ["lowpass"]': 'defenses = ["lowpas"]'}, "models.mlp_lowpass.defenses[0]: no defense named 'lowpas'"),
    ({'plugin = "bit_depth"': 'plugin = "bitdepth"'}, "defenses.squeeze.plugin"),
    ({'base = "mlp"\ndefenses = ["lowpass"]': 'base = "mlp_loop"\ndefenses = ["lowpass"]\n[models.mlp_loop]\n'
      'base = "mlp_lowpass"\ndefenses = ["lowpass"]'}, "composition cycle"),
    ({'bpda = true\n': ''}, "evaluations.adaptive.bpda: attack 'fgsm' takes gradients through the "
                            "non-differentiable defense 'squeeze'"),
    ({'members = ["mlp", "mlp_b"]\n': ''}, "models.committee.members: defense 'committee' aggregates"),
    ({'defenses = ["committee"]': 'defenses = ["committee", "lowpass"]'}, "models.committee.defenses[0]: "
                                                                         "'committee' aggregates members"),
    ({'undefended = "mlp"\n': ''}, "evaluations.transfer.sources[4]: 'committee' has no undefended model"),
    ({'[defenses.dae]\nplugin = "dae"\nparams = { widths = [128] }\ndataset = "mnist"':
      '[defenses.dae]\nplugin = "dae"\nparams = { widths = [128] }'}, "defenses.dae.dataset: required"),
    ({'plugin = "lowpass"\nparams = { size = 3, variance = 7.0 }\n':
      'plugin = "lowpass"\nparams = { size = 3, variance = 7.0 }\ndataset = "mnist"\n'},
     "defenses.lowpass.dataset: defense 'lowpass' is not trained"),
    ({'base = "mlp"\ndefenses = ["lowpass"]': 'base = "mlp"\nplugin = "mlp"\ndefenses = ["lowpass"]'},
     "models.mlp_lowpass.plugin: a defended model is assembled from trained parts"),
    ({'seed = 11\n': 'seed = 11\ninit = "mlp_lowpass"\n'}, "models.mlp_b.init: 'mlp_lowpass' must be a model of "
                                                          "the same plugin"),
    # a defense inside a part went unseen by BPDA, EOT and transfer (an audit: a committee with a bit-depth member
    # was attacked without BPDA, the member's zero gradients passing the masking check beside the other's)
    ({'members = ["mlp", "mlp_b"]': 'members = ["mlp_squeezed", "mlp_b"]'}, "models.committee.members[0]: "
     "'mlp_squeezed' has defenses of its own, which BPDA, EOT and transfer attacks would not see"),
    ({'base = "mlp_b"\ndefenses = ["dae", "lowpass"]': 'base = "mlp_squeezed"\ndefenses = ["dae", "lowpass"]'},
     "models.mlp_b_dae.base: 'mlp_squeezed' has defenses of its own, which BPDA, EOT and transfer attacks would not "
     "see (they follow this model's own chain): list all the defenses in this model's 'defenses', in order, on an "
     "undefended base"),
    ({'[attacks.fgsm]': '[models.ens]\nplugin = "ensemble"\nmembers = ["mlp", "mlp_squeezed"]\ndataset = "mnist"\n'
      'trainer = { plugin = "none" }\n\n[attacks.fgsm]'}, "models.ens.members[1]: 'mlp_squeezed' has defenses of "
     "its own"),  # a composed model's members too: the ensemble is no defended model, so nothing saw the squeeze
    ({'params = { widths = [128] }': 'params = { widths = [128], input_shape = [1, 16, 16] }'},
     "defenses.dae.params.input_shape: [1, 16, 16], but dataset 'mnist' has inputs of shape [1, 28, 28]"),  # it
    # failed inside the training job
    ({'params = { widths = [32] }\ndataset = "mnist"\nn_train = 2000\nseed = 11':
      'params = { widths = [32], input_shape = [1, 16, 16] }\ndataset = "mnist"\nn_train = 2000\nseed = 11'},
     "models.mlp_b.params.input_shape: [1, 16, 16], but dataset 'mnist' has inputs of shape [1, 28, 28]"),
])
def test_bad_defense_suites_are_one_line(write_suite, change, fragment):
    with pytest.raises(SuiteError) as info:
        load_suite(_suite(write_suite, **change))
    message = str(info.value)
    assert fragment in message and "\n" not in message, message


def test_cli_refuses_a_gradient_attack_through_a_non_differentiable_defense(write_suite, tmp_path):
    path = _suite(write_suite, **{"bpda = true\n": ""})
    out = rbench("run", str(path), "--store", str(tmp_path / "store"), "-q")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "set bpda = true" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "store").glob("objects/*/*"))


def test_eot_on_deterministic_defenses_is_a_warning(write_suite):
    text = BASE.replace('sources = ["mlp", "mlp_lowpass", "mlp_noisy", "mlp_squeezed", "mlp_dae", "mlp_b_dae", '
                        '"committee"]', 'sources = ["mlp_lowpass"]')
    suite = load_suite(_suite(write_suite, text))
    assert any("evaluations.adaptive.eot: 4 draws, but no source has a randomized defense" in w
               for w in suite.warning_lines())
    kept = select_tables(suite, ["transfer"], "s.toml").warning_lines()  # --only a table of another evaluation
    assert kept and not [w for w in kept if "evaluations.adaptive" in w]  # only transfer's (mlp_noisy ... are
    # attacked only by transfer there)
    assert select_tables(suite, ["adaptive"], "s.toml").warning_lines() == suite.warnings["adaptive"]
    out = rbench("validate", str(_suite(write_suite, text)))
    assert out.returncode == 0 and "warning:" in out.stdout and "no source has a randomized" in out.stdout
    assert not load_suite(_suite(write_suite)).warnings  # mlp_noisy is randomized: EOT applies to it alone
    plan = build_plan(load_suite(_suite(write_suite)))
    views = [plan.jobs[plan.attacked[("adaptive", source, "fgsm")]].spec.view for source in ("mlp_noisy",
                                                                                           "mlp_lowpass")]
    assert views[0].eot == 4 and views[1] is None  # mlp_lowpass: deterministic and differentiable, the plain attack


def test_keys_follow_every_defense_and_trained_parts_are_trained_once(write_suite):
    plan = build_plan(load_suite(_suite(write_suite)))
    labels = [job.label for job in plan.jobs.values()]
    assert labels.count("train defense dae") == 1  # listed by two defended models, trained once
    assert labels.count("train mlp") == 1 and labels.count("train mlp_b") == 1
    key = plan.trained["mlp_lowpass"]
    for change in ({"variance = 7.0 }\n\n[defenses.noisy": "variance = 6.0 }\n\n[defenses.noisy"},
                   {"epochs = 1, batch_size = 32, lr = 3e-3 } }\n\n[models.mlp_b]":
                    "epochs = 1, batch_size = 32, lr = 2e-3 } }\n\n[models.mlp_b]"}):
        other = build_plan(load_suite(_suite(write_suite, **change)))
        assert other.trained["mlp_lowpass"] != key
    dae_changed = build_plan(load_suite(_suite(write_suite, **{"epochs = 5, batch_size = 64": "epochs = 6, "
                                                                                              "batch_size = 64"})))
    assert dae_changed.trained["mlp_dae"] != plan.trained["mlp_dae"]  # the component's training changed
    assert dae_changed.trained["mlp_lowpass"] == key
    transfer = plan.attacked[("transfer", "mlp_lowpass", "fgsm")]
    assert transfer == plan.attacked[("adaptive", "mlp", "fgsm")]  # transferred: crafted once, on the base


def test_bpda_is_not_in_the_key_of_an_attack_taking_no_gradients(write_suite):
    """BPDA changes the backward pass only: a gradient-free attack (noise) through a rounding defense is the same
    job with or without it (it was keyed, seeded and labelled anew, and gave other numbers from the seed alone);
    EOT stays in its key (its queries see the average over draws)."""
    from rbench.plan import build_plan

    plan = build_plan(load_suite(_suite(write_suite)))
    job = {label: plan.jobs[plan.attacked[("adaptive", source, label)]] for label in ("fgsm", "noise")
           for source in ("mlp_squeezed",)}
    assert job["fgsm"].spec.view.bpda and "through BPDA" in job["fgsm"].label
    assert job["noise"].spec.view is None and "BPDA" not in job["noise"].label
    noisy = plan.jobs[plan.attacked[("adaptive", "mlp_noisy", "noise")]]
    assert (noisy.spec.view.bpda, noisy.spec.view.eot) == (False, 4)
    plain = build_plan(load_suite(_suite(write_suite, **{'attacks = ["fgsm", "noise"]\nbpda = true':
                                                         'attacks = ["noise"]\nbpda = false'})))
    assert plain.attacked[("adaptive", "mlp_squeezed", "noise")] == job["noise"].key
    # nor on a source whose defenses are all differentiable: there BPDA changes nothing (it was keyed and labelled
    # "through BPDA" anew, a needless recompute whose record said BPDA was used)
    smooth = plan.jobs[plan.attacked[("adaptive", "mlp_lowpass", "fgsm")]]
    assert smooth.spec.view is None and "BPDA" not in smooth.label
    without = build_plan(load_suite(_suite(write_suite, **{"bpda = true\n": "", '"mlp_squeezed", ': ""})))
    assert without.attacked[("adaptive", "mlp_lowpass", "fgsm")] == smooth.key


def test_the_title_names_bpda_and_eot_only_where_they_apply(write_suite):
    """BPDA changes only sources with a non-differentiable defense, EOT only those with a randomized one: the
    title says where; with no randomized source EOT is not used (a warning) and the title does not claim it."""
    from rbench.suite import threat_note

    suite = load_suite(_suite(write_suite))
    assert threat_note(suite, "adaptive") == ("adaptive: adaptive white-box attacks through the defenses (BPDA on "
                                              "mlp_squeezed; EOT over 4 draws on mlp_noisy; each cell one random "
                                              "draw per image on mlp_noisy)")
    lone = load_suite(_suite(write_suite, **{'sources = ["mlp", "mlp_lowpass", "mlp_noisy", "mlp_squeezed", '
                                             '"mlp_dae", "mlp_b_dae", "committee"]': 'sources = ["mlp_lowpass"]'}))
    assert lone.warnings and threat_note(lone, "adaptive") == ("adaptive: adaptive white-box attacks through the "
                                                               "defenses")
    single = load_suite(_suite(write_suite, **{"eot = 4\n": ""}))  # a randomized source, one draw per step
    assert threat_note(single, "adaptive") == ("adaptive: adaptive white-box attacks through the defenses (BPDA on "
                                               "mlp_squeezed; no EOT: one random draw per step on mlp_noisy; each "
                                               "cell one random draw per image on mlp_noisy)")
    free = load_suite(_suite(write_suite, **{'attacks = ["fgsm", "noise"]\nbpda = true': 'attacks = ["noise"]\n'
                                             'bpda = true'}))  # BPDA is for gradients: none taken, none claimed
    assert threat_note(free, "adaptive") == ("adaptive: adaptive white-box attacks through the defenses (EOT over 4 "
                                             "draws on mlp_noisy; each cell one random draw per image on "
                                             "mlp_noisy)")
    moot = load_suite(_suite(write_suite, **{'attacks = ["fgsm", "noise"]\nbpda = true\neot = 4':
                                             'attacks = ["fgsm", "noise"]\nbpda = true\neot = 4\nthreat_model = '
                                             '"transfer"\n[evaluations.adaptive2]\ndataset = "mnist"\nn = 64\n'
                                             'sources = ["mlp_noisy"]\nattacks = ["fgsm"]\nthreat_model = '
                                             '"transfer"\neot = 2'}))  # ignored silently
    assert [w.split(": ", 1)[1] for w in moot.warning_lines() if "transfer" in w and "only by transfer" not in w] == [
        'evaluations.adaptive: eot and bpda set, but threat_model = "transfer" crafts the attacks on the undefended '
        "models, through no defense: not used", 'evaluations.adaptive2: eot set, but threat_model = "transfer" '
        "crafts the attacks on the undefended models, through no defense: not used"]


def test_a_gradient_attack_on_a_randomized_defense_without_eot_is_a_warning(write_suite):
    """One random draw per gradient step understates an attack on a randomized defense (Athalye et al. 2018: EOT
    took such defenses from robust to broken; the audit measured 40.5% vs 18.0% for FGSM through Gaussian noise):
    eot = 1 there is a warning naming the sources; with EOT, or with gradient-free attacks only, none."""
    from rbench.suite import threat_note

    warned = load_suite(_suite(write_suite, **{"eot = 4\n": ""}))
    lines = [w for w in warned.warning_lines() if "eot: 1 draw" in w]
    assert len(lines) == 1 and "mlp_noisy has a randomized defense" in lines[0] and "set eot" in lines[0]
    assert not [w for w in load_suite(_suite(write_suite)).warning_lines() if "eot" in w]
    free = load_suite(_suite(write_suite, **{"eot = 4\n": "", 'attacks = ["fgsm", "noise"]\nbpda = true':
                                             'attacks = ["noise"]'}))
    assert not [w for w in free.warning_lines() if "eot" in w] and "no EOT" not in threat_note(free, "adaptive")
    out = rbench("validate", str(_suite(write_suite, **{"eot = 4\n": ""})))
    assert out.returncode == 0 and "eot: 1 draw, but mlp_noisy has a randomized defense" in out.stdout


@pytest.fixture(scope="module")
def defended_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("defended")
    path = root / "suite.toml"
    path.write_text(textwrap.dedent(BASE))

    def run(name: str, **kw):
        return run_suite(path, profile=None, store=Store(root / "store"), run_dir=root / name, device="cpu",
                         workers=kw.get("workers"), executor="local", console=Console(quiet=True), quiet=True)

    return run("run1"), run


@pytest.mark.slow
def test_defended_models_run_under_both_threat_models(defended_run):
    outcome, _ = defended_run
    assert not outcome.failed, [r.error for r in outcome.failed]
    tables = {t.name: t for t in outcome.results.tables}
    adaptive, transfer = tables["adaptive"], tables["transfer"]
    assert ("adaptive white-box attacks through the defenses (BPDA on mlp_squeezed; EOT over 4 draws on "
            "mlp_noisy; each cell one random draw per image on mlp_noisy)") in adaptive.title
    assert ("attacks transferred from the undefended models (each cell one random draw per image on mlp_noisy)"
            in transfer.title)
    for model in ("mlp_lowpass", "mlp_noisy", "mlp_squeezed", "mlp_dae", "committee"):
        clean, fgsm = adaptive.cell(model, "clean").value, adaptive.cell(model, "fgsm").value
        assert clean < 60 and fgsm > clean, (model, clean, fgsm)  # working classifiers the attack hurts
        assert transfer.cell(model, "clean").value == clean  # the same defended model, evaluated the same way
    # a transferred set's success flags are the undefended mlp's: never shown under a defended model's row
    for name in ("transfer_success", "transfer_distortion"):  # over the successful samples: the same flags
        for model in ("mlp_lowpass", "committee"):
            cell = tables[name].cell(model, "fgsm")
            assert cell.value is None and "the set was crafted on 'mlp' (threat_model = \"transfer\")" in cell.error
    # transferred from the undefended mlp: the mlp's own white-box error is an upper bound it rarely beats
    assert transfer.cell("mlp_squeezed", "fgsm").value <= adaptive.cell("mlp", "fgsm").value + 10
    # how each model is made, defense parameters included (they were in suite.resolved.toml alone), once per run
    made = adaptive.model_calls
    assert made["mlp_b_dae"]["base"] == "mlp_b" and [d["plugin"] for d in made["mlp_b_dae"]["defenses"]] == [
        "dae", "lowpass"] and made["mlp_b_dae"]["defenses"][0]["trainer"]["plugin"] == "denoising"
    assert made["committee"]["members"] == ["mlp", "mlp_b"] and made["mlp_b"]["data"]["n"] == 2000
    md = (outcome.run_dir / "tables.md").read_text()
    models = md[md.index("## Models"):]
    assert "- mlp_squeezed: squeeze = bit_depth(bits=1" in models and ") -> mlp\n" in models
    assert "- committee: committee = committee(combine=\"mean_softmax\") -> mlp + mlp_b" in models, models
    assert "epochs=5, iterations=null) on mnist train, n = 2000) -> mlp\n" in models  # the dae's own training
    assert models.count("- mlp: mlp(") == 1 and "trained by standard(" in models
    assert "lr_schedule=\"constant\", epochs=1) on mnist train, n = 2000, seed 11\n" in models  # mlp_b's own seed
    assert "Models (8)" in (outcome.run_dir / "report.html").read_text()


@pytest.mark.slow
def test_randomized_defenses_are_deterministic_given_the_job(defended_run):
    first, run = defended_run
    again = run("run2")
    assert {r.status for r in again.job_results.values()} == {"cached"}  # every entry passed its gates again
    values = {(t.name, c.row, c.column): c.value for t in first.results.tables for c in t.cells}
    assert {(t.name, c.row, c.column): c.value for t in again.results.tables for c in t.cells} == values


def test_the_models_section_tells_apart_models_trained_on_other_parts_or_seeds():
    """Szegedy's M1 and M2 differ only in the half of the training split they learn from, Nguyen's two LeNets in
    their seed: their lines printed the same (the cross-model table is about exactly that difference)."""
    from rbench.assemble import _declared, _model_calls
    from rbench.report.reporters import describe_models
    from rbench.runner import suite_plan
    from rbench.suite import load_suite

    lines = {}
    for path in ("suites/szegedy2013.toml", "suites/nguyen2015.toml"):
        suite = load_suite(Path(__file__).resolve().parent.parent / path, "quick")
        plan = suite_plan(suite, None)
        for table in suite.tables.values():
            lines.update(line.split(": ", 1) for line in describe_models(_model_calls(plan, table, _declared(table))))
    assert lines["M1"] != lines["M2"] and lines["M1"].endswith("on mnist train, part 0 of [5000, 5000]")
    assert lines["M2"].endswith("part 1 of [5000, 5000]") and lines["lenet_seed1"].endswith(", seed 1")


def test_a_model_scored_on_test_images_a_part_of_it_was_trained_on_is_a_warning(write_suite):
    """The defense audit trained the DAE (and, apart, a committee member) on the test split the evaluations score
    them on: validation said ok. Each scored model whose trained parts were fitted to the scored images is named
    with the part; disjoint parts of the split, the training split (a training error, on purpose) and other
    datasets are not warned of."""
    def leaks(text: str) -> list[str]:
        return [w.split(": ", 1)[1] for w in load_suite(_suite(write_suite, text)).warning_lines() if "fitted" in w]

    assert leaks(BASE) == []
    dae_on_test = BASE.replace('params = { widths = [128] }\ndataset = "mnist"\n',
                               'params = { widths = [128] }\ndataset = "mnist"\nsplit = "test"\n')
    fitted = ("which its defense 'dae' was trained on: its figures are on images it was fitted to (train on split "
              "= \"train\", or cut the split into disjoint `parts`)")
    assert leaks(dae_on_test) == [f"evaluations.{ev}: scores {model!r} on mnist's test split, {fitted}"
                                  for ev, model in (("adaptive", "mlp_dae"), ("adaptive", "mlp_b_dae"),
                                                    ("transfer", "mlp_dae"))]
    def named(lines: list[str]) -> list[tuple[str, str, str]]:  # (evaluation, model, its part trained there)
        return [(w.split(":")[0].split(".")[1], w.split("'")[1], w.split(", which ")[1].split(" was")[0])
                for w in lines]

    member_on_test = BASE.replace('n_train = 2000\nseed = 11\n', 'n_train = 2000\nseed = 11\nsplit = "test"\n')
    assert named(leaks(member_on_test)) == [("adaptive", "mlp_b_dae", "model 'mlp_b'"),
                                            ("adaptive", "committee", "model 'mlp_b'"),
                                            ("transfer", "committee", "model 'mlp_b'")]
    exposed = BASE.replace('seed = 11\ntrainer = { params = { epochs = 1, batch_size = 32, lr = 3e-3 } }',
                           'seed = 11\ntrainer = { plugin = "outlier_exposure", params = { epochs = 1, '
                           'outliers = "mnist", outlier_split = "test" } }')  # outliers its trainer loads itself
    assert named(leaks(exposed)) == [("adaptive", "mlp_b_dae", "model 'mlp_b'"),
                                     ("adaptive", "committee", "model 'mlp_b'"),
                                     ("transfer", "committee", "model 'mlp_b'")]
    disjoint = BASE.replace('n_train = 2000\nseed = 11\n', 'n_train = 2000\nseed = 11\nsplit = "test"\n'
                            'parts = [9000, 1000]\n').replace('[evaluations.adaptive]\ndataset = "mnist"\n',
                                                              '[evaluations.adaptive]\ndataset = "mnist"\n'
                                                              'parts = [9000, 1000]\npart = 1\n')
    assert [w.split(":")[0] for w in leaks(disjoint)] == ["evaluations.transfer"]  # adaptive: the other part
    on_train = dae_on_test.replace('[evaluations.adaptive]\ndataset = "mnist"\n',
                                   '[evaluations.adaptive]\ndataset = "mnist"\nsplit = "train"\n')
    assert [w.split(":")[0] for w in leaks(on_train)] == ["evaluations.transfer"]


def test_a_defended_model_attacked_only_by_transfer_is_a_warning(write_suite):
    """The defense audit: a suite that evaluates its defended models by transfer alone passed silently, though a
    DAE measured 72.5% accurate under transferred PGD and 24.0% under adaptive PGD."""
    def coverage(suite) -> list[str]:
        return [w.split(": ", 1)[1] for w in suite.warning_lines() if "attacked only by transfer" in w]

    from rbench.suite import threat_note

    assert coverage(load_suite(_suite(write_suite))) == []  # every defended source is in the adaptive evaluation
    only = load_suite(_suite(write_suite, **{
        'sources = ["mlp", "mlp_lowpass", "mlp_noisy", "mlp_squeezed", "mlp_dae", "mlp_b_dae", "committee"]':
        'sources = ["mlp", "mlp_lowpass"]'}))
    assert coverage(only) == [
        "evaluations.transfer: 'mlp_noisy', 'mlp_squeezed', 'mlp_dae', 'committee' are attacked only by transfer "
        "(attacks made on other models), by no adaptive evaluation through the defenses: a weaker test, no robustness "
        'claim (add an evaluation with threat_model = "adaptive" and it as a source)']
    targeted = load_suite(_suite(write_suite, **{  # defended models as targets of an adaptive evaluation only
        'sources = ["mlp", "mlp_lowpass", "mlp_noisy", "mlp_squeezed", "mlp_dae", "mlp_b_dae", "committee"]':
        'sources = ["mlp"]\ntargets = ["mlp", "mlp_noisy", "mlp_dae"]',
        'sources = ["mlp_lowpass", "mlp_noisy", "mlp_squeezed", "mlp_dae", "committee"]': 'sources = ["mlp_lowpass"]'}))
    assert [w.split(":")[0] + ":" + w.split(":")[1] for w in coverage(targeted)] == [
        "evaluations.adaptive: 'mlp_noisy', 'mlp_dae' are attacked only by transfer (attacks made on other models), by "
        "no adaptive evaluation through the defenses", "evaluations.transfer: 'mlp_lowpass' is attacked only by "
        "transfer (attacks made on other models), by no adaptive evaluation through the defenses"]
    assert threat_note(targeted, "adaptive") == ("adaptive: attacks made on the sources, transferred to the defended "
                                                 "targets mlp_noisy, mlp_dae (each cell one random draw per image on "
                                                 "mlp_noisy)")
    assert any(".bpda: true, but no source has a non-differentiable defense" in w
               for w in targeted.warning_lines())
