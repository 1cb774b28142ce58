"""Built-in models and the standard trainer."""

from __future__ import annotations

import pydantic
import pytest
import torch
from pydantic import ValidationError

from rbench.model import TrainData, param_groups
from rbench.plugins import get_plugin


def _build(name: str, **params):
    plugin = get_plugin("model", name)
    return plugin.build(plugin.Params(**params))


def test_mlp_shapes_activation_and_per_layer_weight_decay():
    net = _build("mlp", widths=[100, 100], activation="sigmoid", weight_decay=[1e-4, 1e-3, 1e-2], dropout=0.1)
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert any(isinstance(m, torch.nn.Sigmoid) for m in net.modules())
    groups = param_groups(net)
    assert [g["weight_decay"] for g in groups] == [1e-4, 1e-3, 1e-2, 0.0]  # biases are not decayed
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in net.parameters())


def test_mlp_without_hidden_layers_is_a_softmax_regression():
    net = _build("mlp", widths=[])
    assert [type(m).__name__ for m in net.net] == ["Flatten", "Linear"]


def test_lenet_shapes_and_per_layer_dropout():
    net = _build("lenet", channels=[6, 16], dropout=[0.1, 0.2, 0.5])
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] == [0.1, 0.2, 0.5]


@pytest.mark.parametrize(("name", "params"), [("mlp", {"weight_decay": [0.1]}), ("mlp", {"dropout": 1.0}),
                                               ("lenet", {"dropout": [0.1]}), ("lenet", {"channels": [4] * 4})])
def test_inconsistent_params_are_rejected(name, params):
    with pytest.raises(ValidationError):
        get_plugin("model", name).Params(**params)


def test_standard_trainer_lowers_the_loss_and_is_seeded():
    trainer = get_plugin("trainer", "standard")
    x = torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    flat = x.flatten(1)
    y = (flat[:, :392].mean(1) > flat[:, 392:].mean(1)).long()  # linearly separable

    def fit(seed: int):
        torch.manual_seed(seed)
        net = _build("mlp", widths=[16])
        before = torch.nn.functional.cross_entropy(net(x), y).item()
        stats = trainer.train(net, TrainData(x, y), trainer.Params(epochs=5, batch_size=32, lr=1e-2),
                              device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed))
        return net, stats, before

    net_a, stats, before = fit(1)
    net_b, _, _ = fit(1)
    assert all(torch.equal(a, b) for a, b in zip(net_a.state_dict().values(), net_b.state_dict().values(),
                                                 strict=True))
    assert stats["steps"] == 5 * 8 and stats["final_epoch_loss"] < 0.8 * before


def test_mlss_model_sizes_match_the_report():
    """The MLSS report's small CNN has 21.8K parameters, its 3-CNN ensemble (An et al. 2020) 4546.3K."""
    small = _build("lenet", channels=[8, 16], kernel_size=3, hidden=50, dropout=[0.25, 0.25, 0.5])
    assert sum(p.numel() for p in small.parameters()) == 21808
    members = [_build("an2020_cnn", kernel_size=k) for k in (3, 5, 7)]
    total = sum(p.numel() for m in members for p in m.parameters())
    assert abs(total - 4_546_300) / 4_546_300 < 0.001  # 4,544,332
    shallow = _build("an2020_cnn", kernel_size=5, layers=3, activation="gelu")
    assert shallow(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValidationError):
        get_plugin("model", "an2020_cnn").Params(kernel_size=7, layers=5)


class _Plugin:
    """A third-party model plugin whose network is ``net`` (no validation of its own)."""

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")

    def __init__(self, name: str, net):
        self.name, self.net = name, net

    def build(self, params):
        return self.net()


@pytest.mark.parametrize(("name", "net", "problem"), [
    ("seven_outputs", lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 7)),
     "its output on 8 inputs is shape (8, 7), not logits of shape (N, 10)"),
    ("softmaxed", lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10), torch.nn.Softmax(1)),
     "its outputs look like probabilities"),
    ("nan_logits", lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10),
                                               _Lambda(lambda t: t * float("nan"))),
     "returned non-finite logits on 8 of 8 training images"),
])
def test_a_model_plugin_that_is_no_classifier_fails_its_training_job_named(write_suite, monkeypatch, tmp_path, name,
                                                                           net, problem):
    """Seven outputs failed inside the trainer's loss ("IndexError: Target 7 is out of bounds", blamed on the
    trainer), NaN logits as the trainer's non-finite loss, and softmax outputs were trained and tabulated: the
    training job now checks the fresh model's outputs first and names the model plugin."""
    from rbench.errors import PluginContractError
    from rbench.jobs import run_train
    from rbench.manager import PluginInfo, get_registry
    from rbench.model import no_progress
    from rbench.plan import build_plan
    from rbench.store import Store
    from rbench.suite import load_suite

    monkeypatch.setitem(get_registry().plugins["model"], name,
                        PluginInfo("model", name, "0", "tests", "tests", _Plugin(name, net)))
    suite = load_suite(write_suite(f"""
        [suite]
        name = "odd"
        [datasets.mnist]
        plugin = "mnist"
        [models.net]
        plugin = "{name}"
        dataset = "mnist"
        n_train = 64
        [evaluations.ev]
        dataset = "mnist"
        n = 8
        sources = ["net"]
        [tables.t]
        evaluation = "ev"
        rows = "model"
        columns = "attack"
        metric = "error"
    """))
    job = next(j for j in build_plan(suite).jobs.values() if j.kind == "train")
    with pytest.raises(PluginContractError, match=rf"^model '{name}' ") as info:
        run_train(job, Store(tmp_path / "store"), torch.device("cpu"), no_progress)
    assert problem in str(info.value) and info.value.plugin == f"model '{name}'"


class _Lambda(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)
