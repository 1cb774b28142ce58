"""What a plugin is and takes, read from the plugin itself: ``rbench plugins NAME`` and ``--kind KIND --params``.

Everything shown comes from the registered object and its pydantic ``Params`` model, so it cannot drift from the
code: the kind, distribution and version of the registry entry, the first paragraph of the plugin's docstring, and
per parameter its type, default, constraints and documentation. A parameter's documentation is its pydantic
``description`` when it has one, else the ``#:`` comment lines right above its declaration (or one ``#:`` comment
after it on its line), or a string literal right below it (an attribute docstring). The code base documents fields
with ``#:`` comments (and, more often, in the Params class's docstring, which is shown as a whole), so these are
read from the class's source with :mod:`ast`: pydantic's ``use_attribute_docstrings`` would read only the string
literals below fields, and only in models that opt in, which a third-party plugin's model need not do. A class
without retrievable source (defined in a REPL) simply has no per-field documentation.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from rbench.manager import PluginInfo


def first_paragraph(text: str | None) -> str:
    """The first paragraph of a docstring, on one line ("" for none)."""
    if not text:
        return ""
    return " ".join(inspect.cleandoc(text).split("\n\n", 1)[0].split())


def later_paragraphs(text: str | None) -> list[str]:
    """The paragraphs of a docstring after its first, each on one line."""
    if not text:
        return []
    return [" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n")[1:] if p.strip()]


def plugin_details(obj: Any) -> list[str]:
    """The paragraphs after the first of the plugin's own docstring (its parameters, what it declares, its
    sources): what ``rbench plugins NAME`` shows below the summary."""
    cls = obj if isinstance(obj, type) else type(obj)
    return later_paragraphs(cls.__dict__.get("__doc__"))


def defense_properties(obj: Any) -> list[str]:
    """What a defense declares that decides how a suite uses and attacks it (:class:`rbench.defense.Defense`),
    one phrase each; a property its params decide is said so, with its value at the defaults where they
    validate."""
    from rbench.defense import Defense

    if not isinstance(obj, Defense):
        return []
    try:
        defaults: Any = obj.Params.model_validate({})
    except ValueError:  # a required parameter: no defaults to read the properties at
        defaults = None

    def declared(method: str, value: bool) -> tuple[bool | None, bool]:  # (value at the defaults, params decide)
        decides = getattr(type(obj), method) is not getattr(Defense, method)
        if not decides:
            return value, False
        try:
            return (None if defaults is None else bool(getattr(obj, method)(defaults))), True
        except Exception:  # noqa: BLE001 -- a plugin's override failing at its defaults: the property is unknown
            return None, True

    out = []
    for method, value, yes, no in (
            ("is_differentiable", obj.differentiable, "differentiable: adaptive gradient attacks follow its gradient",
             "not differentiable: adaptive gradient attacks through it need bpda = true (BPDA)"),
            ("is_randomized", obj.randomized, "randomized: draws seeded from each job's key; set eot on adaptive "
             "evaluations (EOT), and read a cell as one draw per image", "deterministic")):
        at_defaults, decides = declared(method, value)
        text = yes if at_defaults else no
        if decides:
            text = (f"{text} at the defaults; its params decide" if at_defaults is not None
                    else f"{yes.split(':')[0]} or not: its params decide")
        out.append(text)
    if obj.trained:
        out.append("trained by its own job: the suite gives it dataset, trainer (and n_train)")
    if obj.aggregates:
        out.append("aggregates trained models: last in a chain, the defended model lists members")
    return out


def plugin_doc(obj: Any) -> str:
    """The first paragraph of the plugin's own docstring (not one inherited from the engine's base classes),
    else of its module's."""
    cls = obj if isinstance(obj, type) else type(obj)
    own = cls.__dict__.get("__doc__")
    if own:
        return first_paragraph(own)
    module = inspect.getmodule(cls)
    return first_paragraph(getattr(module, "__doc__", None))


