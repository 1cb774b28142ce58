"""Your own model, evaluated: the suite that ``rbench eval`` and :func:`rbench.evaluate` generate and run.

The generated suite is an ordinary suite (written into the run folder as ``suite.toml``): the user's model is a
``checkpoint`` model (default trainer ``none``: evaluated as it is), attacked by the default attack set or the
attacks given, and tabulated as robust accuracy -- or, with a base suite, added as one more model to every
evaluation of that suite on the same dataset, so it appears beside the suite's models in every table and transfer
matrix.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from rbench.errors import PluginError, RbenchError
from rbench.manager import get_registry, suggest
from rbench.suite_schema import SAFE_NAME
from rbench.suite_types import instance_label
from rbench.tomlfile import MAX_NAME, unrepresentable

if TYPE_CHECKING:
    from rbench.results import RunResults

#: the default attack set's Linf budgets (the usual MNIST levels: a moderate and the standard large one)
DEFAULT_EPS = (0.1, 0.3)
#: the test images evaluated by default (RobustBench's usual 1000 as well)
DEFAULT_N = 1000
#: the single evaluation and table of a suite generated without a base suite
EVALUATION, TABLE = "eval", "robust_accuracy"


def default_attacks(input_shape: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """FGSM and PGD (Linf, 40 steps, random start) at :data:`DEFAULT_EPS`, PGD on the logit margin as well (its
    gradient does not vanish where the softmax saturates, as the cross-entropy's does: a model whose logits are
    scaled up looks robust to the others, and the engine fails their cells for it), and Gaussian noise of the L2
    size an FGSM perturbation of the same eps has when every pixel moves by eps (eps * sqrt(pixels), before
    clipping): the random baseline an attack must beat."""
    pixels = math.prod(input_shape)
    pgd = {"norm": "linf", "steps": 40, "random_start": True}
    return {
        "fgsm": {"plugin": "fgsm", "grid": {"eps": list(DEFAULT_EPS)}},
        "pgd": {"plugin": "pgd", "params": pgd, "grid": {"eps": list(DEFAULT_EPS)}},
        "pgd_margin": {"plugin": "pgd", "params": {**pgd, "loss": "margin"}, "grid": {"eps": list(DEFAULT_EPS)}},
        "noise": {"plugin": "gaussian_noise", "params": {"norm": "l2"},
                  "grid": {"eps": [round(e * math.sqrt(pixels), 4) for e in DEFAULT_EPS]}},
    }


def _value(text: str) -> Any:
    """A parameter value as TOML reads it (0.3, 100, true, "l2", [1, 2], {steps = 50}); a bare word (``l2``,
    ``O'Brien``) is a string. ValueError for text TOML cannot read that is no bare word (an unclosed quote or
    bracket, a malformed list): read as a string, it would pass as some other value."""
    if not text:
        raise ValueError("no value after '='")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as exc:
        if text[:1] in "\"'" or any(c in text for c in "\"[]{}"):
            raise ValueError(f"not a TOML value ({re.sub(r' [(]at [^)]*[)]$', '', str(exc))})") from None
        return text


def _items(text: str) -> list[str]:
    """``text`` split at its top-level commas: not those inside brackets, braces or quoted strings, so that a value
    may be a TOML list or inline table (``bounds=[0, 1]``, ``kwargs={steps=50, overshoot=0.02}``). A quote opens a
    string only where a value starts (after ``=``, ``,``, ``[`` or ``{``), so an apostrophe inside a bare word is
    a letter; ``\\`` escapes inside a basic string as in TOML. ValueError for an unclosed quote or bracket, or a
    closing bracket with none open. Hand-written: a TOML parser reads values, not this command-line shorthand
    around them."""
    items: list[str] = []
    depth, quote, start, escaped, last = 0, "", 0, False, "="
    for i, c in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif c == "\\" and quote == '"':
                escaped = True
            elif c == quote:
                quote, last = "", c
            continue
        if c in "\"'" and last in "=,[{":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"a {c!r} closes nothing")
        elif c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
        if not c.isspace():
            last = c
    if quote or depth:
        raise ValueError("a quote left open" if quote else "a bracket left open")
    return [*items, text[start:]]


def parse_attack(text: str, option: str = "--attack") -> tuple[str, dict[str, Any]]:
    """``"pgd:eps=0.3,steps=100"`` -> ``("pgd", {"eps": 0.3, "steps": 100})``; ``"fgsm:eps=0.1"``; a plugin
    name alone has no params. Values are read as TOML values (numbers, booleans, strings, lists, inline tables:
    ``foolbox:attack=L2DeepFoolAttack,kwargs={steps=50}``). Errors name ``option`` (the CLI's ``--attack``,
    ``rbench.evaluate``'s ``attacks``)."""
    plugin, _, rest = text.partition(":")
    plugin = plugin.strip()
    if not plugin:
        raise RbenchError(f"{option} {text!r}: write NAME or NAME:key=value,key=value (e.g. pgd:eps=0.3,steps=100)")
    params: dict[str, Any] = {}
    try:
        items = _items(rest) if rest else []
    except ValueError as exc:
        raise RbenchError(f"{option} {text!r}: {exc}") from None
    for item in (part.strip() for part in items):
        if not item:  # "eps=0.3,,steps=100": a value left out, or a stray comma
            raise RbenchError(f"{option} {text!r}: an empty item between commas")
        key, eq, given = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise RbenchError(f"{option} {text!r}: {item!r} is not key=value")
        if key in params:
            raise RbenchError(f"{option} {text!r}: {key!r} is given twice")
        if any(c in given for c in "\n\r#"):  # TOML would read a second line or a comment and drop it silently
            raise RbenchError(f"{option} {text!r}: {key}: one value per key (no line break or '#')")
        try:
            value = params[key] = _value(given.strip())
        except ValueError as exc:
            raise RbenchError(f"{option} {text!r}: {key}: {exc}") from None
        if isinstance(value, float) and unrepresentable(value):
            what = "not a finite number" if not math.isfinite(value) else "not a 32-bit float's value"
            raise RbenchError(f"{option} {text!r}: {key}: {what}")
    return plugin, params


def attack_entries(attacks: Iterable[str | tuple[str, dict[str, Any]]], option: str = "--attack"
                   ) -> dict[str, dict[str, Any]]:
    """Suite entries for attacks given as ``"name:k=v,..."`` or ``(plugin, params)``, each checked against its
    plugin's parameters now (one line naming the attack). A param given at its default value is left out (the
    job's key is the same, so is its label); the others are a one-value grid, so the table labels show them:
    ``pgd(eps=0.3, steps=100)``. A plugin given again is an entry named by that label (``pgd(eps=0.1)`` beside
    ``pgd(eps=0.3)``; ``pgd-2`` where the label is longer than a name may be); one given twice alike is an
    error. Errors name ``option``."""
    entries: dict[str, dict[str, Any]] = {}
    labels: set[str] = set()
    for given in attacks:
        plugin, params = parse_attack(given, option) if isinstance(given, str) else given
        shown = given if isinstance(given, str) else f"{plugin}:{params}"
        try:
            info = get_registry().get("attack", plugin)
        except PluginError as exc:
            raise RbenchError(f"{option} {shown!r}: {exc}") from None
        fields = info.obj.Params.model_fields
        unknown = [k for k in params if k not in fields]
        if unknown and info.obj.Params.model_config.get("extra") != "allow":  # said before "a field is required"
            raise RbenchError(f"{option} {shown!r}: unknown parameter {unknown[0]!r} of attack {plugin!r}"
                              f"{suggest(unknown[0], fields)}")
        try:
            validated = info.obj.Params.model_validate(params, strict=True)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            hint = f" (give it as {plugin}:{where}=VALUE)" if first["type"] == "missing" and isinstance(given, str) \
                and where in fields else ""
            raise RbenchError(f"{option} {shown!r}: {where}: {first['msg']}{hint}") from None
        params = {k: v for k, v in sorted(params.items()) if k not in fields or fields[k].is_required()
                  or getattr(validated, k) != fields[k].default}  # in name order: one label however it is spelt
        label = instance_label(plugin, params)
        if label in labels:
            raise RbenchError(f"{option} {shown!r}: given twice (as {label})")
        labels.add(label)
        as_grid = {"plugin": plugin, **({"grid": {k: [v] for k, v in params.items()}} if params else {})}
        if plugin not in entries:
            entries[plugin] = as_grid
        elif params and len(label) <= MAX_NAME:
            entries[label] = {"plugin": plugin, "params": params}
        else:
            name, i = plugin, 1
            while name in entries:
                i += 1
                name = f"{plugin}-{i}"
            entries[name] = as_grid
    if not entries:
        raise RbenchError("no attacks given")
    return entries


def model_name(module: str, given: str | None = None) -> str:
    """The model's name in the tables: ``given``, else the class name of ``module`` ("nets.py:MyCNN" -> "MyCNN")."""
    if given is None and not module.rpartition(":")[2].strip():
        raise RbenchError(f"MODULE {module!r}: name the class, as path/to/nets.py:Class or package.module:Class")
    name = given if given is not None else module.rpartition(":")[2]
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise RbenchError(f"--name {name!r}: use 1-{MAX_NAME} printable characters")
    return name


def suite_name(model: str) -> str:
    """A safe suite (and run-folder) name for evaluating ``model``."""
    name = "eval-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("._-").replace("..", "_")
    name = name[:MAX_NAME].rstrip("._-")
    return name if SAFE_NAME.fullmatch(name) else "eval"


def checkpoint_entry(params: dict[str, Any], dataset: str, base: Path) -> dict[str, Any]:
    """The suite entry of a ``checkpoint`` model with ``params`` (file paths relative to ``base`` made absolute),
    validated now: a missing module, class or weights file, a constructor that fails, a state_dict that does not
    match is one line naming the model's module."""
    plugin = get_registry().get("model", "checkpoint").obj
    data = dataset_plugin(dataset)
    params = plugin.absolute_params(dict(params), base)
    where = params.get("module") or "the model"
    try:
        validated = plugin.Params.model_validate(params, strict=True, context={"base": base})
        plugin.check(validated, tuple(data.input_shape), int(data.num_classes))
    except ValidationError as err:
        first = err.errors()[0]
        message = re.sub(r"^Value error, ", "", str(first["msg"]))
        loc = ".".join(str(p) for p in first["loc"])
        raise RbenchError(f"{where}: {loc + ': ' if loc else ''}{' '.join(message.split())}") from None
    except ValueError as exc:
        raise RbenchError(f"{where}: {' '.join(str(exc).split())}") from None
    return {"plugin": "checkpoint", "params": params, "dataset": dataset}


def dataset_plugin(name: str) -> Any:
    """The dataset plugin ``name`` (``--dataset``), or one line naming the known ones."""
    try:
        return get_registry().get("dataset", name).obj
    except PluginError as exc:
        raise RbenchError(f"--dataset {name!r}: {exc}") from None


def near_chance(results: RunResults, name: str, num_classes: int,
                normalization: str = "--mean/--std add a normalization") -> str | None:
    """A warning when ``name``'s clean accuracy in the generated table is below twice chance (or a quarter of the
    way from chance to 100% where that is lower: with few classes) (a model fed inputs
    in another range or normalization than it was trained on, or the wrong weights, reads as "not robust" at
    every attack, which says nothing); None otherwise or when the table has no such cell. ``normalization``: how
    the caller adds one (the CLI's options, the API's model)."""
    table = next((t for t in results.tables if t.name == TABLE), None)
    try:
        value = None if table is None else table.cell("clean", name).value
    except KeyError:
        return None
    chance = 100 / num_classes
    if value is None or value >= min(2 * chance, chance + (100 - chance) / 4):  # two classes: 62.5%, not 100%
        return None
    return (f"{name}'s clean accuracy is {value:.1f}%, near chance ({chance:.0f}%): are its inputs what it was "
            f"trained on (rbench feeds [0, 1] pixels; {normalization}) and are these its weights?")


def standalone_suite(name: str, model: dict[str, Any], dataset: str, n: int,
                     attacks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A suite of one model: its clean and robust accuracy on ``n`` test images of ``dataset`` under ``attacks``."""
    return {
        "suite": {"name": suite_name(name), "title": f"{name} on {dataset}"},
        "datasets": {dataset: {"plugin": dataset}},
        "models": {name: {**model, "dataset": dataset}},
        "attacks": attacks,
        "evaluations": {EVALUATION: {"dataset": dataset, "split": "test", "n": n, "sources": [name],
                                     "attacks": list(attacks)}},
        "tables": {TABLE: {"title": f"Accuracy of {name} on {n} {dataset} test images, clean and under attack "
                                    "(white-box)",
                           "evaluation": EVALUATION, "rows": "attack", "columns": "model", "metric": "accuracy"}},
    }


def add_to_suite(doc: dict[str, Any], name: str, model: dict[str, Any], dataset: str, where: str) -> dict[str, Any]:
    """``doc`` (a flattened suite) with the model added: trained (loaded) on the suite's dataset entry whose plugin
    is ``dataset``, listed as a source -- and as a target where targets are listed -- of every evaluation on that
    dataset. ``where`` names the suite in errors."""
    datasets = [k for k, d in doc.get("datasets", {}).items() if d.get("plugin") == dataset]
    if not datasets:
        have = sorted({d.get("plugin") for d in doc.get("datasets", {}).values()})
        raise RbenchError(f"--suite {where}: no dataset of plugin {dataset!r} (--dataset); it has {have}")
    if name in doc.get("models", {}):
        raise RbenchError(f"--suite {where}: already has a model {name!r}; give the model another name (--name)")
    doc.setdefault("models", {})[name] = {**model, "dataset": datasets[0]}
    added = 0
    for ev in doc.get("evaluations", {}).values():
        if ev.get("dataset") not in datasets:
            continue
        ev["sources"] = [*ev["sources"], name]
        if isinstance(ev.get("targets"), list):
            ev["targets"] = [*ev["targets"], name]
        added += 1
    if not added:
        raise RbenchError(f"--suite {where}: no evaluation on a {dataset!r} dataset to add the model to")
    return doc
