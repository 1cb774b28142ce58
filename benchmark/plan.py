"""Planning: a validated suite becomes a graph of content-addressed jobs.

Four job kinds:

- ``train``: build a model plugin and train it with a trainer plugin on a data slice -> checkpoint;
- ``attack``: run an attack plugin on a trained source model over a data slice -> adversarial set (HDF5); or a
  generator attack (:class:`rbench.attack.GeneratorAttack`) making inputs for target classes from nothing: its spec
  has ``generate`` (:func:`generation_spec`) instead of ``data``;
- ``transform``: a transform plugin applied to a stored adversarial set -> adversarial set;
- ``eval``: a trained model's logits on an adversarial set or on a clean slice -> predictions (HDF5).

A job's key is the SHA-256 of its canonical spec: plugin names and versions, validated params, the keys of
its inputs, the data slice and the suite seed. Two suites that ask for the same computation share the job,
and the store never recomputes a key it holds. The job's RNG seed is derived from its key, or where a field
entered the key that must not change the draws (precision, an adapter's batch size), from its twin's without it
(:meth:`Plan.add`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rbench.attack import is_generator
from rbench.data import ABSENT
from rbench.errors import DataError
from rbench.keys import canonical, content_key
from rbench.manager import REVISION_MARK, get_registry
from rbench.metric import Reference, declared_references
from rbench.specs import (
    AttackSpec,
    Call,
    DataSlice,
    EvalSpec,
    Generation,
    JobSpec,
    Monitoring,
    TrainSpec,
    TransformSpec,
    View,
)
from rbench.suite import AttackCall, DataRef, Evaluation, Monitor, PluginCall, Suite, Table

__all__ = ["CLEAN", "FORMAT", "Job", "Plan", "build_plan", "canonical", "content_key", "data_spec", "model_spec",
           "restrict"]

#: Bump when the stored format or the meaning of a job spec changes: every key changes with it.
#: 2: every stored entry records its key and spec, and an HDF5 file's checksum covers its metadata.
FORMAT = 2
CLEAN = "clean"


@dataclass(frozen=True)
class Job:
    """One unit of work: its ``spec`` (:mod:`rbench.specs`, one dataclass per ``kind``) and key. ``deps`` are the
    keys of the jobs whose outputs it reads."""

    key: str
    kind: str
    spec: JobSpec = field(hash=False, compare=False)
    deps: tuple[str, ...]
    label: str
    #: Execution options that do not change the result (e.g. batch size); not part of the key.
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    #: For an eval job: the plugin of the model evaluated (named in errors); not part of the key.
    model_plugin: str = field(default="", compare=False)
    #: The key the RNG seed derives from when it is not the job's own: a monitored model's training job is seeded
    #: as the same job without the monitor, so that monitoring never changes the trained weights.
    seed_key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.spec.kind != self.kind:
            raise ValueError(f"job {self.key}: a {self.kind} job with a {self.spec.kind} spec")

    @property
    def record(self) -> dict[str, Any]:
        """The spec as it is keyed and stored beside the output (``meta["spec"]``): kind, format and fields."""
        return {"kind": self.kind, "format": FORMAT, **self.spec.to_dict()}

    @property
    def seed(self) -> int:
        """The job's deterministic RNG seed (derived from its key, or from ``seed_key``)."""
        return int((self.seed_key or self.key)[:15], 16)

    @property
    def plugin(self) -> str:
        """The plugin doing the work, for error messages."""
        if isinstance(self.spec, EvalSpec):
            return f"model {self.model_plugin!r}" if self.model_plugin else "(model forward pass)"
        return self.spec.worker()