def type_text(tp: Any) -> str:
    """A readable type: ``float``, ``list[int]``, ``"ce" | "margin"`` for a Literal, ``float | None``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) if isinstance(a, str | int | float | bool) or a is None else repr(a)
                          for a in args)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(type_text(a) for a in args)
    if tp is type(None) or tp is None:
        return "None"
    if tp is Any:
        return "any"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else type_text(a) for a in args)}]" if args else name
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _constraint_text(item: Any) -> list[str]:
    """``gt=0``, ``min_length=1``, ... for one metadata object (annotated-types' or pydantic's)."""
    if isinstance(item, FieldInfo):
        return [t for m in item.metadata for t in _constraint_text(m)]
    if dataclasses.is_dataclass(item):
        values = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    else:
        values = dict(getattr(item, "__dict__", {}))
    return [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in values.items()
            if v is not None and not k.startswith("_")]


def constraints(field: FieldInfo) -> list[str]:
    """The field's constraints from its metadata, and from ``Annotated`` members of a union (``Annotated[float,
    Field(gt=0)] | None`` keeps ``gt=0`` there); constraints on the items of a list (the values of a dict) are
    shown as ``items (...)`` (``values (...)``)."""
    found: dict[str, list[str]] = {"": [t for m in field.metadata for t in _constraint_text(m)]}

    def walk(tp: Any, prefix: str) -> None:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Annotated:
            found.setdefault(prefix, []).extend(t for m in args[1:] for t in _constraint_text(m))
            walk(args[0], prefix)
        elif origin is typing.Union or origin is types.UnionType:
            for a in args:
                walk(a, prefix)
        elif origin in (list, tuple, set, frozenset) and args:
            for a in args:
                if a is not Ellipsis:
                    walk(a, "items")
        elif origin is dict and len(args) == 2:
            walk(args[1], "values")

    walk(field.annotation, "")
    out = list(dict.fromkeys(found.pop("")))
    return out + [f"{prefix} ({', '.join(dict.fromkeys(texts))})" for prefix, texts in found.items() if texts]


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def default_of(field: FieldInfo) -> tuple[bool, Any]:
    """(required, default as JSON-able value)."""
    if field.is_required():
        return True, None
    if field.default is PydanticUndefined and field.default_factory is not None:
        try:
            return False, _jsonable(field.default_factory())  # type: ignore[call-arg]
        except Exception:  # a factory that needs validated data: say so rather than guess
            return False, "(computed)"
    return False, _jsonable(field.default)


@cache
def _source_docs(cls: type) -> dict[str, str]:
    """Field name -> its ``#:`` comment block (right above it, or at the end of its line) or attribute docstring
    (right below it), read from
    ``cls``'s own source; {} when the source cannot be had."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    lines = source.splitlines()
    body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
    docs: dict[str, str] = {}
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        comment: list[str] = []
        row = node.lineno - 2  # the line above the field (0-based)
        while row >= 0 and lines[row].strip().startswith("#:"):
            comment.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        text = " ".join(comment)
        trailing = lines[node.end_lineno - 1][node.end_col_offset:].strip() if node.end_lineno else ""
        if not text and trailing.startswith("#:"):  # ``eps: float = 0.1  #: doc`` (Sphinx reads it too)
            text = trailing[2:].strip()
        after = body[i + 1] if i + 1 < len(body) else None
        if not text and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                and isinstance(after.value.value, str):
            text = " ".join(after.value.value.split())
        if text:
            docs[node.target.id] = text
    return docs


