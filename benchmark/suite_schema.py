"""The suite file's schema: the TOML document's sections and keys as strict pydantic models, the rules for entry
names and labels, and one-line reports of what breaks them.

Limits (the input is untrusted; each breach is one line): the suite name and table names (they become file
names) match :data:`SAFE_NAME` and are at most :data:`MAX_NAME` characters; every other entry name (datasets,
models, attacks, evaluations, profiles) is at most :data:`MAX_NAME` printable characters, a row, column or metric
label at most :data:`MAX_LABEL`; an attack's grid expands to at most :data:`MAX_GRID` instances. How files are
read and merged: :mod:`rbench.suite_files`; how entries are resolved to plugin calls: :mod:`rbench.suite`.
"""

from __future__ import annotations

import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, AliasPath, BaseModel, ConfigDict, Field, ValidationError

from rbench.errors import SuiteError
from rbench.manager import close_match
from rbench.precision import Precision
from rbench.specs import ATTACK_BATCH
from rbench.tomlfile import MAX_NAME, key_part

SECTIONS = ("datasets", "defenses", "models", "attacks", "evaluations", "tables")
Axis = Literal["source", "target", "model", "attack", "metric"]
Name = Annotated[str, Field(min_length=1)]

#: the longest a job may be given, in seconds (115 days): ``job_timeout`` and ``--job-timeout`` (1e300 overflowed
#: every timer)
MAX_JOB_TIMEOUT = 1e7
#: an attack's grid expands to at most this many instances (shipped suites: 3)
MAX_GRID = 1000
#: the longest row, column or metric label
MAX_LABEL = 100
#: the suite name and table names become file and folder names (``runs/<suite>-<time>``,
#: ``reliability_<table>.png``): a letter or digit, then letters, digits, ``_``, ``.``, ``-``; never ``..``
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SAFE_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"


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

#: the longest title (a suite's or a table's: one line above a table) and the longest description
MAX_TITLE, MAX_DESCRIPTION = 300, 10_000


def _title(value: str) -> str:
    if value:
        problem = name_problem(value, safe=False, limit=MAX_TITLE)
        if problem:  # an escape sequence would reach the terminal and every report as it is
            raise ValueError(f"title {problem}")
    return value


def _description(value: str) -> str:
    if len(value) > MAX_DESCRIPTION:
        raise ValueError(f"description is {len(value)} characters long, more than {MAX_DESCRIPTION}")
    if not value.replace("\n", "").replace("\t", "").isprintable():
        raise ValueError("description holds a control or unprintable character (other than newlines and tabs)")
    return value


#: a title: one printable line
Title = Annotated[str, AfterValidator(_title)]
#: free text: printable, with newlines and tabs
Description = Annotated[str, AfterValidator(_description)]


class _Strict(BaseModel):
    """TOML has real types: no coercion (a string "0" is not a number), no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True)


class SuiteMeta(_Strict):
    name: Name
    title: Title = ""
    description: Description = ""
    seed: Annotated[int, Field(ge=0)] = 0
    include: list[str] = []
    #: published-table files (relative to this suite file) that `rbench compare` puts beside the results
    published: list[str] = []
    #: seconds any one job may run (a job that runs longer fails alone); None: no limit. ``--job-timeout`` wins.
    job_timeout: Annotated[float, Field(gt=0, le=MAX_JOB_TIMEOUT, allow_inf_nan=False)] | None = None
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
    #: train it once per seed: models ``<name>@<seed>``, alike but for their seeds, for which the name stands in
    #: ``sources``, ``targets`` and ``members`` (:mod:`rbench.suite_seeds`)
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=1000)] | None = None


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
    title: Title = ""
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
    #: a last row (column) with this label: in each column (row), the mean of the other rows' (columns') values
    #: with a Student t interval over them, e.g. over models alike but for their seeds
    mean_row: Label | None = None
    mean_column: Label | None = None


class SuiteDoc(_Strict):
    suite: SuiteMeta
    datasets: dict[str, DatasetSpec] = {}
    defenses: dict[str, DefenseSpec] = {}
    models: dict[str, ModelSpec] = {}
    attacks: dict[str, AttackSpec] = {}
    evaluations: dict[str, EvaluationSpec] = {}
    tables: dict[str, TableSpec] = {}
    profiles: dict[str, dict[str, Any]] = {}


def brief(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else f"{text[:80]}..."


def _keypath(loc: tuple[Any, ...]) -> str:
    return ".".join(key_part(p) for p in loc if not str(p).startswith("function-"))


#: the parts of a pydantic error location that name a type (a branch of a union), not a key
_TYPE_TAG = re.compile(r"str|int|float|bool|MetricRef|Selector|[a-z-]+\[.*\]|constrained-.*", re.DOTALL)


def more_problems(err: ValidationError) -> str:
    """``" (and 2 more problems)"`` after the first of ``err``'s problems, or ``""`` where it is the only one."""
    others = len(err.errors()) - 1
    return f" (and {others} more problem{'s' * (others > 1)})" if others else ""


