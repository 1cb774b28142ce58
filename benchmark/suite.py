"""Suites: TOML files declaring datasets, models, attacks, evaluations and tables.

Loading a suite (:func:`load_suite`) reads the TOML with :mod:`tomllib` (refusing any number that is not finite,
in every file), applies the chosen profile, follows ``include`` (cycles are errors), merges the included suites,
validates the structure with pydantic and every plugin's parameters against the plugin's ``Params``, checks every
reference -- the names a metric's params give too, where the metric declares them (:class:`Reference`) --, loads
every published-table file and checks that each table, row and column it names is the suite's, and checks every
``n``, ``n_train`` and ``parts`` against the split's size where the dataset plugin knows it (``Dataset.size``). Any
problem raises a :class:`~rbench.errors.SuiteError` whose one-line message names the file, the key path (e.g.
``attacks.pgd.params.eps``), the value and the rule, before any work starts.

Limits (the input is untrusted; each breach is one line too): a suite, included or published file must be a
regular file of at most :data:`rbench.tomlfile.MAX_FILE_BYTES`; documents nest at most
:data:`rbench.tomlfile.MAX_DEPTH` levels, includes at
most :data:`MAX_INCLUDE_DEPTH`; the suite name and table names (they become file names) match
:data:`SAFE_NAME` and are at most :data:`MAX_NAME` characters; every other entry name (datasets, models,
attacks, evaluations, profiles) is at most :data:`MAX_NAME` printable characters, a row, column or metric
label at most :data:`MAX_LABEL`; an attack's grid expands to at most :data:`MAX_GRID` instances.

The format is documented in README.md ("Writing a suite").
"""

from __future__ import annotations

import itertools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from rbench.attack import is_generator
from rbench.compare import Published, load_published
from rbench.errors import PluginError, RbenchError, SuiteError
from rbench.manager import BUILTIN_DISTRIBUTION, Registry, close_match, get_registry, suggest
from rbench.metric import Reference, declared_references
from rbench.precision import Precision
from rbench.specs import ATTACK_BATCH
from rbench.suite_refs import published_mismatch, reference_problem
from rbench.tomlfile import MAX_NAME, key_part, read_toml, shown

SECTIONS = ("datasets", "defenses", "models", "attacks", "evaluations", "tables")
Axis = Literal["source", "target", "model", "attack", "metric"]
Name = Annotated[str, Field(min_length=1)]

#: includes nest at most this deep (a file included twice is read once)
MAX_INCLUDE_DEPTH = 32
#: an attack's grid expands to at most this many instances (shipped suites: 3)
MAX_GRID = 1000
#: the longest row, column or metric label
MAX_LABEL = 100
#: the suite name and table names become file and folder names (``runs/<suite>-<time>``,
#: ``reliability_<table>.png``): a letter or digit, then letters, digits, ``_``, ``.``, ``-``; never ``..``
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SAFE_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"


def name_problem(name: str, *, safe: bool, limit: int = MAX_NAME) -> str | None:
    """Why ``name`` is not acceptable, or None. ``safe``: it becomes a file or folder name, so it must also match
    :data:`SAFE_NAME` and not hold ``..``."""
    if not name:
        return "is empty"
    if len(name) > limit:
        return f"is {len(name)} characters long, more than {limit}"
    if not name.isprintable():
        return "holds a control or unprintable character"
    if not safe:
        return None
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if ".." in name:
        return "holds '..'"
    if not SAFE_NAME.fullmatch(name):
        return "is not a safe file name"
    return None


def _label(value: str) -> str:
    problem = name_problem(value, safe=False, limit=MAX_LABEL)
    if problem:
        raise ValueError(f"label {problem}")
    return value


#: a row, column or metric label: what a table shows
Label = Annotated[str, AfterValidator(_label)]


