"""The key of an in-memory model (``rbench.evaluate``): everything that decides what it computes, and nothing else.

An audit found three ways a changed model was served the old model's results: a user's layer inside an
``nn.Sequential`` edited (only the outer class's module was keyed, torch's own), a helper module the model's module
imports edited, and plain attributes (``self.mean = 0.5``) changed with the same weights."""

from __future__ import annotations

import functools
import importlib
import itertools
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from torch import nn

from rbench.plugins.models.checkpoint import register_live
from rbench.plugins.models.code_keys import live_code_digest

NETS = '''
import torch
from torch import nn
from {helpers} import pre


class Act(nn.Module):
    def forward(self, x):
        return torch.{act}(pre(x))


class Normed(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.body((x - self.mean) / self.std)


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), Act(), nn.Linear(3, 2))
'''


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """write(act=..., helper=...) -> the module ``live_nets_<tmp>`` (re)loaded from files in ``tmp_path``."""
    name = f"live_nets_{tmp_path.name.replace('-', '_')}"
    helpers = f"{name}_helpers"
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(act: str = "relu", helper: str = "x"):
        (tmp_path / f"{helpers}.py").write_text(f"def pre(x):\n    return {helper}\n")
        (tmp_path / f"{name}.py").write_text(NETS.format(helpers=helpers, act=act))
        importlib.invalidate_caches()
        for module in (helpers, name):
            if module in sys.modules:
                importlib.reload(sys.modules[module])
        return importlib.import_module(name)

    yield write
    for module in (helpers, name):
        sys.modules.pop(module, None)


def test_the_same_model_gets_the_same_key_here_and_in_another_process(nets, tmp_path):
    module = nets()
    model = module.net()
    assert register_live(model) == register_live(module.net())  # another instance of the same model
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import {module.__name__} as nets
        from rbench.plugins.models.checkpoint import register_live
        print(register_live(nets.net()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == register_live(model)


def test_an_edited_layer_inside_a_library_container_changes_the_key(nets):
    """relu -> sigmoid in the user's layer of an nn.Sequential: the same weights, the same repr, another model."""
    before = register_live(nets(act="relu").net())
    after = register_live(nets(act="sigmoid").net())
    assert before.split(":")[1] == after.split(":")[1]  # the weights are the same
    assert before != after


def test_an_edited_helper_module_changes_the_key(nets):
    module = nets(helper="x")
    before = register_live(module.net())
    nets(helper="1 - x")
    assert register_live(module.net()) != before


def test_plain_attributes_unsaved_buffers_and_hooks_are_keyed(nets):
    module = nets()

    def normed(mean, std):
        torch.manual_seed(0)
        return module.Normed(mean, std)

    assert live_code_digest(normed(0.1307, 0.3081)) == live_code_digest(normed(0.1307, 0.3081))
    assert live_code_digest(normed(0.1307, 0.3081)) != live_code_digest(normed(0.5, 0.05))

    def with_buffer(value):
        m = normed(0.0, 1.0)
        m.register_buffer("shift", torch.tensor([value]), persistent=False)  # not in the state_dict
        return m

    assert live_code_digest(with_buffer(1.0)) == live_code_digest(with_buffer(1.0))
    assert live_code_digest(with_buffer(1.0)) != live_code_digest(with_buffer(2.0))

    def hooked(scale):
        m = normed(0.0, 1.0)
        m.register_forward_pre_hook(lambda _, args: (args[0] * scale,))  # a closure over scale
        return m

    assert live_code_digest(hooked(2.0)) == live_code_digest(hooked(2.0))
    assert live_code_digest(hooked(2.0)) != live_code_digest(hooked(3.0)) != live_code_digest(normed(0.0, 1.0))


def test_library_types_and_random_streams_are_keyed_by_what_they_are(nets):
    """A builtin type or a torch.Generator held by a layer (a randomized defense's stream) has no source: named (a
    generator by its state), the key still the same in every process."""
    module = nets()

    def holding(seed):
        model = module.net()
        model[2].kind, model[2].stream = float, torch.Generator().manual_seed(seed)
        return model

    assert live_code_digest(holding(0)) == live_code_digest(holding(0)) != live_code_digest(holding(1))


def test_a_layer_holding_its_parent_is_keyed_and_a_part_without_text_is_never_reused(nets):
    module = nets()
    model = module.net()
    model[2].context = {"root": model}  # a cycle (a plain attribute): described as a reference back
    assert live_code_digest(model) == live_code_digest(model)
    model[2].counter = itertools.count()  # no text stands for its state in another process
    with pytest.warns(UserWarning, match=r"^Sequential cannot be keyed across calls \(an object of type "
                                         r"itertools\.count\): its results are computed on every"):
        first = register_live(model)
    with pytest.warns(UserWarning):
        assert register_live(model) != first


def test_evaluate_recomputes_a_model_whose_layer_changed(nets, tmp_path):
    """End to end, the audit's case: the same weights, relu then sigmoid inside the Sequential."""
    import rbench

    store = tmp_path / "store"

    def run(act):
        model = nets(act=act).net()
        model[1] = nn.Linear(784, 3)
        torch.manual_seed(0)
        nn.init.normal_(model[1].weight, std=0.05)
        nn.init.zeros_(model[1].bias)
        model.append(nn.Linear(2, 10))
        with warnings.catch_warnings():  # untrained: near chance, which evaluate warns about
            warnings.simplefilter("ignore", UserWarning)
            result = rbench.evaluate(model, attacks=[("fgsm", {"eps": 0.1})], n=20, store=store, device="cpu")
        return {j["status"] for j in result.run.jobs.values()}

    assert run("relu") == {"done"}
    assert run("relu") == {"cached"}
    assert run("sigmoid") == {"done"}


def test_a_model_that_cannot_be_copied_is_one_line_naming_the_attribute(nets):
    """A layer holding a threading.Lock failed deep inside copy.deepcopy with Python's TypeError."""
    import threading

    from rbench.errors import RbenchError

    model = nets().net()
    model[2].guard = threading.Lock()
    with warnings.catch_warnings():  # a lock cannot be keyed either: warned
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(RbenchError, match=r"^evaluate: the model cannot be copied \(at 2\.guard: TypeError: "
                                              r"cannot pickle '_thread\.lock' object\); rbench evaluates a copy"):
            register_live(model)


def test_a_module_edited_on_disk_after_its_import_is_not_keyed_by_the_file(nets, tmp_path):
    """A notebook imports its model's module, then the file is edited: the key was the file's new source while the
    old code ran, and a fresh process running the new code was served the old code's results (an audit: 91.5%
    clean where the new code gives 11%). Such a model is computed, never read back, until the module is imported
    again; an edit of comments alone is no change of code."""
    from rbench.plugins.models.code_keys import Unkeyable

    module = nets(act="relu")
    model = module.net()
    key = register_live(model)
    path = tmp_path / f"{module.__name__}.py"
    source = path.read_text()
    path.write_text(source.replace("torch.relu(", "torch.sigmoid("))
    with pytest.raises(Unkeyable, match=r"changed after it was imported: Act.forward runs code the file no longer"):
        live_code_digest(model)
    with pytest.warns(UserWarning, match="cannot be keyed across calls"):
        assert register_live(model) != key  # an id of its own, never reused
    path.write_text(source + "\n# a comment, no code\n")
    assert live_code_digest(model)  # the same code: keyed (by the file as it is now)
    assert register_live(nets(act="sigmoid").net()) != key  # imported again: keyed as what it runs


def _module(tmp_path, name: str, source: str):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))