def pydantic_problem(file: str, prefix: str, err: ValidationError, model: type[BaseModel] | None = None
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
    more = more_problems(err)
    given = first.get("input")
    # a table's own validator names what is wrong in it: the whole table, cut at 80 characters, said no more
    got = "" if first["type"] == "value_error" and isinstance(given, dict) else f" (got {brief(given)})"
    return SuiteError(f"{file}: {path}: {detail}{got}{hint}{more}")


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


def accepted_keys(params_type: type[BaseModel]) -> set[str]:
    """The top-level keys validating with ``params_type`` reads: each field's validation alias (every choice, the
    first step of a path), else its alias (an ``alias_generator``'s too), and its name where it has none or the
    config lets names through (``populate_by_name`` / ``validate_by_name``)."""
    config = params_type.model_config
    by_name = bool(config.get("populate_by_name") or config.get("validate_by_name"))
    known: set[str] = set()
    for name, info in params_type.model_fields.items():
        alias = info.validation_alias if info.validation_alias is not None else info.alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [] if alias is None else [alias]
        aliases = {c if isinstance(c, str) else str(c.path[0]) for c in choices
                   if isinstance(c, str) or (isinstance(c, AliasPath) and c.path)}
        known.update(aliases)
        if not aliases or by_name:
            known.add(name)
    return known


def ignored_keys(params_type: type[BaseModel], given: dict[str, Any]) -> list[str]:
    """The keys of ``given`` that validating it with a plugin's ``params_type`` would drop without a word: a
    Params left at pydantic's default ``extra="ignore"`` accepts a misspelt ``stepz = 5`` and runs with the
    default. None when the Params chose ``extra="allow"`` (it keeps them) or ``"forbid"`` (it refuses them)."""
    if params_type.model_config.get("extra", "ignore") != "ignore":
        return []
    return sorted(set(given) - accepted_keys(params_type))


def ignored_key_problem(params_type: type[BaseModel], given: dict[str, Any]) -> tuple[str, str] | None:
    """(the first key :func:`ignored_keys` finds, "unknown key ... ; did you mean ...?") or None."""
    ignored = ignored_keys(params_type, given)
    if not ignored:
        return None
    known = sorted(accepted_keys(params_type))
    match = close_match(ignored[0], known)
    hint = f"; did you mean {match!r}?" if match is not None else ""
    return ignored[0], f"unknown key (its params: {', '.join(known) or 'none'}){hint}"


def broken_default(params_type: type[BaseModel], validated: BaseModel, base: Path | None = None) -> str | None:
    """Why a default ``validated`` took from its Params breaks the Params' own rules, or None. pydantic does not
    validate defaults, so a default such as ``eps = 5.0`` under ``le=1`` would otherwise fail in every job."""
    defaulted = set(type(validated).model_fields) - validated.model_fields_set
    if not defaulted:
        return None
    try:  # as a job reads them: strictly, from their JSON (a set default passed, then failed every job)
        params_type.model_validate(validated.model_dump(mode="json"), strict=True,
                                   context=None if base is None else {"base": base})
    except ValidationError as err:
        for e in err.errors():
            if e["loc"] and e["loc"][0] in defaulted:
                return (f"has a default {e['loc'][0]} = {brief(getattr(validated, str(e['loc'][0])))} that breaks "
                        f"its own rule: {e['msg']}")
    except Exception:  # noqa: BLE001 - a Params that does not round-trip through JSON is not this check's concern
        return None
    return None


def non_finite_param(validated: BaseModel) -> tuple[str, float] | None:
    """The key path (``"eps"``, ``"kwargs.steps"``, ``"widths.0"``) and value of the first non-finite number in
    ``validated`` as a job's key records it, or None: an inf or nan passed validation (a default, or TOML's
    ``inf``) and the run computed every job, then failed writing results.json (JSON has no inf)."""

    def first(value: Any, path: str) -> tuple[str, float] | None:
        if isinstance(value, float) and not math.isfinite(value):
            return path, value
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            found = first(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None

    try:
        return first(validated.model_dump(mode="python", round_trip=True), "")
    except Exception:  # noqa: BLE001 - a Params that does not dump is not this check's concern
        return None


def validate_params(params_type: type[BaseModel], given: dict[str, Any], owner: str | None = None) -> BaseModel:
    """``given`` validated strictly by a plugin's ``params_type``, as a suite validates it; a key it would ignore
    (:func:`ignored_keys`) is a ValueError naming it, with a close match, as is a non-finite number
    (:func:`non_finite_param`) or a default that breaks the Params' own rules (:func:`broken_default`); what
    the Params refuse is a ValueError of one line (:func:`pydantic_problem`), with a close match for a misspelt key.
    ``owner`` (e.g. ``attack 'pgd'``) starts each message; else the Params class's name."""
    who = owner or params_type.__name__
    problem = ignored_key_problem(params_type, given)
    if problem is not None:
        raise ValueError(f"{who}: params key {problem[0]!r}: {problem[1]}")
    try:
        validated = params_type.model_validate(given, strict=True)
    except ValidationError as err:  # one line, as a suite says it (pydantic's own text spans a dozen lines)
        raise ValueError(str(pydantic_problem(who, "params", err, params_type))) from None
    bad = non_finite_param(validated)  # what a suite refuses before any work (rbench.suite), refused here alike
    if bad is not None:
        raise ValueError(f"{who}: params.{bad[0]}: {bad[1]} is not a finite number")
    default = broken_default(params_type, validated)
    if default is not None:
        raise ValueError(f"{who}: {params_type.__name__} {default}")
    return validated
