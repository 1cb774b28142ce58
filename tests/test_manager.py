"""Unit tests of the plugin manager (rbench.manager) against fake distributions built on the fly.

Each fake distribution is a ``*.dist-info`` folder (METADATA, entry_points.txt) plus a module file in a temporary
folder put on ``sys.path``; importlib.metadata discovers it like an installed distribution. The tests call
:func:`rbench.manager.build_registry` directly (``get_registry`` caches a process-wide registry).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from importlib import metadata
from pathlib import Path

import pytest

import rbench.plugins
from rbench import manager
from rbench.errors import PluginError
from rbench.manager import BUILTIN_DISTRIBUTION, ENTRY_POINT_GROUP, KINDS, build_registry, suggest

RBENCH = str(Path(sys.executable).parent / "rbench")
BUILTIN_KINDS = ("dataset", "model", "trainer", "attack", "metric", "reporter", "executor")


def attack_module(*names: str) -> str:
    """Source of a plugin module registering one trivial attack per name."""
    classes = "\n".join(
        f"class A{i}(rbench.FixedBudgetAttack):\n    name = {n!r}\n    Params = P\n    norm = 'linf'\n"
        for i, n in enumerate(names)
    )
    objects = ", ".join(f"A{i}()" for i in range(len(names)))
    return (
        "import rbench\nfrom pydantic import BaseModel\n\n\nclass P(BaseModel):\n    eps: float = 0.1\n\n\n"
        f"{classes}\n\n@rbench.hookimpl\ndef rbench_attacks():\n    return [{objects}]\n"
    )


class FakeDists:
    """Writes fake distributions into one folder on ``sys.path``; every module gets a unique import name."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(root))

    def add(self, dist: str, entry_points: dict[str, str], version: str = "1.2.3") -> dict[str, str]:
        """Create distribution ``dist`` whose entry points (name -> module source) are in group ``rbench``.

        Returns entry-point name -> module name.
        """
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        modules = {ep: f"rbfake_{uuid.uuid4().hex[:10]}_{ep}" for ep in entry_points}
        lines = [f"{ep} = {modules[ep]}" for ep in entry_points]
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + "\n".join(lines) + "\n")
        for ep, source in entry_points.items():
            (self.root / f"{modules[ep]}.py").write_text(textwrap.dedent(source))
        self.modules += modules.values()
        importlib.invalidate_caches()  # importlib.metadata caches folder listings
        return modules