def field_doc(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    if field.description:
        return " ".join(field.description.split())
    for cls in model.__mro__:  # the class that declares the field documents it
        if cls is BaseModel or not isinstance(cls, type) or not issubclass(cls, BaseModel):
            continue
        if name in cls.__dict__.get("__annotations__", {}):
            return _source_docs(cls).get(name, "")
    return ""


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's type holds (``list[AttackRef]`` -> AttackRef)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models_in(a)]


def params_of(model: type[BaseModel], _seen: tuple[type, ...] = ()) -> list[dict[str, Any]]:
    """Every field of ``model``: name, type, required, default, constraints, doc, and the fields of the models it
    holds (``fields``, per nested model)."""
    out = []
    for name, field in model.model_fields.items():
        required, default = default_of(field)
        entry: dict[str, Any] = {"name": field.alias or name, "type": type_text(field.annotation),
                                 "required": required, "default": default, "constraints": constraints(field),
                                 "doc": field_doc(model, name, field)}
        nested = [m for m in dict.fromkeys(_models_in(field.annotation)) if m not in _seen and m is not model]
        if nested:
            entry["models"] = [{"model": m.__name__, "doc": first_paragraph(m.__dict__.get("__doc__")),
                                "params": params_of(m, (*_seen, model))} for m in nested]
        out.append(entry)
    return out


def describe(info: PluginInfo) -> dict[str, Any]:
    """Everything ``rbench plugins NAME`` shows about one registered plugin, JSON-able."""
    obj = info.obj
    params_model = getattr(obj, "Params", None)
    out: dict[str, Any] = {"kind": info.kind, "name": info.name, "distribution": info.distribution,
                           "version": info.version, "entry_point": info.entry_point, "doc": plugin_doc(obj),
                           "details": plugin_details(obj),
                           "properties": defense_properties(obj)}
    if isinstance(params_model, type) and issubclass(params_model, BaseModel):
        notes = next((c.__dict__["__doc__"] for c in params_model.__mro__
                      if c is not BaseModel and c.__dict__.get("__doc__")
                      and isinstance(c, type) and issubclass(c, BaseModel)), None)
        out["params_model"] = params_model.__name__
        out["params_doc"] = " ".join(inspect.cleandoc(notes).split()) if notes and params_model.model_fields else ""
        out["params"] = params_of(params_model)
        out["defaults_problem"] = _defaults_problem(params_model, out["params"])
    else:
        out["params_model"], out["params_doc"], out["params"], out["defaults_problem"] = None, "", [], None
    return out


def _defaults_problem(model: type[BaseModel], params: list[dict[str, Any]]) -> str | None:
    """Why a suite refuses this plugin's defaults (a default of eps = 5 under le=1, an inf), or None; None too where
    the defaults alone are no call (a parameter required, or a combination its validator asks for)."""
    from rbench.suite_schema import broken_default, non_finite_param

    if any(p["required"] for p in params):
        return None
    try:
        validated = model.model_validate({}, strict=True)
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError: the plugin needs parameters
        return None
    bad = non_finite_param(validated)
    return f"{bad[0]} = {bad[1]} is not a finite number" if bad is not None else broken_default(model, validated)


def _default_text(p: dict[str, Any]) -> str:
    if p["required"]:
        return "required"
    value = p["default"]
    if value is None:
        return "None"
    return value if value == "(computed)" else json.dumps(value)


def render(desc: dict[str, Any], width: int = 100) -> str:
    """``desc`` (from :func:`describe`) as plain text: a header, the doc, one block per parameter."""
    head = f"{desc['name']} ({desc['kind']}) -- distribution {desc['distribution']}, version {desc['version']}"
    lines = [head]
    if desc["doc"]:
        lines += textwrap.wrap(desc["doc"], width, initial_indent="  ", subsequent_indent="  ")
    for paragraph in desc.get("details", []):  # a blank line before each, as in the docstring
        lines += ["", *textwrap.wrap(paragraph, width, initial_indent="  ", subsequent_indent="  ")]
    for phrase in desc.get("properties", []):
        lines += textwrap.wrap(phrase, width, initial_indent="  - ", subsequent_indent="    ")
    if not desc["params"]:
        lines.append("  parameters: none")
        return "\n".join(lines)
    lines.append(f"  parameters ({desc['params_model']}):")
    lines += _render_params(desc["params"], "    ", width)
    if desc["params_doc"]:
        lines += textwrap.wrap(f"notes: {desc['params_doc']}", width, initial_indent="  ", subsequent_indent="    ")
    if desc.get("defaults_problem"):
        lines += textwrap.wrap(f"warning: a suite refuses its defaults: {desc['defaults_problem']}", width,
                               initial_indent="  ", subsequent_indent="    ")
    return "\n".join(lines)


def _render_params(params: list[dict[str, Any]], indent: str, width: int) -> list[str]:
    lines = []
    for p in params:
        extra = f"; {', '.join(p['constraints'])}" if p["constraints"] else ""
        lines.append(f"{indent}{p['name']}: {p['type']} = {_default_text(p)}{extra}")
        if p["doc"]:
            lines += textwrap.wrap(p["doc"], width, initial_indent=indent + "    ", subsequent_indent=indent + "    ")
        for nested in p.get("models", []):
            lines += textwrap.wrap(f"{nested['model']}:" + (f" {nested['doc']}" if nested["doc"] else ""), width,
                                   initial_indent=indent + "    ", subsequent_indent=indent + "      ")
            lines += _render_params(nested["params"], indent + "      ", width)
    return lines
