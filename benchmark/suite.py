"""Suites: TOML files declaring datasets, models, attacks, evaluations and tables.

Loading a suite (:func:`load_suite`) reads the TOML with :mod:`tomllib`, applies the chosen profile, follows
``include`` (cycles are errors), merges the included suites, validates the structure with pydantic and every
plugin's parameters against the plugin's ``Params``, and checks every reference. Any problem raises a
:class:`~rbench.errors.SuiteError` whose one-line message names the file, the key path (e.g.
``attacks.pgd.params.eps``), the value and the rule, before any work starts.

The format is documented in README.md ("Writing a suite").
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rbench.errors import PluginError, SuiteError
from rbench.manager import Registry, get_registry, suggest

SECTIONS = ("datasets", "models", "attacks", "evaluations", "tables")
Axis = Literal["source", "target", "model", "attack", "metric"]
Name = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SuiteMeta(_Strict):
    name: Name
    title: str = ""
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    include: list[str] = []


class DatasetSpec(_Strict):
    plugin: Name
    params: dict[str, Any] = {}


class TrainerSpec(_Strict):
    plugin: Name = "standard"
    params: dict[str, Any] = {}


class ModelSpec(_Strict):
    plugin: Name
    params: dict[str, Any] = {}
    dataset: Name
    split: Name = "train"
    n_train: Annotated[int, Field(gt=0)] | None = None
    trainer: TrainerSpec = TrainerSpec()


class AttackSpec(_Strict):
    plugin: Name
    params: dict[str, Any] = {}
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}


class EvaluationSpec(_Strict):
    dataset: Name
    split: Name = "test"
    n: Annotated[int, Field(gt=0)] | None = None
    sources: Annotated[list[Name], Field(min_length=1)]
    attacks: list[Name] = []
    targets: Literal["self"] | Annotated[list[Name], Field(min_length=1)] = "self"
    batch_size: Annotated[int, Field(gt=0)] = 250  # fastest on a 2-core CPU for LeNet (make bench)


class MetricRef(_Strict):
    plugin: Name
    params: dict[str, Any] = {}
    label: str | None = None


class TableSpec(_Strict):
    title: str = ""
    evaluation: Name
    rows: Axis
    columns: Axis
    metric: Name | MetricRef | None = None
    metrics: list[Name | MetricRef] | None = None
    where: dict[Literal["source", "target", "model", "attack"], Name] = {}
    clean: bool = True


class SuiteDoc(_Strict):
    suite: SuiteMeta
    datasets: dict[str, DatasetSpec] = {}
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

    @property
    def obj(self) -> Any:
        return get_registry().get(self.kind, self.name).obj

    def spec(self) -> dict[str, Any]:
        return {"plugin": self.name, "version": self.version, "params": self.params.model_dump(mode="json")}


@dataclass(frozen=True)
class DataRef:
    dataset: str
    call: PluginCall
    split: str
    n: int | None


@dataclass(frozen=True)
class Model:
    name: str
    call: PluginCall
    trainer: PluginCall
    data: DataRef


@dataclass(frozen=True)
class Metric:
    label: str
    call: PluginCall


@dataclass(frozen=True)
class Evaluation:
    name: str
    data: DataRef
    sources: tuple[str, ...]
    attacks: dict[str, PluginCall]
    targets: tuple[str, ...] | None  # None: each source is its own only target
    batch_size: int

    def targets_of(self, source: str) -> tuple[str, ...]:
        return (source,) if self.targets is None else self.targets


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    evaluation: str
    rows: str
    columns: str
    metrics: tuple[Metric, ...]
    where: dict[str, str]
    clean: bool
    file: str


@dataclass
class Suite:
    """A loaded, validated suite with every plugin call resolved."""

    name: str
    title: str
    seed: int
    files: list[str]
    profile: str | None
    models: dict[str, Model] = field(default_factory=dict)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)


# -- loading --------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _keypath(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


def _pydantic_problem(file: str, prefix: str, err: ValidationError) -> SuiteError:
    first = err.errors()[0]
    loc = tuple(x for x in first["loc"] if not (isinstance(x, str) and x in ("str", "MetricRef", "list[str]")
                                                 or "constrained" in str(x) or "literal" in str(x)))
    path = ".".join(p for p in (prefix, _keypath(loc)) if p)
    detail = first["msg"]
    if first["type"] == "extra_forbidden":
        detail = "unknown key"
    elif first["type"] == "missing":
        return SuiteError(f"{file}: {path}: required key is missing")
    more = f" (and {len(err.errors()) - 1} more problems)" if len(err.errors()) > 1 else ""
    return SuiteError(f"{file}: {path}: {detail} (got {_fmt(first.get('input'))}){more}")


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` merged into a copy of ``base``: tables merge recursively, other values replace."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_toml(path: Path, referrer: str | None = None) -> dict[str, Any]:
    """The TOML document at ``path``; a one-line :class:`SuiteError` if it cannot be read or parsed."""
    where = f"{referrer}: " if referrer else ""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SuiteError(f"{where}{path}: file not found") from None
    except IsADirectoryError:
        raise SuiteError(f"{where}{path}: is a directory, not a suite file") from None
    except PermissionError:
        raise SuiteError(f"{where}{path}: not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise SuiteError(f"{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML: {exc}") from None


@dataclass
class _Merged:
    """Documents merged across includes, remembering which file defined each entry."""

    sections: dict[str, dict[str, Any]] = field(default_factory=lambda: {s: {} for s in SECTIONS})
    origin: dict[tuple[str, str], str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    profile_seen: bool = False


def _load_tree(path: Path, profile: str | None, merged: _Merged, stack: list[Path], referrer: str | None
               ) -> SuiteMeta:
    path = path.resolve() if path.exists() else path
    if path in stack:
        chain = " -> ".join(p.name for p in [*stack, path])
        raise SuiteError(f"{stack[-1]}: suite.include: include cycle: {chain}")
    raw = read_toml(path, referrer)
    file = str(path)
    profiles = raw.get("profiles", {})
    if profile is not None and isinstance(profiles, dict) and profile in profiles:
        overlay = profiles[profile]
        if not isinstance(overlay, dict):
            raise SuiteError(f"{file}: profiles.{profile}: must be a table (got {_fmt(overlay)})")
        raw = deep_merge(raw, overlay)
        merged.profile_seen = True
    try:
        doc = SuiteDoc.model_validate(raw)
    except ValidationError as err:
        raise _pydantic_problem(file, "", err) from None
    merged.files.append(file)
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


def load_suite(path: str | Path, profile: str | None = None, registry: Registry | None = None) -> Suite:
    """Load, merge and validate the suite at ``path`` (with ``profile`` applied); see the module docstring."""
    registry = registry or get_registry()
    merged = _Merged()
    meta = _load_tree(Path(path), profile, merged, [], None)
    if profile is not None and not merged.profile_seen:
        raise SuiteError(f"{path}: profiles.{profile}: no such profile in this suite or its includes")
    return _Resolver(registry, merged, meta, profile).resolve()


class _Resolver:
    def __init__(self, registry: Registry, merged: _Merged, meta: SuiteMeta, profile: str | None):
        self.registry, self.merged, self.meta, self.profile = registry, merged, meta, profile

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
        try:
            info = self.registry.get(kind, plugin)
        except PluginError as exc:
            raise self.fail(section, name, f"{key}plugin" if key else "plugin", f"{exc} (got {plugin!r})") from None
        try:
            validated = info.obj.Params.model_validate(params)
        except ValidationError as err:
            raise _pydantic_problem(self.where(section, name), f"{section}.{name}.{key}params", err) from None
        return PluginCall(kind, plugin, info.version, validated)

    def data(self, section: str, name: str, dataset: str, split: str, n: int | None) -> DataRef:
        self.ref(section, name, "dataset", "datasets", dataset)
        spec: DatasetSpec = self.merged.sections["datasets"][dataset]
        call = self.call("dataset", spec.plugin, spec.params, "datasets", dataset, "")
        splits = call.obj.splits
        if split not in splits:
            raise self.fail(section, name, "split", f"dataset {dataset!r} has no split {split!r}"
                            f"{suggest(split, splits)}")
        return DataRef(dataset, call, split, n)

    def resolve(self) -> Suite:
        s = self.merged.sections
        suite = Suite(self.meta.name, self.meta.title, self.meta.seed, self.merged.files, self.profile)
        for name, m in s["models"].items():
            suite.models[name] = Model(
                name,
                self.call("model", m.plugin, m.params, "models", name, ""),
                self.call("trainer", m.trainer.plugin, m.trainer.params, "models", name, "trainer."),
                self.data("models", name, m.dataset, m.split, m.n_train),
            )
        attacks = {name: self.attack_instances(name, a) for name, a in s["attacks"].items()}
        for name, e in s["evaluations"].items():
            for i, src in enumerate(e.sources):
                self.ref("evaluations", name, f"sources[{i}]", "models", src)
            targets = None if e.targets == "self" else tuple(e.targets)
            for i, tgt in enumerate(targets or ()):
                self.ref("evaluations", name, f"targets[{i}]", "models", tgt)
            instances: dict[str, PluginCall] = {}
            for i, att in enumerate(e.attacks):
                self.ref("evaluations", name, f"attacks[{i}]", "attacks", att)
                instances.update(attacks[att])
            suite.evaluations[name] = Evaluation(
                name, self.data("evaluations", name, e.dataset, e.split, e.n), tuple(e.sources), instances,
                targets, e.batch_size)
        for name, t in s["tables"].items():
            suite.tables[name] = self.table(name, t, suite)
        return suite

    def attack_instances(self, name: str, spec: AttackSpec) -> dict[str, PluginCall]:
        if not spec.grid:
            return {name: self.call("attack", spec.plugin, spec.params, "attacks", name, "")}
        fields = self.registry.get("attack", spec.plugin).obj.Params.model_fields
        for key in spec.grid:
            if key not in fields:
                raise self.fail("attacks", name, f"grid.{key}",
                                f"not a parameter of attack {spec.plugin!r}{suggest(key, fields)}")
        out = {}
        keys = list(spec.grid)
        for values in itertools.product(*(spec.grid[k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            label = f"{name}(" + ", ".join(f"{k}={v}" for k, v in point.items()) + ")"
            out[label] = self.call("attack", spec.plugin, {**spec.params, **point}, "attacks", name, "")
        return out

    def metric(self, table: str, key: str, ref: str | MetricRef) -> Metric:
        ref = MetricRef(plugin=ref) if isinstance(ref, str) else ref
        call = self.call("metric", ref.plugin, ref.params, "tables", table, f"{key}.")
        label = ref.label or getattr(call.obj, "label", None) or ref.plugin
        if ref.params and not ref.label:
            label += " (" + ", ".join(f"{k}={v}" for k, v in ref.params.items()) + ")"
        return Metric(label, call)

    def table(self, name: str, t: TableSpec, suite: Suite) -> Table:
        if t.rows == t.columns:
            raise self.fail("tables", name, "columns", f"rows and columns are both {t.rows!r}")
        self.ref("tables", name, "evaluation", "evaluations", t.evaluation)
        if (t.metric is None) == (t.metrics is None):
            raise self.fail("tables", name, "metric", "give exactly one of 'metric' and 'metrics'")
        refs = [t.metric] if t.metric is not None else list(t.metrics or [])
        if not refs:
            raise self.fail("tables", name, "metrics", "must list at least one metric")
        if len(refs) > 1 and "metric" not in (t.rows, t.columns):
            raise self.fail("tables", name, "metrics", "several metrics need rows or columns = 'metric'")
        key = "metric" if t.metric is not None else "metrics"
        metrics = tuple(self.metric(name, key if len(refs) == 1 else f"{key}[{i}]", r) for i, r in enumerate(refs))
        ev = suite.evaluations[t.evaluation]
        for axis in t.where:
            if axis in (t.rows, t.columns):
                raise self.fail("tables", name, f"where.{axis}", f"{axis!r} is already the table's rows or columns")
        axes = {t.rows, t.columns, *t.where}
        if "model" in axes and axes & {"source", "target"}:
            raise self.fail("tables", name, "where", "'model' (source = target) excludes 'source' and 'target'")
        if "attack" not in axes:
            raise self.fail("tables", name, "where", "fix 'attack' (e.g. where = { attack = \"fgsm\" }) "
                            "or use it as rows or columns")
        if "model" not in axes and "source" not in axes:
            raise self.fail("tables", name, "where", "fix 'source' or 'model', or use one as rows or columns")
        if ev.targets is not None and "model" not in axes and "target" not in axes:
            raise self.fail("tables", name, "where", "this evaluation has several targets: fix 'target' "
                            "or use it as rows or columns")
        allowed = {"source": ev.sources, "attack": ("clean", *ev.attacks),
                   "target": ev.targets or ev.sources,
                   "model": [s for s in ev.sources if s in ev.targets_of(s)]}
        for axis, value in t.where.items():
            if value not in allowed[axis]:
                raise self.fail("tables", name, f"where.{axis}", f"{value!r} is not among the {axis} values of "
                                f"evaluation {t.evaluation!r}{suggest(value, allowed[axis])}")
        if "model" in axes and not allowed["model"]:
            raise self.fail("tables", name, "rows", f"evaluation {t.evaluation!r} evaluates no source on itself")
        return Table(name, t.title or name, t.evaluation, t.rows, t.columns, metrics, dict(t.where), t.clean,
                     self.where("tables", name))