@pytest.fixture(autouse=True)
def _no_plugin_env(monkeypatch):
    monkeypatch.delenv("RBENCH_PLUGINS", raising=False)
    monkeypatch.delenv("RBENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("RBENCH_TRACE_PLUGINS", raising=False)


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    (tmp_path / "site").mkdir()
    fake = FakeDists(tmp_path / "site", monkeypatch)
    yield fake
    for module in fake.modules:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


def _names(registry, kind: str) -> set[str]:
    return set(registry.plugins[kind])


# -- built-ins --------------------------------------------------------------------------------------------
def test_builtins_are_registered_through_the_entry_point_group(monkeypatch):
    monkeypatch.setenv("RBENCH_PLUGINS", "")  # built-ins only, whatever else is installed
    registry = build_registry()
    assert not registry.failures and not registry.conflicts
    for kind in BUILTIN_KINDS:
        assert registry.plugins[kind], f"no built-in {kind} plugin"
    infos = [info for by_name in registry.plugins.values() for info in by_name.values()]
    assert {info.distribution for info in infos} == {BUILTIN_DISTRIBUTION}
    # every built-in comes from an entry point the rbench distribution declares in the group "rbench"
    declared = {ep.value for ep in metadata.distribution("rbench").entry_points if ep.group == ENTRY_POINT_GROUP}
    assert {info.entry_point for info in infos} <= declared
    assert {"rbench.plugins.attacks", "rbench.plugins.models", "rbench.plugins.datasets"} <= declared
    assert {"pgd", "fgsm"} <= _names(registry, "attack") and "mnist" in _names(registry, "dataset")
    assert {"md", "csv", "json"} <= _names(registry, "reporter") and "local" in _names(registry, "executor")
    assert set(registry.plugins) == set(KINDS)


def test_registry_api_is_reexported_by_rbench_plugins():
    assert rbench.plugins.build_registry is build_registry
    assert rbench.plugins.get_registry().get("attack", "pgd").distribution == BUILTIN_DISTRIBUTION
    assert type(rbench.plugins.get_plugin("attack", "pgd")).__name__ == "Pgd"


def test_third_party_plugin_is_loaded_with_its_distribution_and_version(fakes):
    modules = fakes.add("rbench-fake-good", {"goodep": attack_module("good_attack")}, version="2.0.1")
    registry = build_registry()
    info = registry.get("attack", "good_attack")
    assert (info.distribution, info.version, info.entry_point) == ("rbench-fake-good", "2.0.1", modules["goodep"])
    assert info.obj.name == "good_attack" and info.error is None
    assert "pgd" in _names(registry, "attack")
    assert registry.manager.get_plugin("rbench-fake-good:goodep") is not None


# -- failures ---------------------------------------------------------------------------------------------
def test_a_distribution_without_metadata_does_not_break_discovery(fakes):
    """pip writes entry_points.txt and METADATA one after the other: a listing in between sees a dist-info with
    entry points and no name (seen in CI, where a test installed a plugin while another ran ``rbench``)."""
    fakes.add("rbench-fake-half", {"halfep": attack_module("half_attack")})
    [info_dir] = fakes.root.glob("rbench_fake_half-*.dist-info")
    (info_dir / "METADATA").unlink()
    importlib.invalidate_caches()
    registry = build_registry()
    info = registry.get("attack", "half_attack")
    assert (info.distribution, info.version) == ("?", "?")
    assert "pgd" in _names(registry, "attack")


def test_misspelled_hook_is_a_failure_not_silence(fakes):
    source = attack_module("typo_attack").replace("def rbench_attacks", "def rbench_attack")
    fakes.add("rbench-fake-typo", {"typoep": source})
    registry = build_registry()
    [failure] = [f for f in registry.failures if f.distribution == "rbench-fake-typo"]
    assert "rbench_attack" in failure.error and "typo_attack" not in _names(registry, "attack")


def test_plugin_that_fails_to_import_is_recorded_and_others_still_load(fakes):
    fakes.add("rbench-fake-broken", {"brokenep": "import rbench\nraise RuntimeError('boom at import')\n"})
    fakes.add("rbench-fake-good", {"goodep": attack_module("good_attack")})
    registry = build_registry()
    [failure] = [f for f in registry.failures if f.distribution == "rbench-fake-broken"]
    assert failure.name == "brokenep" and failure.kind == "(load)" and failure.obj is None
    assert failure.error == "RuntimeError: boom at import"
    with pytest.raises(PluginError, match=r"^unknown attack plugin 'brokenep': the entry point 'brokenep' of "
                                          r"distribution 'rbench-fake-broken', which may provide it, failed to load: "
                                          r"RuntimeError: boom at import$"):
        registry.get("attack", "brokenep")
    assert "good_attack" in _names(registry, "attack") and "pgd" in _names(registry, "attack")
    assert failure in registry.all()


def test_missing_module_and_raising_hook_and_nameless_object_are_failures(fakes):
    fakes.add("rbench-fake-missing", {"missingep": "import rbench_no_such_module_xyz\n"})
    fakes.add("rbench-fake-hookfail", {"hookep": """
        import rbench

        @rbench.hookimpl
        def rbench_metrics():
            raise ValueError("hook exploded")

        @rbench.hookimpl
        def rbench_attacks():
            return []
        """})
    fakes.add("rbench-fake-nameless", {"namelessep": """
        import rbench

        @rbench.hookimpl
        def rbench_models():
            return [object()]
        """})
    registry = build_registry()
    by_dist = {f.distribution: f for f in registry.failures}
    assert by_dist["rbench-fake-missing"].error.startswith("ModuleNotFoundError")
    assert "rbench_no_such_module_xyz" in by_dist["rbench-fake-missing"].error
    assert by_dist["rbench-fake-hookfail"].kind == "metric"
    assert by_dist["rbench-fake-hookfail"].error == "ValueError: hook exploded"
    assert by_dist["rbench-fake-nameless"].kind == "model"
    assert "no 'name'" in by_dist["rbench-fake-nameless"].error
    assert {"mlp", "lenet"} <= _names(registry, "model") and "error" in _names(registry, "metric")


def test_objects_a_run_could_not_use_are_failures_listed_not_internal_errors_later(fakes):
    fakes.add("rbench-fake-odd", {"oddep": """
        import rbench
        from pydantic import BaseModel

        class P(BaseModel):
            eps: float = 0.1

        class Single(rbench.FixedBudgetAttack):
            name = "single"
            Params = P
            norm = "linf"

        class AsClass(Single):
            name = "as_class"

        class NotPydantic:
            eps = 0.1

        class Untyped(Single):
            name = "untyped"
            Params = NotPydantic

        @rbench.hookimpl
        def rbench_attacks():
            return [AsClass, Untyped()]

        @rbench.hookimpl
        def rbench_metrics():
            return Single()  # one object, not a list of them
        """})
    registry = build_registry()
    errors = {(f.kind, f.name): f.error for f in registry.failures if f.distribution == "rbench-fake-odd"}
    assert errors[("attack", "as_class")].startswith("the hook returned the class AsClass, not an instance of it")
    assert errors[("attack", "untyped")].startswith("its Params is <class ") and "not a pydantic model" in \
        errors[("attack", "untyped")]
    assert errors[("metric", "oddep")] == "TypeError: 'Single' object is not iterable"
    assert not {"single", "as_class", "untyped"} & (_names(registry, "attack") | _names(registry, "metric"))
    assert {"pgd", "fgsm"} <= _names(registry, "attack") and "error" in _names(registry, "metric")
    # asked for by name, a plugin that failed says why, not "unknown ...; did you mean <another>?"
    with pytest.raises(PluginError, match=r"^attack plugin 'untyped' \(distribution 'rbench-fake-odd'\) failed to "
                                          r"load: its Params is <class .*not a pydantic model"):
        registry.get("attack", "untyped")


def test_a_hook_without_its_marker_is_a_listed_failure(fakes):
    """pluggy registers marked functions only: a hook that lost its @rbench.hookimpl dropped every plugin it
    returns, and nothing said so (a use of one read "unknown plugin")."""
    fakes.add("rbench-fake-unmarked", {"unmarkedep": """
        import rbench

        def rbench_metrics():
            return []
        """})
    registry = build_registry()
    [failure] = [f for f in registry.failures if f.distribution == "rbench-fake-unmarked"]
    assert (failure.kind, failure.name) == ("metric", "unmarkedep")
    assert failure.error == ("rbench_metrics is not marked with @rbench.hookimpl, so none of its metric plugins is "
                             "loaded")


def test_a_plugin_of_one_name_and_version_from_another_distribution_has_other_job_keys(fakes, monkeypatch,
                                                                                       tmp_path):
    """The cache key names a third-party plugin's distribution: disabling the built-in attacks to use a plugin of
    the same name and version must not serve it the built-in's stored sets (built-ins' keys stay as they were)."""
    from support import BASE_SUITE

    from rbench.plan import build_plan
    from rbench.suite import load_suite

    fakes.add("rbench-fake-one", {"oneep": attack_module("twin")})
    fakes.add("rbench-fake-two", {"twoep": attack_module("twin")})
    suite = tmp_path / "suite.toml"
    suite.write_text(BASE_SUITE.replace('plugin = "pgd"\nparams = { eps = 0.1, steps = 5 }', 'plugin = "twin"'))

    def attack_spec(disabled: str) -> dict:
        monkeypatch.setenv("RBENCH_DISABLE_PLUGINS", disabled)
        monkeypatch.setattr(manager, "_registry", build_registry())
        plan = build_plan(load_suite(suite))
        [job] = [job for job in plan.jobs.values() if job.kind == "attack"]
        return {"key": job.key, **job.spec.to_dict()["attack"]}

    one, two = attack_spec("rbench-fake-two"), attack_spec("rbench-fake-one")
    assert (one["distribution"], two["distribution"]) == ("rbench-fake-one", "rbench-fake-two")
    assert one["version"] == two["version"] and one["params"] == two["params"] and one["key"] != two["key"]
    monkeypatch.setenv("RBENCH_DISABLE_PLUGINS", "rbench-fake-one,rbench-fake-two")
    monkeypatch.setattr(manager, "_registry", build_registry())
    (tmp_path / "base.toml").write_text(BASE_SUITE)
    builtin = build_plan(load_suite(tmp_path / "base.toml")).jobs
    assert all("distribution" not in json.dumps(job.spec.to_dict()) for job in builtin.values())


def test_cli_lists_a_broken_plugin_as_failed_and_exits_0(fakes):
    fakes.add("rbench-fake-broken", {"brokenep": "raise RuntimeError('boom at import')\n"})
    env = {**os.environ, "PYTHONPATH": str(fakes.root), "COLUMNS": "250"}
    proc = subprocess.run([RBENCH, "plugins"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [line] = [ln for ln in proc.stdout.splitlines() if "brokenep" in ln]
    assert "rbench-fake-broken" in line and "failed to load: RuntimeError: boom at import" in line
    assert any("pgd" in ln and " ok" in ln for ln in proc.stdout.splitlines())

    proc = subprocess.run([RBENCH, "plugins", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["plugins"]
    [row] = [r for r in rows if r["distribution"] == "rbench-fake-broken"]
    assert row["name"] == "brokenep" and row["error"] == "RuntimeError: boom at import"
    assert any(r["name"] == "pgd" and r["error"] is None for r in rows)


# -- conflicts --------------------------------------------------------------------------------------------
def test_same_attack_name_from_two_distributions_is_an_error_naming_both(fakes):
    fakes.add("rbench-fake-one", {"oneep": attack_module("twin")})
    fakes.add("rbench-fake-two", {"twoep": attack_module("twin")})
    registry = build_registry()
    assert len(registry.conflicts) == 1
    with pytest.raises(PluginError) as err:
        registry.get("attack", "twin")
    message = str(err.value)
    assert "rbench-fake-one" in message and "rbench-fake-two" in message
    assert "RBENCH_DISABLE_PLUGINS" in message
    assert registry.get("attack", "pgd").distribution == BUILTIN_DISTRIBUTION  # others are unaffected


def test_clash_with_a_builtin_name_is_an_error_until_one_is_disabled(fakes, monkeypatch):
    fakes.add("rbench-fake-pgd", {"fakepgd": attack_module("pgd")})
    with pytest.raises(PluginError, match="'rbench'.*'rbench-fake-pgd'|'rbench-fake-pgd'.*'rbench'"):
        build_registry().get("attack", "pgd")
    monkeypatch.setenv("RBENCH_DISABLE_PLUGINS", "rbench-fake-pgd")
    assert build_registry().get("attack", "pgd").distribution == BUILTIN_DISTRIBUTION


# -- allow-list and deny-list -----------------------------------------------------------------------------
@pytest.fixture
def three(fakes, tmp_path):
    """Three third-party distributions; 'c' writes a marker file when imported (to prove it never ran)."""
    marker = tmp_path / "c-was-imported"
    fakes.add("rbench-fake-a", {"aep": attack_module("attack_a")})
    fakes.add("rbench-fake-b", {"bep": attack_module("attack_b")})
    fakes.add("rbench-fake-c", {"cep": f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                                       + attack_module("attack_c")})
    return marker


def _third_party(registry) -> set[str]:
    return {n for n in _names(registry, "attack") if n.startswith("attack_")}


def test_no_lists_load_everything(three):
    registry = build_registry()
    assert _third_party(registry) == {"attack_a", "attack_b", "attack_c"}
    assert three.exists()


def test_empty_allow_list_loads_builtins_only_and_runs_no_third_party_code(three, monkeypatch):
    monkeypatch.setenv("RBENCH_PLUGINS", "")
    registry = build_registry()
    assert _third_party(registry) == set()
    assert not three.exists()
    for kind in BUILTIN_KINDS:
        assert registry.plugins[kind], f"built-in {kind} plugins must stay loaded under an allow-list"


@pytest.mark.parametrize("allow", ["aep", "rbench-fake-a", " aep , ", "RBench_Fake.A"])
def test_allow_list_by_entry_point_or_distribution_name(three, monkeypatch, allow):
    monkeypatch.setenv("RBENCH_PLUGINS", allow)
    registry = build_registry()
    assert _third_party(registry) == {"attack_a"}
    assert {"pgd", "fgsm"} <= _names(registry, "attack") and registry.plugins["model"]
    assert not three.exists()


def test_allow_list_with_several_names(three, monkeypatch):
    monkeypatch.setenv("RBENCH_PLUGINS", "aep,rbench-fake-c")
    assert _third_party(build_registry()) == {"attack_a", "attack_c"}


@pytest.mark.parametrize("deny", ["cep", "rbench-fake-c", "cep, bep"])
def test_deny_list_by_entry_point_or_distribution_name(three, monkeypatch, deny):
    monkeypatch.setenv("RBENCH_DISABLE_PLUGINS", deny)
    registry = build_registry()
    assert "attack_c" not in _third_party(registry) and "attack_a" in _third_party(registry)
    assert ("attack_b" in _third_party(registry)) == ("bep" not in deny)
    assert not three.exists()


@pytest.mark.parametrize(("var", "value", "named", "hint"), [
    ("RBENCH_PLUGINS", "aep,nonexistent", "nonexistent", "; known: "),
    ("RBENCH_DISABLE_PLUGINS", "rbench-fake-cc", "rbench-fake-cc", "did you mean 'rbench-fake-c'?"),
])
def test_a_list_name_nothing_installed_has_is_refused_before_any_plugin_loads(three, monkeypatch, var, value,
                                                                               named, hint):
    monkeypatch.setenv(var, value)  # a misspelt deny-list would otherwise leave rbench-fake-c loaded
    with pytest.raises(PluginError) as err:
        build_registry()
    message = str(err.value)
    assert message.startswith(f"{var} names {named!r}, which is neither an installed distribution") and hint in message
    assert "\n" not in message and not three.exists()


def test_a_bad_plugin_list_is_one_line_from_the_cli(monkeypatch, capsys):
    from support import cli_in_process

    monkeypatch.setattr(manager, "_registry", None)  # the process-wide registry is built from the lists once
    monkeypatch.setenv("RBENCH_DISABLE_PLUGINS", "attack")
    code, err = cli_in_process(capsys, "plugins")
    assert code == 2
    assert err.strip().splitlines() == [
        "rbench: error: RBENCH_DISABLE_PLUGINS names 'attack', which is neither an installed distribution nor an "
        "entry point of the group 'rbench'; did you mean 'attacks'?"]


def test_an_unknown_plugin_error_says_what_the_lists_left_out(three, monkeypatch):
    monkeypatch.setenv("RBENCH_PLUGINS", "")
    with pytest.raises(PluginError) as err:
        build_registry().get("attack", "attack_c")
    assert str(err.value).endswith("(3 entry points not loaded because of RBENCH_PLUGINS or RBENCH_DISABLE_PLUGINS: "
                                   "rbench-fake-a:aep, rbench-fake-b:bep, rbench-fake-c:cep)")
    monkeypatch.delenv("RBENCH_PLUGINS")
    with pytest.raises(PluginError) as err:
        build_registry().get("attack", "attack_x")
    assert "not loaded because" not in str(err.value)


def test_deny_list_wins_over_allow_list(three, monkeypatch):
    monkeypatch.setenv("RBENCH_PLUGINS", "aep,bep")
    monkeypatch.setenv("RBENCH_DISABLE_PLUGINS", "rbench-fake-b")
    assert _third_party(build_registry()) == {"attack_a"}


def test_deny_list_can_disable_a_builtin_entry_point(monkeypatch):
    monkeypatch.setenv("RBENCH_PLUGINS", "")
    monkeypatch.setenv("RBENCH_DISABLE_PLUGINS", "attacks")
    registry = build_registry()
    assert registry.plugins["attack"] == {}
    assert registry.plugins["model"] and registry.plugins["dataset"]
    monkeypatch.setenv("RBENCH_DISABLE_PLUGINS", BUILTIN_DISTRIBUTION)
    assert all(not by_name for by_name in build_registry().plugins.values())


# -- lookups ----------------------------------------------------------------------------------------------
def test_unknown_plugin_gets_a_did_you_mean_suggestion():
    registry = build_registry()
    with pytest.raises(PluginError, match=r"unknown attack plugin 'pgdd'; did you mean 'pgd'\?"):
        registry.get("attack", "pgdd")
    with pytest.raises(PluginError, match=r"did you mean 'mnist'\?"):
        registry.get("dataset", "mnits")
    with pytest.raises(PluginError, match=r"unknown model plugin 'zzzzzz'; known: .*lenet.*mlp"):
        registry.get("model", "zzzzzz")
    with pytest.raises(PluginError, match=r"unknown plugin kind 'attacks'; kinds are: dataset, model"):
        registry.get("attacks", "pgd")


def test_unknown_plugin_of_an_empty_kind(monkeypatch):
    monkeypatch.setenv("RBENCH_DISABLE_PLUGINS", "defenses")  # the entry point of the built-in defenses
    with pytest.raises(PluginError, match="unknown defense plugin 'jpeg'; none is registered"):
        build_registry().get("defense", "jpeg")


def test_suggest():
    assert suggest("fgms", ["fgsm", "pgd"]) == "; did you mean 'fgsm'?"
    assert suggest("xyz", ["b", "a"]) == "; known: a, b"
    assert suggest("xyz", []) == "; none is registered"


SCALED_FGSM = '''
from rbench import hookimpl
from rbench.plugins.attacks.fast_gradient import Fgsm

SCALE = 1.0


class Scaled(Fgsm):
    name = "scaled_fgsm"

    def run(self, model, x, y, params, *, generator=None):
        return super().run(model, x, y, params.model_copy(update={"eps": params.eps * SCALE}), generator=generator)


@hookimpl
def rbench_attacks():
    return [Scaled()]
'''


def test_an_editable_plugin_is_keyed_on_its_source_so_an_edit_is_never_served_stale(tiny_reference, tmp_path):
    """Installed editable (pip install -e), a plugin's jobs are keyed on its package's source too: editing the
    code without bumping the version computes them afresh; a copy installed without pip's RECORD is keyed on its
    version alone (pip's record of a released install: tests/test_example_plugin.py)."""
    import json
    import shutil

    from support import mlp_suite, plugin_dist, rbench, run_values

    suite, store, _, _ = tiny_reference
    shutil.copytree(store, tmp_path / "store")
    text = mlp_suite(suite, '[attacks.scaled]\nplugin = "scaled_fgsm"\nparams = { eps = 0.3 }\n', ["mlp"], ["scaled"])
    (tmp_path / "suite.toml").write_text(text)
    folder = tmp_path / "plugins"

    def run(name: str) -> tuple[str, float, str]:
        out = rbench("run", str(tmp_path / "suite.toml"), "--store", str(tmp_path / "store"), "--run-dir",
                     str(tmp_path / name), "-q", env=env)
        assert out.returncode == 0, out.stderr
        calls = json.loads((tmp_path / name / "results.json").read_text())["provenance"]["plugins"]
        version = calls["attack scaled_fgsm"].split(" ")[0]  # "0.1+src.<digest> (rbench_test_scaled)"
        return out.stdout.split("jobs: ")[-1].split(";")[0], run_values(tmp_path / name)[
            ("errors", "scaled", "mlp")], version

    env = plugin_dist(folder, "rbench_test_scaled", SCALED_FGSM, editable=True)
    done, strong, version = run("a")
    assert "done" in done and version.startswith("0.1+src.")
    assert run("b")[:2] == ("4 cached", strong)  # nothing changed: everything from the store
    source = folder / "rbench_test_scaled.py"
    source.write_text(source.read_text().replace("SCALE = 1.0", "SCALE = 0.1"))
    done, weak, edited = run("c")
    assert "2 done" in done and edited != version and weak < strong  # the attack and its eval, afresh
    (folder / "rbench_test_scaled-0.1.dist-info" / "direct_url.json").unlink()  # released, no RECORD
    source.write_text(source.read_text().replace("SCALE = 0.1", "SCALE = 0.5"))
    done, _, released = run("d")
    assert released == "0.1" and "done" in done
    source.write_text(source.read_text().replace("SCALE = 0.5", "SCALE = 0.2"))
    assert run("e")[0] == "4 cached"  # keyed on the version alone: bump it to recompute (as documented)


def test_the_source_digest_reads_regular_files_only_and_follows_helpers(tmp_path, monkeypatch):
    """An editor's lock file (.#mod.py, a dangling link) made every command fail; a single-module plugin's helper
    beside it, or a package plugin's sibling module (src/utils.py beside src/mypkg/), or a data file inside its
    package (a defaults.json), was not hashed, so an edit there was served stale."""
    import importlib
    import sys

    from rbench.editable import package_files, source_digest

    project = tmp_path / "a"
    pkg = project / "devpkg_a"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("import devutil_a\n")
    (pkg / ".#__init__.py").symlink_to(tmp_path / "nowhere")
    (project / "devutil_a.py").write_text("SCALE = 0.5\n")  # a sibling top-level module of the same project
    (project / "otherpkg").mkdir()
    (project / "otherpkg" / "__init__.py").write_text("")
    (project / "venv" / "lib").mkdir(parents=True)  # no package: not read
    (project / "venv" / "lib" / "big.py").write_text("")
    (tmp_path / "devmod_b.py").write_text("import devhelper_b\n")
    (tmp_path / "devhelper_b.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(project))
    importlib.import_module("devpkg_a")
    importlib.import_module("devmod_b")
    try:
        root, files = package_files("devpkg_a")
        assert [str(f.relative_to(root)) for f in files] == ["devpkg_a/__init__.py", "devutil_a.py",
                                                             "otherpkg/__init__.py"]
        before_a = source_digest("devpkg_a")
        (pkg / "defaults.json").write_text('{"scale": 0.5}')  # a data file the package reads: keyed too
        (pkg / "__pycache__").mkdir(exist_ok=True)  # the import may have made it
        (pkg / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")  # byte-code: not
        source_digest.cache_clear()
        assert [f.name for f in package_files("devpkg_a")[1]] == ["__init__.py", "defaults.json", "devutil_a.py",
                                                                  "__init__.py"]
        assert source_digest("devpkg_a") != before_a
        before_a = source_digest("devpkg_a")
        (project / "devutil_a.py").write_text("SCALE = 1.0\n")
        source_digest.cache_clear()
        assert source_digest("devpkg_a") != before_a  # an edit of the sibling module is a new version
        before = source_digest("devmod_b")
        assert "devhelper_b.py" in [f.name for f in package_files("devmod_b")[1]]
        (tmp_path / "devhelper_b.py").write_text("Y = 2\n")
        source_digest.cache_clear()
        assert source_digest("devmod_b") != before
    finally:
        for name in ("devpkg_a", "devutil_a", "devmod_b", "devhelper_b"):
            sys.modules.pop(name, None)
        source_digest.cache_clear()


def test_a_job_whose_key_names_another_plugin_version_is_refused_where_it_runs():
    """A Ray node with another version of a plugin installed than the driver's computed under the driver's key
    (the store then served it as the driver's version's): the plugin a job resolves must be the version and
    distribution its key names."""
    from rbench.inputs import plugin_params
    from rbench.manager import get_registry
    from rbench.specs import Call

    info = get_registry().get("attack", "fgsm")
    plugin, params = plugin_params("attack", Call("fgsm", info.version, {"eps": 0.1}))
    assert plugin is info.obj and params.eps == 0.1
    assert plugin_params("attack", {"plugin": "fgsm", "params": {"eps": 0.1}})[0] is info.obj  # no version named
    from rbench.inputs import build_model, model_of_checkpoint

    class Store:  # the only part of a store model_of_checkpoint touches on failure
        def quarantine(self, key: str, reason: str) -> Exception:
            raise AssertionError(f"{key} quarantined: {reason}")

    mlp = get_registry().get("model", "mlp").version
    state = build_model({"plugin": "mlp", "version": mlp, "params": {}}).state_dict()
    other = {"spec": {"model": {"plugin": "mlp", "version": mlp + ".post1", "params": {}}}}
    with pytest.raises(PluginError, match="but the job's key names"):  # the stored checkpoint is not at fault
        model_of_checkpoint(Store(), "k", state, other, "cpu")
    for call in (Call("fgsm", info.version + ".post1", {"eps": 0.1}),
                 Call("fgsm", info.version, {"eps": 0.1}, distribution="rbench-fork")):
        with pytest.raises(PluginError, match=rf"attack 'fgsm': this process \(on .+\) has version {info.version} "
                                              r"from 'rbench', but the job's key names .* install the same version"):
            plugin_params("attack", call)



def test_trace_shows_each_registration_hook_call():
    """RBENCH_TRACE_PLUGINS=1 printed nothing for ``rbench plugins``: the registration hooks are called per module
    (to credit each plugin to its distribution), outside pluggy's tracing."""
    from support import rbench

    out = rbench("plugins", "--kind", "reporter", env={"RBENCH_TRACE_PLUGINS": "1"})
    assert out.returncode == 0, out.stderr
    assert "rbench:reporters rbench_reporters() -> ['md', 'csv'" in out.stderr, out.stderr
    assert "rbench_reporters() ->" not in rbench("plugins", "--kind", "reporter").stderr