@dataclass
class Plan:
    """The job graph of a suite (``jobs`` in dependency order) plus the index the tables are read through."""

    suite: Suite
    jobs: dict[str, Job] = field(default_factory=dict)
    trained: dict[str, str] = field(default_factory=dict)
    attacked: dict[tuple[str, str, str], str] = field(default_factory=dict)
    evaluated: dict[tuple[str, str, str, str], str] = field(default_factory=dict)
    #: (evaluation, source) -> the model its adversarial sets are crafted on (the source itself, or under
    #: ``threat_model = "transfer"`` a defended source's undefended model)
    crafted_on: dict[tuple[str, str], str] = field(default_factory=dict)
    #: job key -> the key its seed is derived from, where they differ (``add``'s ``seeded_without``)
    seed_twins: dict[str, str] = field(default_factory=dict, repr=False)

    def add(self, spec: JobSpec, deps: tuple[str, ...], label: str, model_plugin: str = "",
            seeded_without: tuple[str, ...] = (), **options: Any) -> str:
        """Add a job (once per key); ``seeded_without``: spec fields the job's RNG seed ignores. Such a job is
        seeded as its twin without them, and so is every job made from it: an input key in :attr:`seed_twins`
        enters a seed as its twin's (a bf16 adversarial set read by a bf16 eval as its fp32 twin's, so that a whole
        reduced-precision chain draws the random numbers of its fp32 twin, a randomized defense's noise too; an
        adapter's set, whose batch size is keyed, as the key it had before, so what is made from it is seeded as
        then). Not for ``monitor``: a monitored model's inputs are the same in its unmonitored twin (a monitored
        ``init`` model is monitored in both), so its own seed stays that twin's, and the jobs made from it are
        seeded by their keys."""
        record = {"kind": spec.kind, "format": FORMAT, **spec.to_dict()}
        key = content_key(record)
        seed_key = ""
        unrevised = _unrevised(record)
        if seeded_without or self.seed_twins or unrevised is not record:
            twin = {k: v for k, v in unrevised.items() if k not in seeded_without}
            seeded = _with_twins(twin, self.seed_twins) if self.seed_twins else twin
            if seeded != record:  # else it is seeded by its key, hashed once
                seed_key = content_key(seeded)
                if "monitor" not in seeded_without:
                    self.seed_twins[key] = seed_key
        self.jobs.setdefault(key, Job(key, spec.kind, spec, deps, label, options, model_plugin, seed_key))
        return key

    def dependents(self, key: str) -> list[str]:
        """Keys of every job that depends, directly or not, on ``key``."""
        out: list[str] = []
        frontier = {key}
        for job in self.jobs.values():  # dependency order: one pass suffices
            if frontier & set(job.deps):
                out.append(job.key)
                frontier.add(job.key)
        return out


def _unrevised(value: Any) -> Any:
    """``value`` (a job record, JSON) with the ``~rev.<tag>`` a plugin's ``key_revision`` appends to its version
    (:func:`rbench.manager.call_version`) cut off, or ``value`` itself where it holds none: a revised call is keyed
    anew but seeded as before, and so is what is made from it (:attr:`Plan.seed_twins`), so a fix that changes
    nothing on a given input gives the same bits as before it."""
    if isinstance(value, dict):
        changed = {}
        for k, v in value.items():
            if k == "version" and isinstance(v, str):
                if REVISION_MARK in v:
                    changed[k] = v.split(REVISION_MARK, 1)[0]
            elif (new := _unrevised(v)) is not v:
                changed[k] = new
        return {**value, **changed} if changed else value
    if isinstance(value, list):
        items = [_unrevised(v) for v in value]
        return items if any(new is not old for new, old in zip(items, value, strict=True)) else value
    return value


def _with_twins(value: Any, twins: dict[str, str]) -> Any:
    """``value`` (a job record, JSON) with every string that is a key in ``twins`` replaced by its twin's key."""
    if isinstance(value, str):
        return twins.get(value, value)
    if isinstance(value, dict):
        return {k: _with_twins(v, twins) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_twins(v, twins) for v in value]
    return value


def restrict(plan: Plan, tables: Iterable[Table]) -> Plan:
    """The part of ``plan`` that ``tables`` read (``rbench run --only``): for each cell, its adversarial set, its
    predictions, the target's clean predictions and the trained target; and what its metric declares it reads
    (:meth:`rbench.metric.Metric.references`): the (source, target) predictions under another attack label or
    in another evaluation (``worst_case``'s attacks, ``ood_auroc``'s ``ood``), another model's training, with
    every job they depend on. Jobs keep their dependency order; the index (``trained``, ``attacked``,
    ``evaluated``) stays whole, so a metric reading something it did not declare still finds a key (stored by an
    earlier run, or reported missing in its cell)."""
    evaluated: dict[tuple[str, str, str], list[tuple[str, str]]] = {}  # (ev, target, attack) -> [(source, key)]
    for (ev, source, attack, target), key in plan.evaluated.items():
        evaluated.setdefault((ev, target, attack), []).append((source, key))
    declared: dict[int, list[Reference]] = {}  # id of a metric's call -> its references (cells share a metric)
    wanted: set[str] = set()
    for table in tables:
        for spec in table.cells.values():
            call = spec.metric.call
            if id(call) not in declared:
                declared[id(call)] = declared_references(call.obj, call.params)
            reads = {(spec.evaluation, spec.attack), (spec.evaluation, CLEAN)}
            wanted.add(plan.trained[spec.target])
            for ref in declared[id(call)]:
                if ref.kind == "attack":
                    reads.add((ref.evaluation or spec.evaluation, ref.name or spec.attack))
                elif ref.kind == "model" and ref.name in plan.trained:
                    wanted.add(plan.trained[ref.name])
            for ev, attack in reads:
                for source, key in evaluated.get((ev, spec.target, attack), ()):
                    if source == spec.source or attack == CLEAN:
                        wanted.add(key)
                        if attack != CLEAN:
                            wanted.add(plan.attacked[(ev, source, attack)])
    for job in reversed(plan.jobs.values()):  # dependents come after their dependencies
        if job.key in wanted:
            wanted.update(job.deps)
    return Plan(plan.suite, {k: j for k, j in plan.jobs.items() if k in wanted}, plan.trained, plan.attacked,
                plan.evaluated, plan.crafted_on)


