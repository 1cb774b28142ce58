"""A failing job names the plugin whose code raised the error (rbench.blame), not the job's own plugin when the
error came from a defense, a model or a helper it called."""

from __future__ import annotations

import re

import pytest
import torch
from pydantic import BaseModel
from torch import nn

from rbench import AttackOutput, FixedBudgetAttack, ModelPlugin, NoParams
from rbench.blame import raising_plugin
from rbench.defense import DefendedModel, Defense, DefenseModule, Stage
from rbench.manager import PluginInfo, get_registry


class _Crashes(DefenseModule):
    def forward(self, x):
        return x.view(-1, 3)  # a bug of the defense's own: 784 pixels do not split into rows of 3


class _Fine(DefenseModule):
    def forward(self, x):
        return x


class _CrashingDefense(Defense):
    name, Params = "blame_crashes", NoParams

    def build(self, params):
        return _Crashes()


class _FineDefense(Defense):  # a second defense of this module: the frame of _Crashes alone cannot say which
    name, Params = "blame_fine", NoParams

    def build(self, params):
        return _Fine()


class _Eps(BaseModel):
    eps: float = 0.1


def _helper_that_fails(x):  # a module-level helper of a module defining two attacks
    raise ValueError("the helper failed")


class _CallsModel(FixedBudgetAttack):
    name, Params, norm = "blame_calls_model", _Eps, "linf"

    def run(self, model, x, y, params, *, generator=None):
        model(x)
        return AttackOutput(x.clone())


class _CallsHelper(_CallsModel):
    name = "blame_calls_helper"

    def run(self, model, x, y, params, *, generator=None):
        return _helper_that_fails(x)


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x):
        return self.body(x)


class _LinearModel(ModelPlugin):
    name, Params = "blame_linear", NoParams

    def build(self, params):
        model = _Linear()
        model.rbench_plugin = self.name  # as the engine's build_model marks it
        return model


class _PassesDoubles(_CallsModel):
    name = "blame_passes_doubles"

    def run(self, model, x, y, params, *, generator=None):
        model(x.double())  # the attack's bug: torch raises inside the model's layer
        return AttackOutput(x.clone())


PLUGINS = [("defense", _CrashingDefense()), ("defense", _FineDefense()), ("attack", _CallsModel()),
           ("attack", _CallsHelper()), ("model", _LinearModel()), ("attack", _PassesDoubles())]


@pytest.fixture
def registered():
    registry = get_registry()
    for kind, obj in PLUGINS:
        registry.plugins[kind][obj.name] = PluginInfo(kind, obj.name, "0", "tests", "tests", obj)
    yield {obj.name: obj for _, obj in PLUGINS}
    for kind, obj in PLUGINS:
        registry.plugins[kind].pop(obj.name)


def _raised(fn) -> BaseException:
    with pytest.raises(Exception) as info:
        fn()
    return info.value


def _defended(defense: Defense) -> DefendedModel:
    module = defense.build(NoParams())  # not marked with rbench_plugin, as build_defense marks it: the stage says
    stage = Stage(module, name=defense.name, differentiable=True, randomized=False, trained=False,
                  approximation=None)
    head = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    head.rbench_plugin = "mlp"
    return DefendedModel([stage], head, [])


def test_an_error_inside_a_defense_names_the_defense_through_the_engines_stage(registered):
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    attack = registered["blame_calls_model"]
    exc = _raised(lambda: attack.run(_defended(_CrashingDefense()), x, y, _Eps()))
    assert raising_plugin(exc) == ("defense 'blame_crashes'", True)


def test_an_error_in_a_modules_helper_names_the_plugin_calling_it(registered):
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    exc = _raised(lambda: registered["blame_calls_helper"].run(nn.Flatten(), x, y, _Eps()))
    assert raising_plugin(exc) == ("attack 'blame_calls_helper'", True)


def test_an_error_a_library_raised_inside_a_plugins_code_names_that_plugin_as_called_by_another(registered):
    """An attack handing float64 inputs to the model: torch raises inside the model's layer. The model's code
    is where it happened, not necessarily whose fault it is: the line names the model, called by the attack."""
    from rbench.execution import describe_failure

    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    model = registered["blame_linear"].build(NoParams())
    exc = _raised(lambda: registered["blame_passes_doubles"].run(model, x, y, _Eps()))
    assert raising_plugin(exc) == ("model 'blame_linear'", False)

    class Job:
        label, plugin = "attack blame_passes_doubles on linear", "attack 'blame_passes_doubles'"

    line = describe_failure(Job(), exc)  # type: ignore[arg-type]
    assert line.startswith("attack blame_passes_doubles on linear [model 'blame_linear', called by attack "
                           "'blame_passes_doubles']: RuntimeError:"), line
    # where: the module as a path (a bare "linear.py" or "defense.py" read as a file of the user's own plugin)
    assert re.search(r" at torch/nn/modules/linear\.py:\d+$", line), line


