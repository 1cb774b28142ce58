"""Suites: TOML files declaring datasets, models, attacks, evaluations and tables.

Loading a suite (:func:`load_suite`) reads the TOML with :mod:`tomllib` (refusing any number that is not finite,
in every file), applies the chosen profile, follows ``include`` (cycles are errors), merges the included suites,
validates the structure with pydantic and every plugin's parameters against the plugin's ``Params``, checks every
reference -- the names a metric's params give too, where the metric declares them (:class:`Reference`) --, loads
every published-table file and checks that each table, row and column it names is the suite's, and checks every
``n``, ``n_train`` and ``parts`` against the split's size where the dataset plugin knows it (``Dataset.size``). Any
problem raises a :class:`~rbench.errors.SuiteError` whose one-line message names the file, the key path (e.g.
``attacks.pgd.params.eps``), the value and the rule, before any work starts.

The parts: the file schema and its limits (:mod:`rbench.suite_schema`), reading and merging the files
(:mod:`rbench.suite_files`), the resolved forms (:mod:`rbench.suite_types`, re-exported here); this module
resolves the merged entries into a :class:`Suite`.

The format is documented in README.md ("Writing a suite").
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rbench.attack import attack_problem, is_generator
from rbench.errors import PluginError, RbenchError, SuiteError
from rbench.manager import Registry, call_version, get_registry, suggest
from rbench.metric import CellPlace, Reference, declared_cell_problem, declared_references
from rbench.suite_files import Merged, merge_files, suite_profiles
from rbench.suite_leakage import leakage_warnings
from rbench.suite_refs import other_images, percentage_problem, published_mismatch, reference_problem
from rbench.suite_schema import (
    MAX_GRID,
    AttackSpec,
    DatasetSpec,
    DefenseSpec,
    EvaluationSpec,
    MetricRef,
    ModelSpec,
    MonitorSpec,
    Selector,
    SuiteMeta,
    TableSpec,
    TrainedSpec,
    TrainerSpec,
    broken_default,
    ignored_key_problem,
    non_finite_param,
    pydantic_problem,
)
from rbench.suite_seeds import expand_seeds
from rbench.suite_types import (
    AttackCall,
    CellSpec,
    DataRef,
    Defended,
    DefenseEntry,
    Evaluation,
    Metric,
    Model,
    Monitor,
    PluginCall,
    Suite,
    Table,
    instance_label,
    threat_note,
)
from rbench.tomlfile import key_part

#: what other modules read here: the loader and the resolved forms (defined in :mod:`rbench.suite_types`)
__all__ = ["AttackCall", "CellSpec", "DataRef", "Defended", "DefenseEntry", "Evaluation", "Metric", "Model", "Monitor",
           "PluginCall", "Suite", "Table", "instance_label", "load_suite", "suite_profiles", "threat_note"]

def load_suite(path: str | Path, profile: str | None = None, registry: Registry | None = None) -> Suite:
    """Load, merge and validate the suite at ``path`` (with ``profile`` applied); see the module docstring. A
    problem only the profile brings says so (its keys are reported where they land in the merged suite)."""
    try:
        meta, merged = merge_files(path, profile)
        return _Resolver(registry or get_registry(), merged, meta, profile).resolve()
    except SuiteError as exc:
        if profile is None or "profiles." in str(exc):
            raise
        try:
            load_suite(path, None, registry)
        except RbenchError:
            raise exc from None
        raise SuiteError(f"{exc} (set by profile {profile!r}: the suite without it is valid)") from None


class _Resolver:
    def __init__(self, registry: Registry, merged: Merged, meta: SuiteMeta, profile: str | None):
        self.registry, self.merged, self.meta, self.profile = registry, merged, meta, profile
        self.used: dict[tuple[str, str], tuple[str, str]] = {}  # every plugin called: Suite.plugins
        self._axis_values: dict[str, dict[str, dict[str, None]]] = {}  # see axis_values

    def where(self, section: str, name: str) -> str:
        return self.merged.origin[(section, name)]

    def fail(self, section: str, name: str, rest: str, problem: str) -> SuiteError:
        """The error at ``section.name.rest``; a replica of a model with ``seeds`` is named by its model's key, as
        the file has it, and its seed (:mod:`rbench.suite_seeds`)."""
        group = self.merged.replica_of.get(name) if section == "models" else None
        path = ".".join(p for p in (section, group or name, rest) if p)
        seed = f" (seed {name.rsplit('@', 1)[1]}: model {name!r})" if group else ""
        return SuiteError(f"{self.where(section, name)}: {path}: {problem}{seed}")

    def ref(self, section: str, name: str, key: str, target_section: str, value: str) -> None:
        known = self.merged.sections[target_section]
        if value not in known:
            raise self.fail(section, name, key, f"no {target_section[:-1]} named {value!r}"
                            f"{suggest(value, known)}")

    def call(self, kind: str, plugin: str, params: dict[str, Any], section: str, name: str, key: str
             ) -> PluginCall:
        at = f"{key}plugin" if key else "plugin"  # the key path of the plugin's name, for messages
        try:
            info = self.registry.get(kind, plugin)
        except PluginError as exc:
            raise self.fail(section, name, at, str(exc)) from None  # it names the plugin
        base = Path(self.where(section, name)).parent  # where a plugin's relative file paths start
        ignored = ignored_key_problem(info.obj.Params, params)
        if ignored is not None:
            raise self.fail(section, name, f"{key}params.{key_part(ignored[0])}", f"{kind} plugin {plugin!r}: "
                            f"{ignored[1]}")
        try:
            validated = info.obj.Params.model_validate(params, strict=True, context={"base": base})
        except ValidationError as err:
            raise pydantic_problem(self.where(section, name), f"{section}.{name}.{key}params", err,
                                    info.obj.Params) from None
        bad = non_finite_param(validated)
        if bad is not None:
            where = "a default" if bad[0].split(".")[0] not in validated.model_fields_set else "a value"
            raise self.fail(section, name, f"{key}params.{bad[0]}", f"{bad[1]} is not a finite number ({where} of "
                            f"{kind} plugin {plugin!r}): parameters enter the job's key and results.json, which "
                            "hold finite numbers only")
        problem = broken_default(info.obj.Params, validated, base) or (
            attack_problem(info.obj, validated) if kind == "attack" else None)
        version = info.version
        try:
            version = call_version(info.obj, info.version, validated)
        except ValueError as exc:
            problem = problem or str(exc)
        if problem is not None:  # the plugin's bug, found before any work instead of in every job that uses it
            raise self.fail(section, name, at, f"{kind} plugin {plugin!r} (distribution {info.distribution!r}) "
                            f"{problem}")
        self.used[(kind, plugin)] = (info.version, info.distribution)
        return PluginCall(kind, plugin, version, validated, info.distribution)

    def data(self, section: str, name: str, spec: TrainedSpec | EvaluationSpec | MonitorSpec, prefix: str = ""
             ) -> DataRef:
        assert spec.dataset is not None  # the callers reject a spec without one first
        self.ref(section, name, f"{prefix}dataset", "datasets", spec.dataset)
        dspec: DatasetSpec = self.merged.sections["datasets"][spec.dataset]
        call = self.call("dataset", dspec.plugin, dspec.params, "datasets", spec.dataset, "")
        splits = call.obj.splits
        if spec.split not in splits:
            raise self.fail(section, name, f"{prefix}split", f"dataset {spec.dataset!r} has no split {spec.split!r}"
                            f"{suggest(spec.split, splits)}")
        if spec.parts is not None and spec.part >= len(spec.parts):
            raise self.fail(section, name, f"{prefix}part",
                            f"{spec.part} is not an index of parts (0..{len(spec.parts) - 1})")
        if spec.parts is None and spec.part:
            raise self.fail(section, name, f"{prefix}part", "needs 'parts'")
        n = spec.n_train if isinstance(spec, TrainedSpec) else spec.n
        parts = tuple(spec.parts) if spec.parts is not None else None
        self.check_size(section, name, spec, call, n, prefix)
        return DataRef(spec.dataset, call, spec.split, n, parts, spec.part)

    def check_size(self, section: str, name: str, spec: TrainedSpec | EvaluationSpec | MonitorSpec,
                   call: PluginCall, n: int | None, prefix: str = "") -> None:
        """``n`` / ``n_train`` and ``parts`` against the split's size (when the dataset plugin knows it without
        decoding the split, ``Dataset.size``), and ``n`` against the size of the part it is drawn from."""
        n_key = prefix + ("n_train" if isinstance(spec, TrainedSpec) else "n")
        where = f"{spec.dataset}/{spec.split}"
        if call.name != spec.dataset:
            where += f" (plugin {call.name})"
        if spec.parts is not None and n is not None and n > spec.parts[spec.part]:
            raise self.fail(section, name, n_key, f"{n} exceeds the {spec.parts[spec.part]} images of part "
                            f"{spec.part} (parts = {spec.parts}) of {where}")
        size_of = getattr(call.obj, "size", None)
        total = size_of(spec.split, call.params) if callable(size_of) else None
        if total is None:
            return
        if spec.parts is not None and sum(spec.parts) > total:
            raise self.fail(section, name, f"{prefix}parts", f"{spec.parts} add up to {sum(spec.parts)}, more than the "
                            f"{total} images of {where}")
        if n is not None and n > total:
            raise self.fail(section, name, n_key, f"{n} exceeds the {total} images of {where}")

    def resolve(self) -> Suite:
        expand_seeds(self.merged, self.fail)
        s = self.merged.sections
        suite = Suite(self.meta.name, self.meta.title, self.meta.seed, self.merged.files, self.profile,
                      list(self.merged.published), self.meta.job_timeout, self.meta.precision,
                      description=self.meta.description)
        if self.merged.overridden:
            suite.warnings[""] = list(self.merged.overridden)
        for name, d in s["defenses"].items():
            suite.defenses[name] = self.defense(name, d)
        for name, m in s["models"].items():
            for i, member in enumerate(m.members):
                self.ref("models", name, f"members[{i}]", "models", member)
            suite.models[name] = self.defended(name, m, suite) if m.defenses else self.model(name, m)
        for name in suite.models:
            self.member_cycle(suite, name, [])
        for name, m in s["models"].items():  # after the cycles: a cycle of defended models is said as one
            self.no_inner_defenses(name, m)
        for name, model in suite.models.items():
            self.check_init(suite, name, model)
        attacks: dict[str, dict[str, AttackCall]] = {}
        for name in s["attacks"]:
            self.attack_instances(name, attacks, [])
        self.check_attack_labels(attacks)
        for name, e in s["evaluations"].items():
            for key in ("sources", "targets", "attacks"):
                listed = getattr(e, key)
                if isinstance(listed, list | tuple) and len(set(listed)) != len(listed):
                    twice = next(v for v in listed if listed.count(v) > 1)
                    raise self.fail("evaluations", name, key, f"{twice!r} is listed twice")
            for i, src in enumerate(e.sources):
                self.ref("evaluations", name, f"sources[{i}]", "models", src)
            targets = None if e.targets == "self" else tuple(e.targets)
            for i, tgt in enumerate(targets or ()):
                self.ref("evaluations", name, f"targets[{i}]", "models", tgt)
            instances: dict[str, AttackCall] = {}
            for i, att in enumerate(e.attacks):
                self.ref("evaluations", name, f"attacks[{i}]", "attacks", att)
                instances.update(attacks[att])
            suite.evaluations[name] = Evaluation(name, self.data("evaluations", name, e), tuple(e.sources),
                                                 instances, targets, e.batch_size, e.threat_model, e.bpda, e.eot,
                                                 e.per_class, "batch_size" in e.model_fields_set)
            self.check_threat(suite, name, e)
            for text in leakage_warnings(suite, name):
                self.warn(suite, name, text)
        self.check_adaptive_coverage(suite)
        for name, t in s["tables"].items():
            suite.tables[name] = self.table(name, t, suite)
        self.check_published(suite)
        suite.plugins = dict(sorted(self.used.items()))
        suite.published_docs = {path: doc.model_dump(mode="json") for _, _, path, doc in self.merged.published_docs}
        return suite

    def check_published(self, suite: Suite) -> None:
        """Every table, row and column a published file names (its values, column tolerances and claims) is one
        of the suite's, and its numbers beside cells in % are percentages: a table's rows, columns and metrics are
        known without running anything."""
        shapes = {name: t.shape() for name, t in suite.tables.items()}

        def units(table: str, row: str, column: str) -> str | None:
            t = suite.tables[table]
            spec = t.cells.get((t.rows[0] if row == t.mean_row else row, t.columns[0] if column == t.mean_column
                                else column))  # a mean's cells hold the metric of the line they average
            return None if spec is None else spec.metric.call.obj.unit

        for file, i, path, published in self.merged.published_docs:
            problem = published_mismatch(published, shapes) or percentage_problem(published, units)
            if problem is not None:
                raise SuiteError(f"{file}: suite.published[{i}]: {path}: {problem}")

    def member_cycle(self, suite: Suite, name: str, stack: list[str]) -> None:
        """No model may be made of itself: through members, a defended model's base, or ``init``."""
        if name in stack:
            key = "members" if suite.models[stack[0]].members else "base" if suite.models[stack[0]].defended \
                else "init"
            raise self.fail("models", stack[0], key, "composition cycle: " + " -> ".join([*stack, name]))
        model = suite.models[name]
        parts = [*model.members, *([model.defended.base] if model.defended and model.defended.base else []),
                 *([model.init] if model.init else [])]
        for part in parts:
            self.member_cycle(suite, part, [*stack, name])

    def trained_data(self, section: str, name: str, spec: TrainedSpec, plugin: str, what: str,
                     default_trainer: str = "standard") -> tuple[PluginCall, DataRef]:
        """The trainer and data of a trained model or defense component (both required)."""
        if spec.dataset is None:
            raise self.fail(section, name, "dataset", f"required: {what} {plugin!r} is trained on a dataset")
        trainer = spec.trainer or TrainerSpec(plugin=default_trainer)
        call = self.call("trainer", trainer.plugin, trainer.params, section, name, "trainer.")
        return call, self.data(section, name, spec)

    def model(self, name: str, m: ModelSpec) -> Model:
        if m.plugin is None:
            raise self.fail("models", name, "plugin", "required (or 'defenses' for a defended model)")
        for key in ("base", "undefended"):
            if getattr(m, key) is not None:
                raise self.fail("models", name, key, "only a defended model (with 'defenses') takes it")
        call = self.call("model", m.plugin, m.params, "models", name, "")
        composes = callable(getattr(call.obj, "compose", None))
        if composes != bool(m.members):
            raise self.fail("models", name, "members", f"model plugin {m.plugin!r} " + (
                "is composed of trained members: list them in 'members'" if composes
                else "takes no members (it is built, not composed)"))
        count = getattr(call.obj, "members_count", None)
        if composes and count is not None and len(m.members) != count:
            seeded = {self.merged.replica_of[r] for r in m.members if r in self.merged.replica_of}
            why = f" ({', '.join(repr(s) for s in sorted(seeded))} stands for a model per seed)" if seeded else ""
            raise self.fail("models", name, "members", f"model plugin {m.plugin!r} takes exactly {count} "
                            f"member{'s' * (count != 1)}, not {len(m.members)}{why}")
        if m.init is not None:
            self.ref("models", name, "init", "models", m.init)
        trainer, data = self.trained_data("models", name, m, m.plugin, "model",
                                          getattr(call.obj, "default_trainer", "standard"))
        self.same_shape("models", name, call, data)
        check = getattr(call.obj, "check", None)
        if callable(check):  # e.g. a checkpoint's network must map the dataset's inputs to its classes
            dataset = data.call.obj
            try:
                check(call.params, tuple(dataset.input_shape), int(dataset.num_classes))
            except ValueError as exc:
                raise self.fail("models", name, "params", " ".join(str(exc).split())) from None
        if not composes:
            self.fits_in_memory(name, call)
        return Model(name, call, trainer, data, tuple(m.members), m.init, m.seed,
                     monitor=None if m.monitor is None else self.monitor(name, m.monitor, trainer))

    def same_shape(self, section: str, name: str, call: PluginCall, data: DataRef) -> None:
        """A plugin whose params give an ``input_shape`` (the built-in networks and the DAE do) takes its dataset's
        inputs: ``input_shape = [1, 16, 16]`` on MNIST passed validation and failed inside the training job."""
        shape = getattr(call.params, "input_shape", None)
        wanted = tuple(data.call.obj.input_shape)
        if isinstance(shape, list | tuple) and tuple(shape) != wanted:
            raise self.fail(section, name, "params.input_shape", f"{list(shape)}, but dataset "
                            f"{data.dataset!r} has inputs of shape {list(wanted)}")

    def fits_in_memory(self, name: str, call: PluginCall) -> None:
        """Refuse a model whose weights alone outgrow this machine's memory (``widths = [100000000000]``): it
        would pass validation and fail only when its training job allocates them."""
        from rbench.model import machine_memory, weights_bytes

        size, memory = weights_bytes(call.obj, call.params), machine_memory()
        if size is not None and memory is not None and size > memory:
            raise self.fail("models", name, "params", f"its weights alone take {size / 2**30:.3g} GiB, more than "
                            f"this machine's {memory / 2**30:.3g} GiB of memory")

    def monitor(self, name: str, spec: MonitorSpec, trainer: PluginCall) -> Monitor:
        if not getattr(trainer.obj, "observes", False):
            raise self.fail("models", name, "monitor", f"trainer {trainer.name!r} does not observe epochs; "
                            "a monitored model needs one that does (e.g. 'standard')")
        probes: dict[str, PluginCall] = {}
        for i, p in enumerate(spec.probes):
            label = p.label or p.plugin
            if label in probes:
                raise self.fail("models", name, f"monitor.probes[{i}].label", f"{label!r} is used twice; give each "
                                "probe of one plugin its own label")
            probes[label] = self.call("probe", p.plugin, p.params, "models", name, f"monitor.probes[{i}].")
        return Monitor(self.data("models", name, spec, "monitor."), probes, spec.every)

    def defense(self, name: str, d: DefenseSpec) -> DefenseEntry:
        call = self.call("defense", d.plugin, d.params, "defenses", name, "")
        plugin = call.obj
        trained, aggregates = bool(getattr(plugin, "trained", False)), bool(getattr(plugin, "aggregates", False))
        entry = DefenseEntry(name, call, bool(plugin.is_differentiable(call.params)),
                             bool(plugin.is_randomized(call.params)), trained, aggregates, seed=d.seed)
        if not trained:
            for key in ("dataset", "n_train", "trainer", "parts", "seed"):
                if getattr(d, key) is not None:
                    raise self.fail("defenses", name, key, f"defense {d.plugin!r} is not trained: it takes no {key}")
            return entry
        trainer, data = self.trained_data("defenses", name, d, d.plugin, "defense")
        self.same_shape("defenses", name, call, data)
        return DefenseEntry(**{**vars(entry), "trainer": trainer, "data": data})

    def defended(self, name: str, m: ModelSpec, suite: Suite) -> Model:
        for key in ("plugin", "dataset", "n_train", "trainer", "parts", "init", "seed", "monitor"):
            if getattr(m, key) is not None:
                raise self.fail("models", name, key, "a defended model is assembled from trained parts (its base or "
                                f"members, its defenses): it takes no {key}")
        if m.params:
            raise self.fail("models", name, "params", "a defended model takes no params (its defenses have them)")
        for i, d in enumerate(m.defenses):
            self.ref("models", name, f"defenses[{i}]", "defenses", d)
            if suite.defenses[d].aggregates and i != len(m.defenses) - 1:
                raise self.fail("models", name, f"defenses[{i}]", f"{d!r} aggregates members: it must come last")
        aggregates = suite.defenses[m.defenses[-1]].aggregates
        if aggregates:
            if not m.members:
                raise self.fail("models", name, "members", f"defense {m.defenses[-1]!r} aggregates trained models: "
                                "list at least one in 'members'")
            if m.base is not None:
                raise self.fail("models", name, "base", f"defense {m.defenses[-1]!r} aggregates 'members': no base")
        else:
            if m.base is None:
                raise self.fail("models", name, "base", "required: the trained model these defenses protect")
            if m.members:
                raise self.fail("models", name, "members", "only an aggregating defense (a committee) takes members")
            self.ref("models", name, "base", "models", m.base)
        undefended = m.undefended or m.base
        if m.undefended is not None:
            self.ref("models", name, "undefended", "models", m.undefended)
            if self.merged.sections["models"][m.undefended].defenses:
                what = "the model itself" if m.undefended == name else f"{m.undefended!r} has defenses too"
                raise self.fail("models", name, "undefended", f"{what}: name a model without defenses (transferred "
                                "attacks are crafted on it)")
        return Model(name, None, None, None, tuple(m.members), defended=Defended(tuple(m.defenses), m.base,
                                                                                    undefended))

    def no_inner_defenses(self, name: str, m: ModelSpec) -> None:
        """Refuse a defended model as ``m``'s base or member: BPDA, EOT, the threat notes and the model transfer
        attacks are crafted on follow a source's own chain of defenses (:meth:`Suite.chain_of`), so one inside a
        part went unseen (a committee with a bit-depth member was attacked without BPDA, its zero gradients
        passing the masking check beside an undefended member's)."""
        parts = [("base", m.base)] if m.base is not None else []
        parts += [(f"members[{i}]", member) for i, member in enumerate(m.members)]
        for key, part in parts:
            if self.merged.sections["models"][part].defenses:
                fix = "list all the defenses in this model's 'defenses', in order, on an undefended base" \
                    if key == "base" else "give members without defenses"
                raise self.fail("models", name, key, f"{part!r} has defenses of its own, which BPDA, EOT and "
                                "transfer attacks would not see (they follow this model's own chain): " + fix)

    def check_init(self, suite: Suite, name: str, model: Model) -> None:
        """A model trained from another starts from its weights: same plugin and params."""
        if model.init is None:
            return
        start = suite.models[model.init]
        if start.call is None or model.call is None or start.call.spec() != model.call.spec() or start.members:
            raise self.fail("models", name, "init", f"{model.init!r} must be a model of the same plugin and params "
                            "(its trained weights are the starting point)")

    def check_threat(self, suite: Suite, name: str, e: EvaluationSpec) -> None:
        """What a threat model needs: transfer needs an undefended model for every defended source; an adaptive
        gradient attack through a non-differentiable defense needs BPDA; EOT where no source is randomized is a
        warning (EOT applies to the randomized sources only)."""
        ev = suite.evaluations[name]
        for i, source in enumerate(ev.sources):
            chain = suite.chain_of(source)
            if not chain:
                continue
            if ev.threat_model == "transfer":
                if suite.models[source].defended.undefended is None:  # type: ignore[union-attr]
                    raise self.fail("evaluations", name, f"sources[{i}]", f"{source!r} has no undefended model to "
                                    "craft transferred attacks on: give it 'undefended = \"<model>\"'")
                continue
            stuck = [d.name for d in chain if not d.differentiable]
            if stuck and not ev.bpda:
                for label, attack in ev.attacks.items():
                    if attack.takes_gradients:
                        raise self.fail("evaluations", name, "bpda", f"attack {label!r} takes gradients through "
                                        f"the non-differentiable defense {stuck[0]!r} of {source!r}: set bpda = "
                                        "true (BPDA; threat_model = \"transfer\" attacks only its undefended "
                                        "model, a weaker test that is no robustness claim)")
        if ev.bpda and ev.threat_model == "adaptive" and not any(not d.differentiable for s in ev.sources
                                                                 for d in suite.chain_of(s)):
            self.warn(suite, name, ".bpda: true, but no source has a non-differentiable defense: every gradient "
                                   "is the defense's own (BPDA is not used)")
        if ev.eot > 1 and ev.threat_model == "adaptive" and not suite.randomized_sources(name):
            self.warn(suite, name, f".eot: {ev.eot} draws, but no source has a randomized defense: every draw "
                                   "would be the same (EOT is not used)")
        if ev.threat_model == "transfer" and (ev.eot > 1 or ev.bpda):  # the sets are crafted on undefended models
            given = " and ".join(k for k, on in (("eot", ev.eot > 1), ("bpda", ev.bpda)) if on)
            self.warn(suite, name, f": {given} set, but threat_model = \"transfer\" crafts the attacks on the "
                                   "undefended models, through no defense: not used")
        drawn = suite.single_draw_sources(name)
        if drawn:
            self.warn(suite, name, f".eot: 1 draw, but {', '.join(drawn)} "
                                   f"{'has a' if len(drawn) == 1 else 'have'} randomized defense"
                                   f"{'' if len(drawn) == 1 else 's'}: each gradient step sees one random draw, "
                                   "which can understate the attack and overstate the defense; set eot (e.g. 8) "
                                   "to average the gradients over draws (EOT)")

    def warn(self, suite: Suite, evaluation: str, text: str) -> None:
        """A warning about ``evaluation`` (kept with its tables under ``--only``): the suite file and
        ``evaluations.<name>``, then ``text`` (``.key: ...`` or ``: ...``)."""
        suite.warnings.setdefault(evaluation, []).append(
            f"{self.where('evaluations', evaluation)}: evaluations.{evaluation}{text}")

    def check_adaptive_coverage(self, suite: Suite) -> None:
        """A warning for each transfer evaluation with a defended source that no adaptive evaluation of the suite
        attacks: its attacks are crafted on the undefended model, a weaker test than one through the defense (a
        DAE measured 72.5% accurate under transferred PGD, 24.0% under adaptive PGD), and no robustness claim."""
        attacked = {s for ev in suite.evaluations.values() if ev.threat_model == "adaptive" for s in ev.sources}
        for name, ev in suite.evaluations.items():
            alone = [m for m in ev.scored() if suite.chain_of(m) and m not in attacked]
            if alone:
                self.warn(suite, name, f": {', '.join(map(repr, alone))} {'is' if len(alone) == 1 else 'are'} "
                                       "attacked only by transfer (attacks made on other models), by no adaptive "
                                       "evaluation through the defenses: a weaker test, no robustness claim (add "
                                       "an evaluation with threat_model = \"adaptive\" and it as a source)")

    def check_attack_labels(self, attacks: dict[str, dict[str, AttackCall]]) -> None:
        """Every attack instance's label (a table's row or column, the key its results are found by) is the
        suite's own: not "clean" (the clean inputs' row) and not the label of another attack's instance (an
        attack named ``"fgsm(eps=0.1)"`` beside a grid of ``fgsm`` over eps 0.1: one would be shown under the
        other's label and the other dropped)."""
        owner: dict[str, str] = {}
        for name, instances in attacks.items():
            for label in instances:
                if label == "clean":
                    raise self.fail("attacks", name, "", "'clean' names the clean inputs' row and column: give the "
                                    "attack another name")
                if label in owner:
                    raise self.fail("attacks", name, "", f"its instance {label!r} has the label of an instance of "
                                    f"attacks.{owner[label]}: rename one of them")
                owner[label] = name

    def attack_instances(self, name: str, done: dict[str, dict[str, AttackCall]], stack: list[str]) -> None:
        """Resolve attack ``name`` (and, first, the attack its transform reads) into ``done[name]``."""
        if name in done:
            return
        if name in stack:
            raise self.fail("attacks", name, "input", "transform cycle: " + " -> ".join([*stack, name]))
        spec: AttackSpec = self.merged.sections["attacks"][name]
        if (spec.plugin is None) == (spec.transform is None):
            raise self.fail("attacks", name, "plugin", "give exactly one of 'plugin' and 'transform'")
        base: tuple[str, AttackCall] | None = None
        kind, plugin = ("attack", spec.plugin) if spec.plugin else ("transform", spec.transform)
        assert plugin is not None  # exactly one of the two is given (checked above)
        if spec.transform is not None:
            if spec.input is None:
                raise self.fail("attacks", name, "input", "a transform needs 'input', the attack it transforms")
            self.ref("attacks", name, "input", "attacks", spec.input)
            self.attack_instances(spec.input, done, [*stack, name])
            if len(done[spec.input]) != 1:
                raise self.fail("attacks", name, "input", f"attack {spec.input!r} has a grid; transform one "
                                "instance (define it without a grid)")
            base = next(iter(done[spec.input].items()))
            if is_generator(base[1].call.obj):
                raise self.fail("attacks", name, "input", f"attack {spec.input!r} generates inputs from nothing: a "
                                "transform derives a set from clean inputs, which a generated set has none of")
        elif spec.input is not None:
            raise self.fail("attacks", name, "input", "only a 'transform' takes an input")
        points: list[dict[str, Any]] = [{}]
        if spec.grid:
            known = self.plugin_info(kind, plugin, "attacks", name).obj.Params.model_fields
            for key, values in spec.grid.items():
                if key not in known:
                    raise self.fail("attacks", name, f"grid.{key_part(key)}",
                                    f"not a parameter of {kind} {plugin!r}{suggest(key, known)}")
                if key in spec.params:
                    raise self.fail("attacks", name, f"grid.{key_part(key)}", "also given in params: give it in "
                                    "one place (the grid's values would replace it)")
                twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
                if twice is not None:
                    raise self.fail("attacks", name, f"grid.{key_part(key)}", f"{twice!r} is listed twice")
            keys = list(spec.grid)
            count = math.prod(len(spec.grid[k]) for k in keys)
            if count > MAX_GRID:
                raise self.fail("attacks", name, "grid", f"expands to {count} instances, more than {MAX_GRID}")
            points = [dict(zip(keys, v, strict=True)) for v in itertools.product(*(spec.grid[k] for k in keys))]
        out = {}
        for point in points:
            label = instance_label(name, point)
            call = self.call(kind, plugin, {**spec.params, **point}, "attacks", name, "")
            out[label] = AttackCall(call, base[1] if base else None, base[0] if base else None)
        done[name] = out

    def plugin_info(self, kind: str, plugin: str, section: str, name: str) -> Any:
        try:
            return self.registry.get(kind, plugin)
        except PluginError as exc:
            raise self.fail(section, name, "plugin", str(exc)) from None  # it names the plugin

    def metric(self, table: str, key: str, ref: str | MetricRef) -> Metric:
        ref = MetricRef(plugin=ref) if isinstance(ref, str) else ref
        call = self.call("metric", ref.plugin, ref.params, "tables", table, f"{key}.")
        label = ref.label or getattr(call.obj, "label", None) or ref.plugin
        if ref.params and not ref.label:
            label += " (" + ", ".join(f"{k}={v}" for k, v in ref.params.items()) + ")"
        return Metric(label, call, key)

    # -- tables -------------------------------------------------------------------------------------------
    def table(self, name: str, t: TableSpec, suite: Suite) -> Table:
        self.ref("tables", name, "evaluation", "evaluations", t.evaluation)
        if t.metric is not None and t.metrics is not None:
            raise self.fail("tables", name, "metric", "give exactly one of 'metric' and 'metrics'")
        refs = [t.metric] if t.metric is not None else list(t.metrics or [])
        if t.metrics is not None and not refs:
            raise self.fail("tables", name, "metrics", "must list at least one metric")
        key = "metric" if t.metric is not None else "metrics"
        metrics = [self.metric(name, key if t.metric is not None else f"{key}[{i}]", r) for i, r in enumerate(refs)]
        axes = [a for a in (t.rows, t.columns) if isinstance(a, str)]
        if len(axes) == 2 and t.rows == t.columns:
            raise self.fail("tables", name, "columns", f"rows and columns are both {t.rows!r}")
        if len(metrics) > 1 and "metric" not in axes:
            raise self.fail("tables", name, "metrics", "several metrics need rows or columns = 'metric'")
        for axis in t.where:
            if axis in axes:
                raise self.fail("tables", name, f"where.{axis}", f"{axis!r} is already the table's rows or columns")
        rows = self.lines(name, "rows", t.rows, t, suite, metrics)
        columns = self.lines(name, "columns", t.columns, t, suite, metrics)
        base: dict[str, tuple[str, str]] = {"evaluation": (t.evaluation, "evaluation")}
        base.update({axis: (value, f"where.{axis}") for axis, value in t.where.items()})
        cells = {}
        for r_label, r_coords, r_metric in rows:
            for c_label, c_coords, c_metric in columns:
                metric = c_metric or r_metric or (metrics[0] if len(metrics) == 1 else None)
                if metric is None:
                    raise self.fail("tables", name, "metric", f"no metric for cell ({r_label}, {c_label}): give "
                                    "'metric', or a metric in its row or column")
                cells[(r_label, c_label)] = self.cell(name, {**base, **r_coords, **c_coords}, metric, suite)
        self.check_references(name, cells, suite)
        title = t.title or name
        # once per evaluation, not per cell: a note reads every source of its evaluation
        notes = [n for ev in dict.fromkeys(c.evaluation for c in cells.values()) if (n := threat_note(suite, ev))]
        if notes:  # the threat model each evaluation used is part of what the numbers mean
            title += " [" + "; ".join(notes) + "]"
        row_labels, column_labels = tuple(r[0] for r in rows), tuple(c[0] for c in columns)
        for i, (a, b) in enumerate(t.paired):
            if not ({a, b} <= set(row_labels) or {a, b} <= set(column_labels)) or a == b:
                raise self.fail("tables", name, f"paired[{i}]", f"[{a!r}, {b!r}] are not two rows or two columns of "
                                f"the table (rows: {', '.join(row_labels)}; columns: {', '.join(column_labels)})")
            by_rows = a in row_labels and b in row_labels  # as rbench.assemble pairs them
            for line in column_labels if by_rows else row_labels:
                pair = (cells[(a, line)], cells[(b, line)]) if by_rows else (cells[(line, a)], cells[(line, b)])
                if problem := unpairable(pair, suite):
                    raise self.fail("tables", name, f"paired[{i}]", f"[{a!r}, {b!r}] at {line!r}: {problem}")
        self.check_means(name, t, row_labels, column_labels, cells)
        return Table(name, title, t.rows if isinstance(t.rows, str) else "rows",
                     t.columns if isinstance(t.columns, str) else "columns",
                     row_labels, column_labels, cells, self.where("tables", name),
                     t.figure if t.figure is None or isinstance(t.figure, str) else [str(f) for f in t.figure],
                     tuple((a, b) for a, b in t.paired), t.mean_row, t.mean_column)

    def check_means(self, name: str, t: TableSpec, rows: tuple[str, ...], columns: tuple[str, ...],
                    cells: dict[tuple[str, str], CellSpec]) -> None:
        """A mean row (column) needs two rows (columns) to average, a label of its own, and one metric along each
        column (row): a mean of an error rate and a distortion is no number."""
        if t.mean_row is not None and t.mean_column is not None:
            raise self.fail("tables", name, "mean_column", "give 'mean_row' or 'mean_column', not both (which "
                            "mean would their corner hold?)")
        for field_name, label, lines, others in (("mean_row", t.mean_row, rows, columns),
                                                 ("mean_column", t.mean_column, columns, rows)):
            if label is None:
                continue
            what = field_name.split("_")[1]
            if len(lines) < 2:
                plural = "s" * (len(lines) != 1)
                raise self.fail("tables", name, field_name, f"the table has {len(lines)} {what}{plural}: a mean "
                                "needs two")
            if label in lines:
                raise self.fail("tables", name, field_name, f"{label!r} is already one of the table's {what}s")
            for other in others:
                found = [cells[(line, other) if what == "row" else (other, line)].metric for line in lines]
                if any(m != found[0] for m in found[1:]):
                    raise self.fail("tables", name, field_name, f"the {what}s hold different metrics at {other!r} "
                                    f"({', '.join(dict.fromkeys(repr(m.label) for m in found))}): a mean needs one")

    def check_references(self, name: str, cells: dict[tuple[str, str], CellSpec], suite: Suite) -> None:
        """Every suite name the cells' metrics' params give (:class:`Reference`), for every cell; the first one
        wrong is a :class:`SuiteError` naming the param's key path (and the cell, where the problem is the cell's)."""
        declared: dict[int, list[Reference]] = {}  # id of a metric's call -> its references (cells share metrics)
        seen: set[tuple[int, str, str, str, str]] = set()  # (call, evaluation, source, attack, target) checked
        for (row, column), cell in cells.items():
            call = cell.metric.call
            if id(call) not in declared:
                declared[id(call)] = declared_references(call.obj, call.params)
            what = (id(call), cell.evaluation, cell.source, cell.attack, cell.target)
            if what in seen:
                continue
            seen.add(what)
            for ref in declared[id(call)]:
                problem = reference_problem(ref, cell, f"cell ({row}, {column})", suite)
                if problem is not None:
                    raise self.fail("tables", name, f"{cell.metric.key}.params.{ref.key}", problem)
            ev = suite.evaluations[cell.evaluation]
            generated = cell.attack != "clean" and is_generator(ev.attacks[cell.attack].call.obj)
            place = CellPlace(cell.evaluation, cell.source, cell.attack, cell.target, generated)
            try:
                problem = declared_cell_problem(call.obj, call.params, place)
            except Exception as exc:  # a plugin's bug: named, not an internal error
                raise PluginError(f"metric {call.name!r}: cell_problem raised {type(exc).__name__}: {exc}") from None
            if problem is not None and (not isinstance(problem, str) or "\n" in problem):
                raise PluginError(f"metric {call.name!r}: cell_problem returned {problem!r}, not one line of text")
            if problem is not None:
                raise self.fail("tables", name, f"{cell.metric.key}.params", f"cell ({row}, {column}): {problem}")

    def lines(self, name: str, key: str, spec: str | list[Selector], t: TableSpec, suite: Suite,
              metrics: list[Metric]) -> list[tuple[str, dict[str, tuple[str, str]], Metric | None]]:
        """The rows (or columns) of a table: (label, coordinates with their key paths, metric or None)."""
        if isinstance(spec, list):
            out = []
            for i, sel in enumerate(spec):
                coords = {axis: (value, f"{key}[{i}].{axis}") for axis, value in sel.model_dump().items()
                          if axis not in ("label", "metric") and value is not None}
                metric = None if sel.metric is None else self.metric(name, f"{key}[{i}].metric", sel.metric)
                out.append((sel.label, coords, metric))
            if len({label for label, _, _ in out}) != len(out):
                raise self.fail("tables", name, key, "two entries have the same label")
            return out
        if spec == "metric":
            if not metrics:
                raise self.fail("tables", name, "metrics", f"{key} = 'metric' needs a list of 'metrics'")
            return [(m.label, {}, m) for m in metrics]
        ev = suite.evaluations[t.evaluation]
        values = {"source": list(ev.sources),
                  "target": list(dict.fromkeys(x for s in ev.sources for x in ev.targets_of(s))),
                  "model": [s for s in ev.sources if s in ev.targets_of(s)],
                  "attack": (["clean"] if t.clean else []) + list(ev.attacks)}[spec]
        if not values:
            raise self.fail("tables", name, key, f"evaluation {t.evaluation!r} has no {spec} values "
                            "(no source is evaluated on itself)" if spec == "model" else "")
        return [(v, {spec: (v, key)}, None) for v in values]

    def axis_values(self, ev: Evaluation) -> dict[str, dict[str, None]]:
        """The sources, attack labels and targets of ``ev``, in order, each a dict for O(1) membership: made once
        per evaluation, not once per cell (a table of 10^4 cells would rescan them all for each)."""
        if ev.name not in self._axis_values:
            self._axis_values[ev.name] = {"source": dict.fromkeys(ev.sources),
                                          "attack": dict.fromkeys(("clean", *ev.attacks)),
                                          "target": dict.fromkeys(ev.targets or ())}
        return self._axis_values[ev.name]

    def cell(self, name: str, coords: dict[str, tuple[str, str]], metric: Metric, suite: Suite) -> CellSpec:
        """Complete and check one cell's coordinates; errors name the key path that set the bad value."""
        ev_name, ev_key = coords["evaluation"]
        self.ref("tables", name, ev_key, "evaluations", ev_name)
        ev = suite.evaluations[ev_name]
        if "model" in coords:
            for other in ("source", "target"):
                if other in coords:
                    raise self.fail("tables", name, coords[other][1].rsplit(".", 1)[0] if "[" in coords[other][1]
                                    else "where", "'model' (source = target) excludes 'source' and 'target'")
            coords = {**coords, "source": coords["model"], "target": coords["model"]}
        if "attack" not in coords:
            raise self.fail("tables", name, "where", "fix 'attack' (e.g. where = { attack = \"fgsm\" }) "
                            "or use it as rows or columns")
        if "source" not in coords:
            raise self.fail("tables", name, "where", "fix 'source' or 'model', or use one as rows or columns")
        if "target" not in coords:
            if ev.targets is not None:
                raise self.fail("tables", name, "where", f"evaluation {ev_name!r} has several targets: fix "
                                "'target' or use it as rows or columns")
            coords = {**coords, "target": coords["source"]}
        allowed = self.axis_values(ev)
        for axis in ("source", "attack"):
            value, key = coords[axis]
            if value not in allowed[axis]:
                raise self.fail("tables", name, key, f"{value!r} is not among the {axis} values of "
                                f"evaluation {ev_name!r}{suggest(value, allowed[axis])}")
        source, target = coords["source"][0], coords["target"][0]
        if target not in (allowed["target"] if ev.targets is not None else (source,)):
            raise self.fail("tables", name, coords["target"][1], f"evaluation {ev_name!r} does not evaluate "
                            f"{target!r} on the sets of {source!r}{suggest(target, ev.targets_of(source))}")
        return CellSpec(ev_name, source, coords["attack"][0], target, metric)


def unpairable(cells: tuple[CellSpec, CellSpec], suite: Suite) -> str | None:
    """Why McNemar's test cannot pair the per-sample outcomes of these two cells, or None. Outcomes pair by dataset
    index, an image's position in its split: two cells pair where they read the same dataset and split (their
    samples may differ: the test takes the images both have), hold one metric, and neither attack generates its
    images (index -1, no dataset sample)."""
    first, second = cells
    if (first.metric.call.name, first.metric.call.params) != (second.metric.call.name, second.metric.call.params):
        return (f"the cells hold different metrics ({first.metric.label!r}, {second.metric.label!r}); a paired test "
                "compares one metric's outcomes")
    for cell in cells:
        attack = suite.evaluations[cell.evaluation].attacks.get(cell.attack)
        if attack is not None and is_generator(attack.call.obj):
            return f"attack {cell.attack!r} generates its images: there is no dataset sample to pair them on"
    if problem := other_images(suite, (first.evaluation, second.evaluation)):
        return f"{problem}: a paired test needs the same images"
    return None
