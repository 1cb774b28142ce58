"""What a trainer may do to a model, and what it trains (an audit of the trainers found a model half-trained by
every trainer and two trainer bugs that stored numbers of another network)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rbench.contract import check_reloadable
from rbench.errors import PluginContractError
from rbench.model import TrainData, param_groups
from rbench.plugins import get_plugin


def _mnist_like(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def test_every_trainer_trains_every_parameter_a_models_own_groups_leave_out():
    """``ae_softmax`` groups its softmax layer alone (its own weight decay there): ``standard`` (and every trainer
    built on it) trained that layer and left the encoder at its random start (17.8% test accuracy against 74.0%
    for an mlp of the same shape). The parameters a model's groups leave out are trained with the trainer's
    decay; those it groups keep the model's."""
    plugin = get_plugin("model", "ae_softmax")
    torch.manual_seed(0)
    model = plugin.build(plugin.Params(hidden=32))
    groups = param_groups(model, 0.25)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    assert [g["weight_decay"] for g in groups] == [1e-6, 0.0, 0.25]  # the model's two groups, then the rest
    encoder = model.encoder[1].weight.detach().clone()
    trainer = get_plugin("trainer", "standard")
    x, y = _mnist_like()
    trainer.train(model, TrainData(x, y), trainer.Params(epochs=1, batch_size=64),
                  generator=torch.Generator().manual_seed(1), device=torch.device("cpu"))
    assert not torch.equal(model.encoder[1].weight, encoder)


def test_groups_given_as_one_tensor_or_a_generator_are_read_once():
    class Grouped(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)

        def param_groups(self):
            return [{"params": self.a.weight}, {"params": (p for p in self.b.parameters()), "weight_decay": 0.1}]

    model = Grouped()
    groups = param_groups(model, 0.5)
    assert [len(g["params"]) for g in groups] == [1, 2, 3]  # a.weight; b's two; a.bias and c's two with 0.5
    assert groups[-1]["weight_decay"] == 0.5
    torch.optim.SGD(groups, lr=0.1)  # torch takes them: no parameter in two groups


class _Net(nn.Module):
    def __init__(self, width: int = 10, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), act(), nn.Linear(16, width))

    def forward(self, x):
        return self.body(x)


def test_a_trainer_that_changes_the_network_beyond_its_weights_fails_naming_it():
    """A trainer widening the head (or adding a buffer, or a spectral norm's parametrization) had its checkpoint
    stored, then called corrupt by every job reading it, on every run; one swapping an activation (the same
    keys) had the original network evaluated under its weights, silently."""
    x, _ = _mnist_like(64)
    torch.manual_seed(0)
    trained = _Net().eval()
    check_reloadable(trained, (_Net(), _Net()), "standard", x, torch.device("cpu"))  # weights only: fine

    wider = _Net(width=12).eval()
    widened = r"trainer 'widens' changed the parameters or buffers of model '_Net' \(size mismatch for body.3.weight"
    with pytest.raises(PluginContractError, match=widened) as info:
        check_reloadable(wider, (_Net(), _Net()), "widens", x, torch.device("cpu"))
    assert info.value.plugin == "trainer 'widens'"
    with pytest.raises(PluginContractError, match=widened.replace("widens", "prunes")):  # reads no data: keys only
        check_reloadable(wider, (_Net(),), "prunes", None, torch.device("cpu"))

    swapped = _Net().eval()
    swapped.body[2] = nn.Tanh()
    with pytest.raises(PluginContractError, match="trainer 'swaps' changed .* beyond its weights"):
        check_reloadable(swapped, (_Net(), _Net()), "swaps", x, torch.device("cpu"))
    hooked = _Net().eval()
    hooked.body[1].register_forward_hook(lambda module, args, out: out * 2)
    with pytest.raises(PluginContractError, match="beyond its weights"):
        check_reloadable(hooked, (_Net(), _Net()), "hooks", x, torch.device("cpu"))


