"""Composed models: an ensemble of trained members, each member trained once and reused."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console

from rbench.errors import SuiteError
from rbench.plan import build_plan
from rbench.runner import run_suite
from rbench.store import Store
from rbench.suite import load_suite

pytestmark = pytest.mark.slow

SUITE = """
[suite]
name = "ens"
[datasets.mnist]
plugin = "mnist"
[models.a]
plugin = "an2020_cnn"
params = { kernel_size = 7, layers = 2 }
dataset = "mnist"
n_train = 1000
trainer = { params = { epochs = 1, batch_size = 50 } }
[models.b]
plugin = "lenet"
params = { channels = [8, 16], kernel_size = 3, hidden = 50 }
dataset = "mnist"
n_train = 1000
trainer = { params = { epochs = 1, batch_size = 50 } }
[models.ab]
plugin = "ensemble"
members = ["a", "b"]
dataset = "mnist"
trainer = { plugin = "none" }
[models.ab_logits]
plugin = "ensemble"
params = { combine = "mean_logits" }
members = ["a", "b"]
dataset = "mnist"
trainer = { plugin = "none" }
[attacks.fgsm]
plugin = "fgsm"
params = { eps = 0.1 }
[evaluations.ev]
dataset = "mnist"
n = 50
sources = ["a", "b", "ab", "ab_logits"]
attacks = ["fgsm"]
[tables.t]
evaluation = "ev"
rows = "model"
columns = "attack"
metric = "accuracy"
"""


def test_ensemble_is_composed_of_members_trained_once(write_suite, tmp_path):
    path = write_suite(SUITE)
    plan = build_plan(load_suite(path))
    trains = [j for j in plan.jobs.values() if j.kind == "train"]
    assert len(trains) == 4 and plan.jobs[plan.trained["ab"]].deps == (plan.trained["a"], plan.trained["b"])
    outcome = run_suite(path, profile=None, store=Store(tmp_path / "store"), run_dir=tmp_path / "run",
                        device="cpu", workers=None, executor="local", console=Console(quiet=True), quiet=True)
    assert not outcome.failed, outcome.failed
    from rbench.inputs import load_model

    store = Store(tmp_path / "store")
    ens = load_model(store, plan.trained["ab"], torch.device("cpu"))
    a = load_model(store, plan.trained["a"], torch.device("cpu"))
    b = load_model(store, plan.trained["b"], torch.device("cpu"))
    x = torch.rand(4, 1, 28, 28)
    mean = (torch.softmax(a(x), 1) + torch.softmax(b(x), 1)) / 2
    assert torch.allclose(torch.softmax(ens(x), 1), mean, atol=1e-5)  # the members' trained weights, averaged
    table = outcome.results.tables[0]
    assert all(c.value is not None for c in table.cells)


def test_member_errors(write_suite):
    bad = SUITE.replace('members = ["a", "b"]\ndataset = "mnist"\ntrainer = { plugin = "none" }\n[models.ab_logits]',
                        'members = ["a", "c"]\ndataset = "mnist"\ntrainer = { plugin = "none" }\n[models.ab_logits]')
    with pytest.raises(SuiteError, match=r"models.ab.members\[1\]: no model named 'c'"):
        load_suite(write_suite(bad, "bad.toml"))
    no_members = SUITE.replace('members = ["a", "b"]\ndataset = "mnist"\ntrainer = { plugin = "none" }'
                               '\n[models.ab_logits]', 'dataset = "mnist"\n[models.ab_logits]')
    with pytest.raises(SuiteError, match="models.ab.members: model plugin 'ensemble' is composed of trained"):
        load_suite(write_suite(no_members, "c.toml"))
    with pytest.raises(SuiteError, match="models.a.members: model plugin 'an2020_cnn' takes no members"):
        load_suite(write_suite(SUITE.replace('params = { kernel_size = 7, layers = 2 }',
                                             'params = { kernel_size = 7, layers = 2 }\nmembers = ["b"]'), "d.toml"))
    cyc = SUITE + '[models.x]\nplugin = "ensemble"\nmembers = ["y"]\ndataset = "mnist"\n' \
                  '[models.y]\nplugin = "ensemble"\nmembers = ["x"]\ndataset = "mnist"\n'
    with pytest.raises(SuiteError, match="composition cycle"):
        load_suite(write_suite(cyc, "e.toml"))