def call_spec(call: PluginCall) -> Call:
    """A suite's resolved plugin call as it enters a job's key."""
    return Call.from_dict(call.spec())


def data_spec(ref: DataRef, seed: int) -> DataSlice:
    """The data slice a suite's data reference names (enters job keys; :func:`rbench.inputs.load_slice` loads
    it)."""
    fingerprint = getattr(ref.call.obj, "fingerprint", None)
    content = fingerprint(ref.split, ref.call.params) if callable(fingerprint) else None
    return DataSlice(call_spec(ref.call), ref.split, _sampled(ref), seed, ref.parts, ref.part, content)


def _sampled(ref: DataRef) -> int | None:
    """``ref.n``, or None where it is the whole split (or part): ``n = 10000`` of MNIST's test split is every image
    in order (:func:`rbench.data.subset_indices`), the slice that leaves ``n`` out, so both are one key (the first
    was computed again)."""
    if ref.n is None:
        return None
    size = getattr(ref.call.obj, "size", None)
    whole = ref.parts[ref.part] if ref.parts else size(ref.split, ref.call.params) if callable(size) else None
    return None if ref.n == whole else ref.n


def extra_content(trainer: PluginCall) -> tuple[tuple[str, str, str], ...]:
    """What enters a training job's key of the data its trainer loads itself (``extra_data``, default params):
    (dataset, split, content) for each such split whose dataset gives a fingerprint."""
    entries = []
    for name, split in trainer.obj.extra_data(trainer.params):
        dataset = get_registry().get("dataset", name).obj
        fingerprint = getattr(dataset, "fingerprint", None)
        content = fingerprint(split, dataset.Params()) if callable(fingerprint) else None
        if content is not None:
            entries.append((name, split, content))
    return tuple(entries)


def monitoring(monitor: Monitor, seed: int) -> Monitoring:
    """A monitored model's per-epoch measurements, as they enter its training job's key."""
    return Monitoring(data_spec(monitor.data, seed), monitor.every,
                      {label: call_spec(call) for label, call in monitor.probes.items()})


#: the labels and indices of a generated input: it has no true class and is no image of the dataset
NO_CLASS = -1


def generated_targets(generate: Generation) -> np.ndarray:
    """The target class of each input a generator job makes (its spec's ``generate``), int64: ``per_class``
    rounds of 0, 1, ..., classes - 1."""
    return np.tile(np.arange(generate.classes, dtype=np.int64), generate.per_class)


def generation_spec(ev: Evaluation) -> Generation:
    """What a generator attack of ``ev`` makes (enters its job key instead of a data slice): ``per_class`` inputs
    for each of the dataset's ``classes``, of the dataset's input ``shape``. The targets are
    :func:`generated_targets` of it."""
    dataset = ev.data.call.obj
    return Generation(int(dataset.num_classes), ev.per_class, tuple(int(d) for d in dataset.input_shape))