def test_a_network_its_weights_do_not_determine_is_the_models_fault_not_the_trainers():
    """A fixed random projection drawn at build and registered with persistent=False: every later job loads the
    weights into a network with another projection. The model is named, not the trainer that trained it."""
    class RandomProjection(_Net):
        def __init__(self):
            super().__init__()
            self.register_buffer("projection", torch.randn(784, 784), persistent=False)

        def forward(self, x):
            return self.body(x.flatten(1) @ self.projection)

    x, _ = _mnist_like(64)
    trained = RandomProjection().eval()
    trained.rbench_plugin = "projected"
    with pytest.raises(PluginContractError, match="model 'projected''s network is not determined by its weights") \
            as info:
        check_reloadable(trained, (RandomProjection(), RandomProjection()), "standard", x, torch.device("cpu"))
    assert info.value.plugin == "model 'projected'"


def test_a_model_with_randomness_of_its_own_is_left_to_the_models_check():
    """Dropout left on at inference is the model's fault, named by every attack and eval job's consistency check:
    the trainer is not blamed for outputs that differ between two passes of the trained model itself."""
    class Dropped(_Net):
        def forward(self, x):
            return self.body[3](nn.functional.dropout(self.body[:3](x), 0.5, training=True))

    x, _ = _mnist_like(64)
    check_reloadable(Dropped().eval(), (Dropped(), Dropped()), "standard", x, torch.device("cpu"))


SWAPS = '''
from torch import nn
from rbench import hookimpl
from rbench.plugins.trainers.standard import StandardTrainer


class Swaps(StandardTrainer):  # trains, then swaps the hidden activation: the same state_dict keys
    name = "swaps"

    def train(self, model, data, params, **kw):
        stats = super().train(model, data, params, **kw)
        for parent in model.modules():
            for key, child in parent.named_children():
                if isinstance(child, nn.ReLU):
                    setattr(parent, key, nn.Tanh())
        return stats


@hookimpl
def rbench_trainers():
    return [Swaps()]
'''