def test_data_the_models_code_reads_from_its_module_is_keyed(tmp_path):
    """``SCALE = float(os.environ["SCALE"])`` at import: two processes with two values ran the same source with
    the same weights, and the second was served the first's results. The plain data the module's functions read
    is keyed; data they do not read is not."""
    name = f"live_scaled_{tmp_path.name.replace('-', '_')}"
    module = _module(tmp_path, name, """
        import time

        import torch
        from torch import nn

        SCALE = 1.0
        SHIFT = 0.0
        UNREAD = [1, 2]
        RUN = time.strftime("%H%M%S")  # read by main() alone: no part of the model
        lin = 3  # a global named as the model's attribute self.lin


        def shifted(x):
            return x + SHIFT


        class Scaled(nn.Module):
            T = 1.0

            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(4, 2)

            @torch.no_grad()
            def prepared(self, x, gain=1.0):
                return shifted(x) * gain

            def forward(self, x, t=1.0):
                return self.lin(self.prepared(x.flatten(1)) * SCALE * t * self.T)


        def main():
            print(RUN, UNREAD)
        """)
    try:
        model = module.Scaled()
        before = live_code_digest(model)
        module.UNREAD, module.RUN, module.lin = [3], "later", 4
        assert live_code_digest(model) == before  # what the model's code does not read: no recomputation
        changes = [("SCALE", 0.0), ("SHIFT", 0.5)]  # read by forward, and by a function forward calls
        for attribute, value in changes:
            setattr(module, attribute, value)
            assert live_code_digest(model) != before, attribute
            setattr(module, attribute, getattr(module, attribute) * 0 + (1.0 if attribute == "SCALE" else 0.0))
        assert live_code_digest(model) == before
        # a default argument, a class attribute, a decorated method's default: in memory, whatever the file says
        module.Scaled.forward.__defaults__ = (-1.0,)
        assert live_code_digest(model) != before
        module.Scaled.forward.__defaults__ = (1.0,)
        module.Scaled.T = -1.0
        assert live_code_digest(model) != before
        module.Scaled.T = 1.0
        module.Scaled.prepared.__wrapped__.__defaults__ = (2.0,)  # a decorated method: the wrapped function's
        assert live_code_digest(model) != before
        path = tmp_path / f"{name}.py"  # a decorated method edited on disk after the import: its wrapper is torch's
        path.write_text(path.read_text().replace("return shifted(x) * gain", "return shifted(x) * gain * 2"))
        from rbench.plugins.models.code_keys import Unkeyable
        with pytest.raises(Unkeyable, match="Scaled.prepared runs code the file no longer holds"):
            live_code_digest(model)
    finally:
        sys.modules.pop(name, None)