def _attack_job(plan: Plan, label: str, attack: AttackCall, source: str, src_key: str, data: DataSlice,
                seed: int, batch_size: int, view: View | None = None, randomized: bool = False,
                generate: Generation | None = None, precision: str = "fp32", fit_batch: bool = False) -> str:
    """Plan the job making ``attack``'s set on ``source`` (and, for a transform, the job of its input). ``view``:
    how an adaptive attack sees a defended source (BPDA, EOT draws), part of the key when given; a
    ``randomized`` source's draws follow the batches, so its batch size enters the key too. ``generate``: what a
    generator attack makes (:func:`generation_spec`), used in place of ``data`` when the attack is one.
    ``precision`` (:mod:`rbench.precision`): keyed when not fp32; such a job draws the random numbers of the same
    job in fp32, so that the two differ by the arithmetic alone. ``fit_batch``: on a GPU the job may run larger
    batches than ``batch_size`` (an execution option, never for a randomized source). An attack whose result
    follows the batches (``batch_invariant`` False) has its batch size keyed too, its seed taken without it (the
    seed it had before the batch was keyed, so its sets are the ones stored then)."""
    batch_keyed = randomized or not attack.batch_invariant
    keyed_batch = batch_size if batch_keyed else None
    reduced: tuple[str, ...] = () if precision == "fp32" else ("precision",)
    if attack.base is None:
        if view is not None and view.bpda and not attack.takes_gradients:
            # BPDA changes only the backward pass (its forward is the defense's, bit for bit): an attack taking no
            # gradients is the same job without it (same key, same seed, no "through BPDA" in its label)
            view = View(False, view.eot) if randomized or view.eot > 1 else None
        generated = generate is not None and is_generator(attack.call.obj)
        spec = AttackSpec(call_spec(attack.call), src_key, seed, data=None if generated else data,
                          generate=generate if generated else None, view=view, batch_size=keyed_batch,
                          precision=precision)
        verb = "generate" if generated else "attack"
        options: dict[str, Any] = {"batch_size": batch_size}
        if fit_batch and not batch_keyed:
            options["fit_gpu_batch"] = True
        unseeded = reduced + (("batch_size",) if batch_keyed and not randomized else ())
        seen = [] if view is None else ["BPDA"] * view.bpda + [f"EOT {view.eot}"] * (view.eot > 1)
        through = f" (through {', '.join(seen)})" if seen else ""  # apart from the plain attack's line and record
        return plan.add(spec, (src_key,), f"{verb} {label} on {source}{through}", seeded_without=unseeded,
                        **options)
    base_key = _attack_job(plan, str(attack.base_label), attack.base, source, src_key, data, seed, batch_size, view,
                           randomized, precision=precision, fit_batch=fit_batch)
    transform = TransformSpec(call_spec(attack.call), base_key, src_key, data, seed, precision)
    return plan.add(transform, (src_key, base_key), f"transform {label} on {source}", seeded_without=reduced)


def model_spec(suite: Suite, name: str) -> dict[str, Any]:
    """A model's spec: its plugin call, and, for a composed model, its members' specs (recursively); for a
    defended model its defenses' calls and the specs of what they defend -- so that the network can be rebuilt
    from a checkpoint's sidecar alone."""
    m = suite.models[name]
    if m.defended is not None:
        head = [m.defended.base] if m.defended.base else list(m.members)
        return {"defended": [suite.defenses[d].call.spec() for d in m.defended.chain],
                "members": [model_spec(suite, part) for part in head]}
    assert m.call is not None
    spec = m.call.spec()
    if m.members:
        spec["members"] = [model_spec(suite, member) for member in m.members]
    return spec