def test_a_train_job_whose_trainer_changed_the_network_fails_and_stores_nothing(tiny_reference, tmp_path):
    import shutil

    from support import mlp_suite, plugin_dist, rbench

    suite, store, _, _ = tiny_reference
    shutil.copytree(store, tmp_path / "store")
    env = plugin_dist(tmp_path / "plugins", "rbench_test_swaps", SWAPS)
    extra = """
[models.swapped]
plugin = "mlp"
params = { widths = [32] }
dataset = "mnist"
n_train = 500
trainer = { plugin = "swaps", params = { epochs = 1, batch_size = 32 } }
"""
    (tmp_path / "suite.toml").write_text(mlp_suite(suite, extra, ["mlp", "swapped"], []))
    before = sorted(p.name for p in (tmp_path / "store").rglob("*.safetensors"))
    out = rbench("run", str(tmp_path / "suite.toml"), "--store", str(tmp_path / "store"), "--run-dir",
                 str(tmp_path / "run"), "-q", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    flat = " ".join(out.stdout.split())
    assert "[trainer 'swaps']: PluginContractError: trainer 'swaps' changed model 'mlp' beyond its weights" in flat
    assert sorted(p.name for p in (tmp_path / "store").rglob("*.safetensors")) == before  # nothing stored


def _monitor(write_suite):
    from rbench.plan import build_plan
    from rbench.suite import load_suite

    text = ('[suite]\nname = "mon"\n[datasets.mnist]\nplugin = "mnist"\n'
            '[models.m]\nplugin = "mlp"\nparams = { widths = [32], dropout = 0.5 }\ndataset = "mnist"\n'
            'monitor = { dataset = "mnist", split = "test", n = 100, probes = [ { plugin = "accuracy" } ] }\n'
            '[evaluations.e]\ndataset = "mnist"\nn = 100\nsources = ["m"]\n'
            '[tables.t]\nevaluation = "e"\nrows = "attack"\ncolumns = "model"\nmetric = "error"\n')
    plan = build_plan(load_suite(write_suite(text)))
    return plan.jobs[plan.trained["m"]].spec.monitor


def test_the_monitor_measures_in_eval_mode_whatever_mode_the_trainer_calls_it_in(write_suite):
    """A user's trainer calling the observer with its model in train mode had the probes measure with dropout
    on (accuracy 14 against 22), and batch statistics would have changed the weights. The observer measures in
    eval mode and puts each module's mode back."""
    from rbench.jobs import epoch_observer

    plugin = get_plugin("model", "mlp")
    torch.manual_seed(0)
    model = plugin.build(plugin.Params(widths=[32], dropout=0.5))
    monitor = _monitor(write_suite)
    seen: list[dict] = []
    observe = epoch_observer(monitor, torch.device("cpu"), 0, seen, [])
    observe(1, model.eval())
    model.train()
    model.net[0].eval()  # a mode of the trainer's own on one module: kept
    modes = [m.training for m in model.modules()]
    observe(2, model)
    assert [m.training for m in model.modules()] == modes
    assert seen[0]["accuracy"] == seen[1]["accuracy"]


def test_a_trainer_that_declares_observing_but_never_calls_the_observer_fails_naming_it(tmp_path):
    from support import plugin_dist, rbench

    source = '''
from rbench import hookimpl
from rbench.plugins.trainers.standard import StandardTrainer


class Silent(StandardTrainer):  # observes = True, inherited, but never calls the observer
    name = "silent"

    def train(self, model, data, params, *, observer=None, **kw):
        return super().train(model, data, params, **kw)


@hookimpl
def rbench_trainers():
    return [Silent()]
'''
    env = plugin_dist(tmp_path / "plugins", "rbench_test_silent", source)
    (tmp_path / "s.toml").write_text(
        '[suite]\nname = "silent"\n[datasets.mnist]\nplugin = "mnist"\n'
        '[models.m]\nplugin = "mlp"\nparams = { widths = [16] }\ndataset = "mnist"\nn_train = 200\n'
        'trainer = { plugin = "silent", params = { epochs = 1 } }\n'
        'monitor = { dataset = "mnist", split = "test", n = 50, probes = [ { plugin = "accuracy" } ] }\n'
        '[evaluations.e]\ndataset = "mnist"\nn = 50\nsources = ["m"]\n'
        '[tables.t]\nevaluation = "e"\nrows = "attack"\ncolumns = "model"\nmetric = "error"\n')
    out = rbench("run", str(tmp_path / "s.toml"), "--store", str(tmp_path / "store"), "--run-dir",
                 str(tmp_path / "run"), "-q", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    flat = " ".join(out.stdout.split())
    assert "[trainer 'silent']: PluginContractError: trainer 'silent' declares that it calls the observer" in flat


def test_torchs_process_wide_settings_changed_by_a_job_are_put_back_and_named():
    """A trainer leaving ``set_default_dtype(torch.float64)`` or ``set_grad_enabled(False)`` made every later job
    of its worker fail, blamed on their plugins; ``set_num_threads(1)`` changed their last bits silently."""
    from rbench.contract import torch_settings_kept

    dtype, grad, threads = torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads()
    with torch_settings_kept() as changed:
        torch.set_default_dtype(torch.float64)
        torch.set_grad_enabled(False)
        torch.set_num_threads(threads + 1)
    assert (torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads()) == (dtype, grad, threads)
    assert changed == ["default dtype torch.float32 -> torch.float64", "grad mode True -> False",
                       f"threads {threads} -> {threads + 1}"]
    with torch_settings_kept() as untouched:
        torch.ones(2) * 2
    assert untouched == []
    torch.use_deterministic_algorithms(True, warn_only=True)  # as rbench runs a job on a GPU
    try:
        with torch_settings_kept() as changed:
            torch.use_deterministic_algorithms(True)  # strict: an op without a deterministic kernel would fail
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert changed == ["deterministic warn-only True -> False"]
    finally:
        torch.use_deterministic_algorithms(False)