class _Strict(BaseModel):
    """TOML has real types: no coercion (a string "0" is not a number), no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True)


class SuiteMeta(_Strict):
    name: Name
    title: str = ""
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    include: list[str] = []
    #: published-table files (relative to this suite file) that `rbench compare` puts beside the results
    published: list[str] = []
    #: seconds any one job may run (a job that runs longer fails alone); None: no limit. ``--job-timeout`` wins.
    job_timeout: Annotated[float, Field(gt=0, le=1e7, allow_inf_nan=False)] | None = None  # 1e7: as --job-timeout
    #: the arithmetic of attack, transform and eval jobs (rbench.precision); ``--precision`` wins
    precision: Precision = "fp32"


class DatasetSpec(_Strict):
    plugin: Name
    params: dict[str, Any] = {}


class TrainerSpec(_Strict):
    plugin: Name = "standard"
    params: dict[str, Any] = {}


PositiveInt = Annotated[int, Field(gt=0)]


class TrainedSpec(_Strict):
    """What a trained thing (a model, a trained defense component) is trained on, and how."""

    dataset: Name | None = None
    split: Name = "train"
    #: ``parts``: cut the split into disjoint parts of these sizes (one seeded permutation); use part ``part``.
    parts: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    part: Annotated[int, Field(ge=0)] = 0
    n_train: PositiveInt | None = None
    trainer: TrainerSpec | None = None
    #: the training job's seed (default: the suite's); e.g. to train otherwise identical committee members
    seed: Annotated[int, Field(ge=0)] | None = None


class ProbeSpec(_Strict):
    plugin: Name
    params: dict[str, Any] = {}
    #: the name its measurements are stored under (default: the plugin's); unique within a monitor
    label: Label | None = None


class MonitorSpec(_Strict):
    """Per-epoch measurements while a model trains: ``probes`` run on a data slice every ``every`` epochs (see
    :mod:`rbench.probe`); the trainer must observe epochs (``Trainer.observes``)."""

    dataset: Name
    split: Name = "test"
    n: PositiveInt | None = None
    parts: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    part: Annotated[int, Field(ge=0)] = 0
    probes: Annotated[list[ProbeSpec], Field(min_length=1)]
    every: PositiveInt = 1


class ModelSpec(TrainedSpec):
    """A model: a plugin trained on a dataset, composed of trained ``members``, or -- with ``defenses`` -- a
    defended model: those defenses (in order from the input) in front of ``base`` (or, after an aggregating
    defense, of ``members``)."""

    plugin: Name | None = None
    params: dict[str, Any] = {}
    #: models of this suite whose trained weights this one is composed of (e.g. an ensemble, a committee)
    members: list[Name] = []
    #: start training from this model's trained weights (same plugin and params); its trainer sees the lineage
    init: Name | None = None
    base: Name | None = None
    defenses: list[Name] = []
    #: the model whose adversarial sets a transfer evaluation uses for this defended model (default: ``base``)
    undefended: Name | None = None
    #: per-epoch measurements stored with the checkpoint (probe plugins on a data slice)
    monitor: MonitorSpec | None = None


class DefenseSpec(TrainedSpec):
    """A defense plugin with params; a trained one (a denoising autoencoder) also names its training data and
    trainer, and is trained once, by its own job, for every defended model that lists it."""

    plugin: Name
    params: dict[str, Any] = {}


class AttackSpec(_Strict):
    """An attack plugin with params (``grid`` expands lists into instances), or a ``transform`` plugin applied
    to the adversarial sets of the attack named by ``input`` (e.g. amplifying minimal perturbations)."""

    plugin: Name | None = None
    transform: Name | None = None
    input: Name | None = None
    params: dict[str, Any] = {}
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}


class EvaluationSpec(_Strict):
    dataset: Name
    split: Name = "test"
    parts: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    part: Annotated[int, Field(ge=0)] = 0
    n: PositiveInt | None = None
    sources: Annotated[list[Name], Field(min_length=1)]
    attacks: list[Name] = []
    targets: Literal["self"] | Annotated[list[Name], Field(min_length=1)] = "self"
    batch_size: Annotated[int, Field(gt=0)] = ATTACK_BATCH
    #: adaptive: attacks see each source whole, defenses included; transfer: a defended source's attacks are
    #: crafted on its undefended model and transferred
    threat_model: Literal["adaptive", "transfer"] = "adaptive"
    #: adaptive attacks differentiate through non-differentiable defenses by BPDA
    bpda: bool = False
    #: adaptive attacks average gradients over this many random draws of randomized defenses (EOT)
    eot: Annotated[int, Field(ge=1, le=1000)] = 1
    #: generator attacks (rbench.attack.GeneratorAttack) make this many inputs for each class of the dataset
    per_class: Annotated[int, Field(ge=1, le=10000)] = 1


class MetricRef(_Strict):
    plugin: Name
    params: dict[str, Any] = {}
    label: Label | None = None


class Selector(_Strict):
    """One row or column given explicitly: a label and the coordinates it fixes (any of them)."""

    label: Label
    evaluation: Name | None = None
    source: Name | None = None
    target: Name | None = None
    model: Name | None = None
    attack: Name | None = None
    metric: Name | MetricRef | None = None


FigureName = Literal["curves", "lines", "images", "training"]


class TableSpec(_Strict):
    title: str = ""
    evaluation: Name
    rows: Axis | Annotated[list[Selector], Field(min_length=1)]
    columns: Axis | Annotated[list[Selector], Field(min_length=1)]
    metric: Name | MetricRef | None = None
    metrics: list[Name | MetricRef] | None = None
    where: dict[Literal["source", "target", "model", "attack"], Name] = {}
    clean: bool = True
    #: "curves": the run folder also gets curves_<table>.png (error against measured distortion, one line per row);
    #: "lines": lines_<table>.png (the columns along x, in order, one line per row);
    #: "images": images_<table>.png (each row's generated or targeted set: its best image per target class);
    #: "training": training_<table>.png (per-epoch measurements of monitored models, one panel per column);
    #: a list asks for several
    figure: FigureName | Annotated[list[FigureName], Field(min_length=1)] | None = None
    #: pairs of rows (or of columns) compared on the same samples by McNemar's exact test, in every column (row)
    paired: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = []


class SuiteDoc(_Strict):
    suite: SuiteMeta
    datasets: dict[str, DatasetSpec] = {}
    defenses: dict[str, DefenseSpec] = {}
    models: dict[str, ModelSpec] = {}
    attacks: dict[str, AttackSpec] = {}
    evaluations: dict[str, EvaluationSpec] = {}
    tables: dict[str, TableSpec] = {}
    profiles: dict[str, dict[str, Any]] = {}


# -- resolved forms ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PluginCall:
    """A plugin chosen by name with validated params (``params`` is an instance of the plugin's Params)."""

    kind: str
    name: str
    version: str
    params: BaseModel
    #: the distribution the plugin comes from (enters the job key unless it is rbench's own)
    distribution: str = BUILTIN_DISTRIBUTION

    @property
    def obj(self) -> Any:
        return get_registry().get(self.kind, self.name).obj

    def spec(self) -> dict[str, Any]:
        spec = {"plugin": self.name, "version": self.version, "params": self.params.model_dump(mode="json")}
        if self.distribution != BUILTIN_DISTRIBUTION:
            spec["distribution"] = self.distribution
        return spec


@dataclass(frozen=True)
class DataRef:
    dataset: str
    call: PluginCall
    split: str
    n: int | None
    parts: tuple[int, ...] | None = None
    part: int = 0


@dataclass(frozen=True)
class DefenseEntry:
    """A resolved defense: its plugin call, what it declares, and (trained ones) how it is trained."""

    name: str
    call: PluginCall
    differentiable: bool
    randomized: bool
    trained: bool
    aggregates: bool
    trainer: PluginCall | None = None
    data: DataRef | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Defended:
    """How a defended model is assembled: ``chain`` (defense names, from the input) in front of ``base``, or,
    when the chain ends with an aggregating defense, of the model's members. ``undefended``: the model a transfer
    evaluation crafts this model's adversarial sets on."""

    chain: tuple[str, ...]
    base: str | None
    undefended: str | None


@dataclass(frozen=True)
class Monitor:
    """Resolved ``monitor``: the probes (label -> call) run on ``data`` every ``every`` epochs."""

    data: DataRef
    probes: dict[str, PluginCall]
    every: int = 1


@dataclass(frozen=True)
class Model:
    """A model of the suite. A defended model has ``defended`` set and no plugin call, trainer or data of its own."""

    name: str
    call: PluginCall | None
    trainer: PluginCall | None
    data: DataRef | None
    members: tuple[str, ...] = ()
    init: str | None = None
    seed: int | None = None
    defended: Defended | None = None
    monitor: Monitor | None = None

    @property
    def plugin_name(self) -> str:
        """The model plugin, or for a defended model its defenses and what they defend (for messages)."""
        if self.defended is None:
            assert self.call is not None
            return self.call.name
        behind = self.defended.base or ", ".join(self.members)
        return f"{' -> '.join(self.defended.chain)} -> {behind}"


@dataclass(frozen=True)
class Metric:
    label: str
    call: PluginCall
    #: where the table gives it (``metric``, ``metrics[1]``, ``rows[0].metric``): for messages
    key: str = field(default="metric", compare=False)


@dataclass(frozen=True)
class AttackCall:
    """An attack instance: a plugin call, or a transform call on the sets of ``base`` (label ``base_label``)."""

    call: PluginCall
    base: AttackCall | None = None
    base_label: str | None = None


@dataclass(frozen=True)
class Evaluation:
    name: str
    data: DataRef
    sources: tuple[str, ...]
    attacks: dict[str, AttackCall]
    targets: tuple[str, ...] | None  # None: each source is its own only target
    batch_size: int
    threat_model: str = "adaptive"
    bpda: bool = False
    eot: int = 1
    per_class: int = 1
    #: False when the suite left ``batch_size`` at its default: on a GPU, attack jobs then find the largest batch
    #: that fits (:func:`rbench.attack_loop.first_batch`)
    batch_size_given: bool = True

    def targets_of(self, source: str) -> tuple[str, ...]:
        return (source,) if self.targets is None else self.targets

    def holds(self, source: str, attack: str, target: str) -> bool:
        """Whether a metric can read ``target``'s predictions on the (``source``, ``attack``) inputs of this
        evaluation (what ``CellData.predictions_of`` finds in the plan): ``source`` is evaluated on ``target``
        under ``attack``; for "clean", any source evaluated on ``target`` will do (clean outputs do not depend on
        the source)."""
        if attack == "clean":
            return any(target in self.targets_of(s) for s in self.sources)
        return source in self.sources and attack in self.attacks and target in self.targets_of(source)


@dataclass(frozen=True)
class CellSpec:
    """Where one table cell's number comes from: a (source, attack, target) of an evaluation, and a metric."""

    evaluation: str
    source: str
    attack: str
    target: str
    metric: Metric


@dataclass(frozen=True)
class Table:
    """A resolved table: row and column labels, the axis each runs along (``"rows"`` for explicit
    selectors), and the spec of every cell."""

    name: str
    title: str
    row_axis: str
    column_axis: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: dict[tuple[str, str], CellSpec]
    file: str
    figure: str | list[str] | None = None
    #: (a, b) label pairs, both rows or both columns, compared by McNemar's test along the other axis
    paired: tuple[tuple[str, str], ...] = ()

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return tuple({c.metric.label: c.metric for c in self.cells.values()}.values())


@dataclass
class Suite:
    """A loaded, validated suite with every plugin call resolved."""

    name: str
    title: str
    seed: int
    files: list[str]
    profile: str | None
    published: list[str] = field(default_factory=list)
    job_timeout: float | None = None
    #: the arithmetic of its attack, transform and eval jobs (:mod:`rbench.precision`)
    precision: str = "fp32"
    defenses: dict[str, DefenseEntry] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    #: problems that do not stop a run (e.g. EOT on a deterministic defense), one line each, by the evaluation
    #: they concern (``--only`` keeps those of the evaluations its tables read)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    #: its published files' contents (path -> the validated document as JSON), recorded with the run's results
    published_docs: dict[str, Any] = field(default_factory=dict)
    #: every plugin the suite calls: (kind, name) -> (its version, its distribution), for the run's provenance
    plugins: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def warning_lines(self) -> list[str]:
        """Its warnings, in the order of its evaluations."""
        return [line for lines in self.warnings.values() for line in lines]

    def chain_of(self, model: str) -> list[DefenseEntry]:
        """The defenses of ``model`` in order from the input (empty for an undefended model)."""
        defended = self.models[model].defended
        return [] if defended is None else [self.defenses[d] for d in defended.chain]

    def undefended_of(self, model: str) -> str:
        """The model a transfer evaluation crafts ``model``'s adversarial sets on (itself if undefended)."""
        defended = self.models[model].defended
        return model if defended is None else str(defended.undefended)


def instance_label(name: str, point: dict[str, Any]) -> str:
    """An attack instance's label, its row or column in tables: ``name``, with its grid ``point``'s params
    (``pgd(eps=0.1, steps=40)``)."""
    return name + ("(" + ", ".join(f"{k}={v}" for k, v in point.items()) + ")" if point else "")


def threat_note(suite: Suite, evaluation: str) -> str | None:
    """How an evaluation's attacks saw its defended sources (None when it has none): for table titles."""
    ev = suite.evaluations[evaluation]
    if not any(suite.chain_of(s) for s in ev.sources):
        return None
    if ev.threat_model == "transfer":
        return f"{evaluation}: attacks transferred from the undefended models"
    defended = [s for s in ev.sources if suite.chain_of(s)]
    # what was applied, and where: BPDA changes only sources with a non-differentiable defense, EOT only sources
    # with a randomized one (on the others every draw is the same: the plain attack is run)
    how = []
    for what, on, applies in (("BPDA", ev.bpda, lambda d: not d.differentiable),
                              (f"EOT over {ev.eot} draws", ev.eot > 1, lambda d: d.randomized)):
        where = [s for s in defended if any(applies(d) for d in suite.chain_of(s))]
        if on and where:
            how.append(what if len(where) == len(defended) else f"{what} on {', '.join(where)}")
    return f"{evaluation}: adaptive white-box attacks through the defenses" + (f" ({'; '.join(how)})" if how else "")


# -- loading --------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else f"{text[:80]}..."


def _keypath(loc: tuple[Any, ...]) -> str:
    return ".".join(key_part(p) for p in loc if not str(p).startswith("function-"))


#: the parts of a pydantic error location that name a type (a branch of a union), not a key
_TYPE_TAG = re.compile(r"str|int|float|bool|MetricRef|Selector|[a-z-]+\[.*\]|constrained-.*", re.DOTALL)


def _pydantic_problem(file: str, prefix: str, err: ValidationError, model: type[BaseModel] | None = None
                      ) -> SuiteError:
    """One line for the first problem of ``err``; an unknown key of ``model`` (the model validated: the suite
    document, or a plugin's Params) also gets the closest of the keys it allows there."""
    # the deepest error: for a union (e.g. rows = an axis or a list of selectors) the branch that got furthest; of
    # those, an unknown key close to an allowed one (a misspelt required key is also reported missing)
    def where(e: Any) -> tuple[Any, ...]:
        return tuple(x for x in e["loc"] if not (isinstance(x, str) and _TYPE_TAG.fullmatch(x)))

    def close(e: Any) -> str | None:
        loc = where(e)
        if e["type"] != "extra_forbidden" or model is None or not loc:
            return None
        return close_match(str(loc[-1]), _keys_at(model, loc[:-1]))

    deepest = max(len(e["loc"]) for e in err.errors())
    candidates = [e for e in err.errors() if len(e["loc"]) == deepest]
    first = next((e for e in candidates if close(e) is not None), candidates[0])
    loc = where(first)
    path = ".".join(p for p in (prefix, _keypath(loc)) if p)
    detail = first["msg"].removeprefix("Value error, ")
    hint = ""
    if first["type"] == "extra_forbidden":
        detail = "unknown key"
        match = close(first)
        hint = f"; did you mean {match!r}?" if match is not None else ""
    elif first["type"] == "missing":
        return SuiteError(f"{file}: {path}: required key is missing")
    elif first["type"] == "literal_error" and isinstance(first.get("input"), str):  # rows = "atack"
        match = close_match(first["input"], re.findall(r"'([^']*)'", str(first.get("ctx", {}).get("expected", ""))))
        hint = f"; did you mean {match!r}?" if match is not None else ""
    more = f" (and {len(err.errors()) - 1} more problems)" if len(err.errors()) > 1 else ""
    return SuiteError(f"{file}: {path}: {detail} (got {_fmt(first.get('input'))}){hint}{more}")


def _keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> set[str]:
    """The keys allowed at ``loc`` (an error location without its type tags) inside ``model``: the fields of every
    pydantic model the annotations there can hold (through Annotated, unions, lists and dicts)."""

    def unwrap(tp: Any) -> list[Any]:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            return unwrap(typing.get_args(tp)[0])
        if origin is typing.Union or origin is types.UnionType:
            return [u for a in typing.get_args(tp) for u in unwrap(a)]
        return [tp]

    types_here: list[Any] = [model]
    for part in loc:
        following: list[Any] = []
        for tp in (u for t in types_here for u in unwrap(t)):
            origin, args = typing.get_origin(tp), typing.get_args(tp)
            if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
                if part in tp.model_fields:
                    following.append(tp.model_fields[part].annotation)
            elif origin in (list, tuple, set, frozenset) and isinstance(part, int) and args:
                following.append(args[0])
            elif origin is dict and len(args) == 2:
                following.append(args[1])
        types_here = following
    return {name for t in types_here for tp in unwrap(t) if isinstance(tp, type) and issubclass(tp, BaseModel)
            for name in tp.model_fields}


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` merged into a copy of ``base``: tables merge recursively, other values replace."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_names(file: str, raw: dict[str, Any]) -> None:
    """The suite name and every section entry name, checked before pydantic sees them (so that no other
    message ever shows an unprintable key)."""
    meta = raw.get("suite")
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        problem = name_problem(meta["name"], safe=True)
        if problem:
            raise SuiteError(f"{file}: suite.name: {problem} (got {shown(meta['name'])}); it names the run folder: "
                             f"use {_SAFE_RULE}")
    for section in (*SECTIONS, "profiles"):
        body = raw.get(section)
        if not isinstance(body, dict):
            continue
        for name in body:
            safe = section == "tables"
            problem = name_problem(name, safe=safe)
            if problem:
                rule = f"; table names become file names: use {_SAFE_RULE}" if safe else (
                    f"; use at most {MAX_NAME} printable characters")
                raise SuiteError(f"{file}: {section}.{shown(name)}: name {problem}{rule}")


@dataclass
class Merged:
    """Documents merged across includes, remembering which file defined each entry."""

    sections: dict[str, dict[str, Any]] = field(default_factory=lambda: {s: {} for s in SECTIONS})
    origin: dict[tuple[str, str], str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    #: each published file, read: (the suite file naming it first, its index there, its path, its content)
    published_docs: list[tuple[str, int, str, Published]] = field(default_factory=list)
    profile_seen: bool = False
    #: the names of the profiles the files define
    profiles: set[str] = field(default_factory=set)


def _load_tree(path: Path, profile: str | None, merged: Merged, stack: list[Path], referrer: str | None
               ) -> SuiteMeta | None:
    try:
        path = path.resolve() if path.exists() else path
    except (OSError, ValueError, RuntimeError):  # a path the OS rejects: read_toml says why
        pass
    if path in stack:
        chain = " -> ".join(p.name for p in [*stack, path])
        raise SuiteError(f"{stack[-1]}: suite.include: include cycle: {chain}")
    if str(path) in merged.files:  # included twice (a diamond): merged once, read once
        return None
    if len(stack) > MAX_INCLUDE_DEPTH:
        raise SuiteError(f"{referrer}: {path}: includes nest deeper than {MAX_INCLUDE_DEPTH} levels "
                         f"(from {stack[0]})")
    raw = read_toml(path, referrer)
    file = str(path)
    profiles = raw.get("profiles", {})
    if isinstance(profiles, dict):
        merged.profiles.update(str(name) for name in profiles)
        for name, overlay in profiles.items():  # merged into the suite, a nested one would be silently ignored
            if isinstance(overlay, dict) and "profiles" in overlay:
                raise SuiteError(f"{file}: profiles.{key_part(name)}.profiles: a profile cannot define profiles")
    if profile is not None and isinstance(profiles, dict) and profile in profiles:
        overlay = profiles[profile]
        if not isinstance(overlay, dict):
            raise SuiteError(f"{file}: profiles.{key_part(profile)}: must be a table (got {_fmt(overlay)})")
        raw = deep_merge(raw, overlay)
        merged.profile_seen = True
    _check_names(file, raw)
    try:
        doc = SuiteDoc.model_validate(raw)
    except ValidationError as err:
        raise _pydantic_problem(file, "", err, SuiteDoc) from None
    merged.files.append(file)
    for i, pub in enumerate(doc.suite.published):
        pub_path = path.parent / pub
        try:
            pub_path = pub_path.resolve()
        except (OSError, ValueError, RuntimeError):
            pass
        try:
            published = load_published(pub_path)
        except RbenchError as exc:
            raise SuiteError(f"{file}: suite.published[{i}]: {exc}") from None
        if str(pub_path) not in merged.published:
            merged.published.append(str(pub_path))
            merged.published_docs.append((file, i, str(pub_path), published))
    for i, inc in enumerate(doc.suite.include):
        _load_tree(path.parent / inc, profile, merged, [*stack, path], f"{file}: suite.include[{i}]")
    for section in SECTIONS:
        for name, spec in getattr(doc, section).items():
            prev = merged.sections[section].get(name)
            if prev is not None and prev != spec:
                other = merged.origin[(section, name)]
                raise SuiteError(f"{file}: {section}.{name}: already defined differently in {other}")
            merged.sections[section][name] = spec
            merged.origin[(section, name)] = file
    return doc.suite


def merge_files(path: str | Path, profile: str | None = None) -> tuple[SuiteMeta, Merged]:
    """The suite at ``path`` and its includes, read, checked for structure and merged (``profile`` applied), before
    any plugin is resolved: the first file's ``[suite]`` table and every section's entries with their origin."""
    merged = Merged()
    meta = _load_tree(Path(path), profile, merged, [], None)
    assert meta is not None  # the first file is never a repeat
    if profile is not None and not merged.profile_seen:
        raise SuiteError(f"{path}: profiles.{key_part(profile)}: no such profile in this suite or its includes")
    return meta, merged


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


def suite_profiles(path: str | Path) -> list[str]:
    """The names of the profiles the suite at ``path`` and its includes define."""
    return sorted(merge_files(path)[1].profiles)


def _broken_default(params_type: type[BaseModel], validated: BaseModel, base: Path) -> str | None:
    """Why a default ``validated`` took from its Params breaks the Params' own rules, or None. pydantic does not
    validate defaults, so a default such as ``eps = 5.0`` under ``le=1`` would otherwise fail in every job."""
    defaulted = set(type(validated).model_fields) - validated.model_fields_set
    if not defaulted:
        return None
    try:
        params_type.model_validate(validated.model_dump(mode="json"), context={"base": base})
    except ValidationError as err:
        for e in err.errors():
            if e["loc"] and e["loc"][0] in defaulted:
                return (f"has a default {e['loc'][0]} = {_fmt(getattr(validated, str(e['loc'][0])))} that breaks "
                        f"its own rule: {e['msg']}")
    except Exception:  # noqa: BLE001 - a Params that does not round-trip through JSON is not this check's concern
        return None
    return None


def _budget_problem(kind: str, obj: Any, params: BaseModel) -> str | None:
    """Why an attack plugin cannot state its budget for ``params`` (every job asks it first), or None."""
    budget = getattr(obj, "budget", None) if kind == "attack" else None
    if budget is None:
        return None
    try:
        budget(params)
    except Exception as exc:  # noqa: BLE001 - a plugin bug of any kind, reported as one line
        return f"cannot state its budget: {type(exc).__name__}: {exc}"
    return None


class _Resolver:
    def __init__(self, registry: Registry, merged: Merged, meta: SuiteMeta, profile: str | None):
        self.registry, self.merged, self.meta, self.profile = registry, merged, meta, profile
        self.used: dict[tuple[str, str], tuple[str, str]] = {}  # every plugin called: Suite.plugins
        self._axis_values: dict[str, dict[str, dict[str, None]]] = {}  # see axis_values

    def where(self, section: str, name: str) -> str:
        return self.merged.origin[(section, name)]

    def fail(self, section: str, name: str, rest: str, problem: str) -> SuiteError:
        path = ".".join(p for p in (section, name, rest) if p)
        return SuiteError(f"{self.where(section, name)}: {path}: {problem}")

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
            raise self.fail(section, name, at, f"{exc} (got {plugin!r})") from None
        base = Path(self.where(section, name)).parent  # where a plugin's relative file paths start
        try:
            validated = info.obj.Params.model_validate(params, strict=True, context={"base": base})
        except ValidationError as err:
            raise _pydantic_problem(self.where(section, name), f"{section}.{name}.{key}params", err,
                                    info.obj.Params) from None
        problem = _broken_default(info.obj.Params, validated, base) or _budget_problem(kind, info.obj, validated)
        if problem is not None:  # the plugin's bug, found before any work instead of in every job that uses it
            raise self.fail(section, name, at, f"{kind} plugin {plugin!r} (distribution {info.distribution!r}) "
                            f"{problem}")
        self.used[(kind, plugin)] = (info.version, info.distribution)
        return PluginCall(kind, plugin, info.version, validated, info.distribution)

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
        s = self.merged.sections
        suite = Suite(self.meta.name, self.meta.title, self.meta.seed, self.merged.files, self.profile,
                      list(self.merged.published), self.meta.job_timeout, self.meta.precision)
        for name, d in s["defenses"].items():
            suite.defenses[name] = self.defense(name, d)
        for name, m in s["models"].items():
            for i, member in enumerate(m.members):
                self.ref("models", name, f"members[{i}]", "models", member)
            suite.models[name] = self.defended(name, m, suite) if m.defenses else self.model(name, m)
        for name in suite.models:
            self.member_cycle(suite, name, [])
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
        for name, t in s["tables"].items():
            suite.tables[name] = self.table(name, t, suite)
        self.check_published(suite)
        suite.plugins = dict(sorted(self.used.items()))
        suite.published_docs = {path: doc.model_dump(mode="json") for _, _, path, doc in self.merged.published_docs}
        return suite

    def check_published(self, suite: Suite) -> None:
        """Every table, row and column a published file names (its values, column tolerances and claims) is one
        of the suite's: a table's rows and columns are known without running anything."""
        shapes = {name: (t.rows, t.columns) for name, t in suite.tables.items()}
        for file, i, path, published in self.merged.published_docs:
            problem = published_mismatch(published, shapes)
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
        if m.init is not None:
            self.ref("models", name, "init", "models", m.init)
        trainer, data = self.trained_data("models", name, m, m.plugin, "model",
                                          getattr(call.obj, "default_trainer", "standard"))
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
                    call = attack.base.call if attack.base is not None else attack.call
                    uses = getattr(call.obj, "uses_gradients", None)
                    if not callable(uses) or uses(call.params):
                        raise self.fail("evaluations", name, "bpda", f"attack {label!r} takes gradients through "
                                        f"the non-differentiable defense {stuck[0]!r} of {source!r}: set bpda = "
                                        "true (BPDA), or threat_model = \"transfer\"")
        if ev.eot > 1 and ev.threat_model == "adaptive" and not any(
                d.randomized for source in ev.sources for d in suite.chain_of(source)):
            suite.warnings.setdefault(name, []).append(
                f"{self.where('evaluations', name)}: evaluations.{name}.eot: {ev.eot} draws, but no source has a "
                "randomized defense: every draw would be the same (EOT is not used)")

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
            raise self.fail(section, name, "plugin", f"{exc} (got {plugin!r})") from None

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
        return Table(name, title, t.rows if isinstance(t.rows, str) else "rows",
                     t.columns if isinstance(t.columns, str) else "columns",
                     row_labels, column_labels, cells, self.where("tables", name),
                     t.figure if t.figure is None or isinstance(t.figure, str) else [str(f) for f in t.figure],
                     tuple((a, b) for a, b in t.paired))

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
            if not declared[id(call)] or what in seen:
                continue
            seen.add(what)
            for ref in declared[id(call)]:
                problem = reference_problem(ref, cell, f"cell ({row}, {column})", suite)
                if problem is not None:
                    raise self.fail("tables", name, f"{cell.metric.key}.params.{ref.key}", problem)

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