def build_plan(suite: Suite) -> Plan:
    """Expand ``suite`` into its job graph. Only the models an evaluation uses are trained; a trained defense
    component once, for every defended model that lists it."""
    plan = Plan(suite)
    seed = suite.seed
    reduced: tuple[str, ...] = () if suite.precision == "fp32" else ("precision",)  # seeded as in fp32 (_attack_job)
    components: dict[str, str] = {}

    def train_defense(name: str) -> str:
        if name not in components:
            d = suite.defenses[name]
            assert d.trainer is not None and d.data is not None
            spec = TrainSpec(defense=call_spec(d.call), trainer=call_spec(d.trainer), data=data_spec(d.data, seed),
                             seed=seed if d.seed is None else d.seed, extra_content=extra_content(d.trainer))
            components[name] = plan.add(spec, (), f"train defense {name}")
        return components[name]

    def lineage(name: str) -> list[str]:
        """The train keys of ``name``'s init chain, oldest first."""
        start = suite.models[name].init
        return [] if start is None else [*lineage(start), train(start)]

    def train(name: str) -> str:
        if name not in plan.trained:
            m = suite.models[name]
            if m.defended is not None:  # assembled from trained parts, not trained
                stages = [train_defense(d.name) for d in suite.chain_of(name) if d.trained]
                head = [train(part) for part in ([m.defended.base] if m.defended.base else m.members)]
                spec = TrainSpec(model=model_spec(suite, name), members=tuple(stages + head))
                plan.trained[name] = plan.add(spec, tuple(stages + head), f"assemble {name}")
                return plan.trained[name]
            assert m.trainer is not None and m.data is not None
            members = [train(member) for member in m.members]  # each member is trained once, and reused
            ancestors = lineage(name)
            spec = TrainSpec(model=model_spec(suite, name), trainer=call_spec(m.trainer), data=data_spec(m.data, seed),
                             seed=seed if m.seed is None else m.seed, members=tuple(members),
                             # per-epoch measurements are part of what the job computes
                             monitor=None if m.monitor is None else monitoring(m.monitor, seed),
                             init=tuple(ancestors), extra_content=extra_content(m.trainer))
            source = getattr(m.call.obj, "weights_file", None) if m.call else None
            weights = source(m.call.params) if callable(source) and m.call else None
            files = {"weights_path": weights} if weights else {}  # where the bytes in the key are read from
            # a trainer that reads no data uses the model as it is: loaded weights (checkpoint) or trained members
            verb = "train" if getattr(m.trainer.obj, "reads_data", True) else "load" if callable(source) else "compose"
            plan.trained[name] = plan.add(spec, tuple(members + ancestors), f"{verb} {name}",
                                          seeded_without=("monitor",) if m.monitor else (), **files)
        return plan.trained[name]

    for ev in suite.evaluations.values():
        data = data_spec(ev.data, seed)
        where = f"{ev.data.dataset}/{ev.data.split}"
        for source in ev.sources:
            defended = bool(suite.chain_of(source))
            crafted_on = suite.undefended_of(source) if ev.threat_model == "transfer" else source
            plan.crafted_on[(ev.name, source)] = crafted_on
            src_key = train(crafted_on)
            chain = suite.chain_of(crafted_on)
            drawn = any(d.randomized for d in chain)
            eot = ev.eot if drawn else 1  # averaging identical draws would only cost time
            # BPDA changes only non-differentiable stages: on a source without one it is the plain attack (same
            # key, no "through BPDA" in its label and record)
            bpda = ev.bpda and any(not d.differentiable for d in chain)
            view = View(bpda, eot) if defended and ev.threat_model == "adaptive" and (bpda or eot > 1) else None
            if drawn and view is None:
                view = View(False, 1)
            inputs: dict[str, str | None] = {CLEAN: None}
            for label, attack in ev.attacks.items():
                key = _attack_job(plan, label, attack, crafted_on, src_key, data, seed, ev.batch_size, view, drawn,
                                  generation_spec(ev), suite.precision, fit_batch=not ev.batch_size_given)
                plan.attacked[(ev.name, source, label)] = key
                inputs[label] = key
            for target in ev.targets_of(source):
                tgt_key = train(target)
                plugin = suite.models[target].plugin_name
                for label, adv_key in inputs.items():
                    if adv_key is None:
                        key = plan.add(EvalSpec(tgt_key, clean=data, precision=suite.precision), (tgt_key,),
                                       f"eval {target} on clean {where}", plugin, seeded_without=reduced)
                    else:
                        key = plan.add(EvalSpec(tgt_key, advset=adv_key, precision=suite.precision),
                                       (tgt_key, adv_key), f"eval {target} on {label}@{crafted_on}", plugin,
                                       seeded_without=reduced)
                    plan.evaluated[(ev.name, source, label, target)] = key
    return plan


def check_keyed_data(plan: Plan) -> None:
    """Data whose content enters job keys (a local-only dataset's digest, :func:`rbench.data.content_digest`)
    must be found when the keys are made: absent, the keys are not those of the stored entries, so a dry run
    would count them as to compute and ``cache gc`` would delete the suite's own entries. Such a split is
    checked by its dataset (its one-line DataError, as a run gives; nothing downloads, the data is local only)."""
    absent = next(_absent_keyed_data(plan), None)
    if absent is None:
        return
    call, split = absent
    plugin = get_registry().get("dataset", call["plugin"]).obj
    plugin.prepare(split, plugin.Params.model_validate(call["params"]))  # its own one line: RBENCH_DATA, the file
    raise DataError(f"dataset {call['plugin']!r}, split {split!r}: its files were not found when the suite was "
                    "planned; run again")


def _absent_keyed_data(plan: Plan) -> Iterator[tuple[dict[str, Any], str]]:
    """(dataset call, split) of each split whose content was absent when ``plan``'s keys were made."""
    for job in plan.jobs.values():
        for data in job.spec.slices():
            if data.content == ABSENT:
                yield data.dataset.to_dict(), data.split
        if isinstance(job.spec, TrainSpec):
            for name, split, content in job.spec.extra_content:
                if content == ABSENT:
                    yield {"plugin": name, "params": {}}, split