def test_an_installed_packages_own_modules_are_keyed(tmp_path, monkeypatch):
    """``rbench eval package.module:Class`` of a package installed in site-packages: its ``layers.py`` changed by a
    reinstall under the same version was not keyed (only modules outside the installation were followed), and
    every job was served from the store. Its own package's modules are followed now, wherever they lie."""
    from rbench.plugins.models import code_keys
    from rbench.plugins.models.checkpoint import CheckpointParams, find_class, sha256

    name = f"ownpkg_{tmp_path.name.replace('-', '_')}"
    site = tmp_path / "site"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text("")
    (site / name / "layers.py").write_text("SCALE = 1.0\n")
    nets = f"from torch import nn\nfrom {name} import layers\n\n\nclass Net(nn.Linear):\n    pass\n"
    (site / name / "nets.py").write_text(nets)
    monkeypatch.syspath_prepend(str(site))
    roots = code_keys._installed_roots() + (str(site.resolve()),)
    monkeypatch.setattr(code_keys, "_installed_roots", lambda: roots)  # installed, as in site-packages
    try:
        assert code_keys.local_modules(nets, name) == {}  # installed: not the user's helpers
        assert set(code_keys.local_modules(nets, name, own=name)) == {name, f"{name}.layers"}
        planned = CheckpointParams.model_construct(
            import_name=f"{name}.nets", class_name="Net", source="", source_sha256=sha256(nets.encode()),
            imports_sha256="", module=None, kwargs={})
        assert find_class(planned, fill=True).__name__ == "Net"
        assert planned.imports_sha256  # the package's own modules are in the key
        (site / name / "layers.py").write_text("SCALE = 0.0  # reinstalled, same version\n")
        with pytest.raises(ValueError, match=rf"the local modules {name}.nets imports .* changed since its jobs"):
            find_class(planned)
    finally:
        for module in [m for m in sys.modules if m.split(".")[0] == name]:
            sys.modules.pop(module)


def test_what_a_models_code_reaches_indirectly_is_keyed_and_a_dataclass_config_is_keyable(tmp_path):
    """A review found the narrowed keys missed values reached through a registry dict, ``getattr`` on a helper
    module, a cached_property, a partial class attribute and the second of two closures of one factory (the same
    key, other outputs); and a dataclass config (its generated ``__repr__`` has no source) or a sentinel default
    made a model unkeyable, never read back."""
    tag = tmp_path.name.replace("-", "_")
    helpers, name = f"reach_helpers_{tag}", f"reach_nets_{tag}"
    _module(tmp_path, helpers, """
        FACTOR = 1.0


        def scale(x):
            return x * FACTOR
        """)
    module = _module(tmp_path, name, f"""
        import dataclasses
        import functools

        import torch
        from torch import nn

        import {helpers}

        BETA = 1.0
        _MISSING = object()


        def swish(x):
            return x * torch.sigmoid(BETA * x)


        ACTIVATIONS = {{"swish": swish}}


        def make(gain):
            def apply(x):
                return x * gain
            return apply


        FIRST, SECOND = make(2.0), make(3.0)


        @dataclasses.dataclass
        class Cfg:
            width: int = 2


        class Net(nn.Module):
            mul = functools.partial(torch.mul, other=1.0)

            def __init__(self, cfg):
                super().__init__()
                self.cfg = cfg
                self.lin = nn.Linear(4, cfg.width)

            @functools.cached_property
            def gain(self):
                return 1.0

            def forward(self, x, missing=_MISSING):
                h = getattr({helpers}, "scale")(ACTIVATIONS["swish"](x.flatten(1)))
                return self.mul(self.lin(SECOND(FIRST(h))) * self.gain)
        """)
    try:
        model = module.Net(module.Cfg())
        before = live_code_digest(model)  # keyable: no Unkeyable raised
        script = textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(tmp_path)!r})
            import {name} as nets
            from rbench.plugins.models.code_keys import live_code_digest
            print(live_code_digest(nets.Net(nets.Cfg())))
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == before  # another process, the same key: read back
        helper_module = sys.modules[helpers]
        changes = [(module, "BETA", 2.0), (helper_module, "FACTOR", 2.0), (module, "SECOND", module.make(4.0))]
        for owner, attribute, value in changes:
            kept = getattr(owner, attribute)
            setattr(owner, attribute, value)
            assert live_code_digest(model) != before, attribute
            setattr(owner, attribute, kept)
        assert live_code_digest(model) == before
        module.Net.mul = functools.partial(torch.mul, other=2.0)
        assert live_code_digest(model) != before
    finally:
        for loaded in (name, helpers):
            sys.modules.pop(loaded, None)