def test_a_failure_in_a_checkpoints_own_file_names_that_file(tmp_path):
    """A checkpoint's network file runs under a generated module name: the line names the user's file, not
    rbench_checkpoint_<digest>.py (a file that does not exist)."""
    from rbench.execution import code_place
    from rbench.plugins.models.checkpoint import _module_from_source

    source = "def forward(x):\n    raise ValueError('bad shape')\n"
    module = _module_from_source(source, str(tmp_path / "my_net.py"))
    exc = _raised(lambda: module.forward(None))
    assert code_place(exc) == "my_net.py:2"


def test_an_error_outside_plugin_code_names_no_plugin(registered):
    """The engine's own error (here: torch called from this test, no plugin's frame) is left to the job's plugin;
    and a module's plugin that the frames cannot tell apart from its siblings is not guessed."""
    assert raising_plugin(_raised(lambda: torch.zeros(3).view(-1, 2))) is None
    assert raising_plugin(_raised(lambda: _helper_that_fails(None))) is None  # the module defines six plugins


MISBEHAVING = '''
import torch
from torch import nn
from rbench import ModelPlugin, NoParams, hookimpl
from rbench.defense import Defense, DefenseModule


class Crashes(DefenseModule):
    def forward(self, x):
        return x.view(-1, 3)  # the defense's own bug


class Fine(DefenseModule):
    def forward(self, x):
        return x


def defense(plugin_name, module):
    class One(Defense):
        name, Params = plugin_name, NoParams

        def build(self, params):
            return module()
    return One()


class FailsInEval(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 10)

    def forward(self, x):
        if not self.training:
            raise RuntimeError("forward fails in eval mode")
        return self.lin(x.flatten(1))


class EvalFails(ModelPlugin):
    name, Params, default_trainer = "eval_fails", NoParams, "none"

    def build(self, params):
        return FailsInEval()


@hookimpl
def rbench_defenses():
    return [defense("crashes", Crashes), defense("fine", Fine)]


@hookimpl
def rbench_models():
    return [EvalFails()]
'''


def test_a_failing_job_names_the_defense_or_model_whose_code_raised(tiny_reference, tmp_path):
    """An error raised inside a defense in front of the attacked model, or inside the model's forward, was
    blamed on the attack (``[attack 'fgsm']``) or, in an evaluation, on the whole chain (``[model 'fine ->
    crashes -> mlp']``), the line's ``at file:line`` the only hint. Contract violations already named their
    plugin; this covers every other exception."""
    import shutil

    from support import mlp_suite, plugin_dist, rbench

    suite, store, _, _ = tiny_reference
    shutil.copytree(store, tmp_path / "store")
    env = plugin_dist(tmp_path / "plugins", "rbench_test_blame", MISBEHAVING)
    extra = """
[defenses.crashes]
plugin = "crashes"
[defenses.fine]
plugin = "fine"
[models.mlp_crashes]
base = "mlp"
defenses = ["fine", "crashes"]
[models.eval_fails]
plugin = "eval_fails"
dataset = "mnist"
[attacks.fgsm]
plugin = "fgsm"
params = { eps = 0.1 }
"""
    (tmp_path / "suite.toml").write_text(mlp_suite(suite, extra, ["mlp", "mlp_crashes", "eval_fails"], ["fgsm"]))
    out = rbench("run", str(tmp_path / "suite.toml"), "--store", str(tmp_path / "store"), "--run-dir",
                 str(tmp_path / "run"), "-q", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    flat = " ".join(out.stdout.split())
    assert "attack fgsm on mlp_crashes [defense 'crashes']: RuntimeError:" in flat, flat
    assert "eval mlp_crashes on clean mnist/test [defense 'crashes']: RuntimeError:" in flat, flat  # was the chain
    assert "attack fgsm on eval_fails [model 'eval_fails']: RuntimeError: forward fails in eval mode" in flat, flat
    assert "[attack 'fgsm']" not in flat, flat


def test_a_users_network_built_by_checkpoint_is_named_though_its_class_lives_in_the_users_file(registered):
    """A user's forward raising on the attack's path was blamed on the attack: the network's class is in the
    user's file, no plugin's module; the engine's mark (``checkpoint``) names it."""
    class Buggy(nn.Module):
        def forward(self, x):
            raise ValueError("user bug")

    model = Buggy()
    model.rbench_plugin = "checkpoint"  # as build_model marks a checkpoint model's network
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    exc = _raised(lambda: registered["blame_calls_model"].run(model, x, y, _Eps()))
    assert raising_plugin(exc) == ("model 'checkpoint'", True)
