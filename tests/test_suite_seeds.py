"""A model's ``seeds``: one model per seed, named ``<name>@<seed>``, for which its name stands in model lists."""

from __future__ import annotations

import pytest

from rbench.errors import SuiteError
from rbench.runner import suite_plan
from rbench.suite import load_suite

SUITE = """
[suite]
name = "seeds"

[datasets.mnist]
plugin = "mnist"

[models.mlp]
plugin = "mlp"
params = { widths = [8] }
dataset = "mnist"
n_train = 100
seeds = [3, 1]
trainer = { params = { epochs = 1 } }

[models.other]
plugin = "mlp"
params = { widths = [4] }
dataset = "mnist"
n_train = 100
trainer = { params = { epochs = 1 } }

[models.ens]
plugin = "ensemble"
members = ["mlp", "other"]
dataset = "mnist"
trainer = { plugin = "none" }

[attacks.fgsm]
plugin = "fgsm"
params = { eps = 0.1 }

[evaluations.ev]
dataset = "mnist"
n = 10
sources = ["other", "mlp"]
targets = ["mlp", "ens"]
attacks = ["fgsm"]

[tables.t]
evaluation = "ev"
rows = "source"
columns = "target"
where = { attack = "fgsm" }
metric = "error"
"""

WRITTEN_OUT = SUITE.replace('seeds = [3, 1]', 'seed = 3').replace('[models.other]', '''[models.mlp_one]
plugin = "mlp"
params = { widths = [8] }
dataset = "mnist"
n_train = 100
seed = 1
trainer = { params = { epochs = 1 } }

[models.other]''').replace('"mlp", "other"]', '"mlp", "mlp_one", "other"]').replace(
    'sources = ["other", "mlp"]', 'sources = ["other", "mlp", "mlp_one"]').replace(
    'targets = ["mlp", "ens"]', 'targets = ["mlp", "mlp_one", "ens"]')


def _suite(tmp_path, text: str, name: str = "s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_suite(path, None)


def test_a_model_with_seeds_is_one_model_per_seed_with_the_keys_of_models_written_out(tmp_path):
    suite = _suite(tmp_path, SUITE)
    assert [m for m in suite.models if m.startswith("mlp")] == ["mlp@3", "mlp@1"]
    assert suite.evaluations["ev"].sources == ("other", "mlp@3", "mlp@1")
    assert suite.evaluations["ev"].targets == ("mlp@3", "mlp@1", "ens")
    assert suite.tables["t"].rows == ("other", "mlp@3", "mlp@1")
    written = _suite(tmp_path, WRITTEN_OUT, "written.toml")
    assert set(suite_plan(suite, None).jobs) == set(suite_plan(written, None).jobs)  # nothing computed twice


@pytest.mark.parametrize("old, new, message", [
    ("seeds = [3, 1]", "seeds = [3, 1]\nseed = 2", r"models\.mlp\.seed: give 'seed' or 'seeds', not both"),
    ("seeds = [3, 1]", "seeds = [3, 3]", r"models\.mlp\.seeds: 3 is listed twice"),
    ("seeds = [3, 1]", "seeds = [3]", r"models\.mlp\.seeds: .*at least 2"),
    ('members = ["mlp", "other"]', 'members = ["mlp", "other"]\nseeds = [0, 1]',
     r"models\.ens\.seeds: a model with 'members' is not trained from a seed of its own"),
    ("[models.other]", '[models."mlp@7"]\nplugin = "mlp"\ndataset = "mnist"\n\n[models.other]',
     r"models\.mlp\.seeds: model 'mlp@7' is named as its replicas are \(NAME@SEED\): rename it"),
    ("n_train = 100\nseeds", "n_train = 70000\nseeds",
     r"models\.mlp\.n_train: 70000 exceeds the 60000 images of mnist/train \(seed 3: model 'mlp@3'\)"),
    ('members = ["mlp", "other"]\ndataset = "mnist"\ntrainer = { plugin = "none" }',
     'members = ["other"]\ndataset = "mnist"\ntrainer = { plugin = "none" }\n\n[models.scaled]\n'
     'plugin = "temperature_scaled"\nmembers = ["mlp"]\ndataset = "mnist"',
     r"models\.scaled\.members: model plugin 'temperature_scaled' takes exactly 1 member, not 2 \('mlp' stands for "
     "a model per seed\\)"),
    ('members = ["mlp", "other"]\ndataset = "mnist"\ntrainer = { plugin = "none" }',
     'members = ["other"]\ndataset = "mnist"\ntrainer = { plugin = "none" }\n\n[models.tuned]\nplugin = "mlp"\n'
     'params = { widths = [8] }\ndataset = "mnist"\ninit = "mlp"',
     r"models\.tuned\.init: 'mlp' is trained once per seed: name one of its models \(mlp@3, mlp@1\)"),
    ('rows = "source"', 'rows = [{ label = "m", source = "mlp" }]',
     r"tables\.t\.rows\[0\]\.source: 'mlp' is trained once per seed"),
    ('where = { attack = "fgsm" }', 'where = { attack = "fgsm", model = "mlp" }',
     r"tables\.t\.where\.model: 'mlp' is trained once per seed"),
])
def test_what_cannot_stand_for_several_models_is_refused_naming_the_key(tmp_path, old, new, message):
    text = SUITE.replace(old, new)
    assert text != SUITE
    with pytest.raises(SuiteError, match=message):
        _suite(tmp_path, text)
