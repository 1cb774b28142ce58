"""Models trained once per seed: a model's ``seeds = [0, 1, 2]`` stands for the models ``<name>@0``, ``<name>@1``,
``<name>@2``, alike but for their ``seed``, and its name for all of them where a suite lists models (an
evaluation's ``sources`` and ``targets``, a model's ``members``). A table whose rows are the models gets one row
per seed, and its ``mean_row`` the mean over them with a t interval (seed-to-seed spread, which one seed's
numbers hide). A replica is an ordinary model: its job key is that of a model written out with that seed, so a
store computes nothing twice. Where a suite names one model (``init``, ``base``, ``undefended``, a table's
``where`` or a row's or column's ``model``), the name of a model with seeds is refused: name one replica."""

from __future__ import annotations

from collections.abc import Callable

from rbench.errors import SuiteError
from rbench.suite_files import Merged

#: what joins a model's name and a seed in its replicas' names
MARK = "@"

Fail = Callable[[str, str, str, str], SuiteError]


def expand_seeds(merged: Merged, fail: Fail) -> None:
    """Replace, in ``merged``, every model with ``seeds`` by its replicas, and its name in model lists by theirs;
    ``fail(section, name, key, problem)`` makes the error for a suite that cannot be expanded."""
    models = merged.sections["models"]
    replicas: dict[str, list[str]] = {}
    expanded = {}
    for name, spec in models.items():
        if spec.seeds is None:
            expanded[name] = spec
            continue
        for key in ("members", "defenses", "base"):
            if getattr(spec, key):
                raise fail("models", name, "seeds", f"a model with '{key}' is not trained from a seed of its own: "
                                                    "give seeds to the models it is made of")
        if spec.seed is not None:
            raise fail("models", name, "seed", "give 'seed' or 'seeds', not both")
        twice = next((s for i, s in enumerate(spec.seeds) if s in spec.seeds[:i]), None)
        if twice is not None:
            raise fail("models", name, "seeds", f"{twice} is listed twice")
        names = [f"{name}{MARK}{seed}" for seed in spec.seeds]
        taken = next((n for n in models if n.startswith(f"{name}{MARK}")), None)
        if taken is not None:  # a row 'mlp@1' that is not mlp's seed 1 would read as one
            raise fail("models", name, "seeds", f"model {taken!r} is named as its replicas are (NAME{MARK}SEED): "
                                                "rename it")
        for replica, seed in zip(names, spec.seeds, strict=True):
            expanded[replica] = spec.model_copy(update={"seeds": None, "seed": seed})
            merged.origin[("models", replica)] = merged.origin[("models", name)]
            merged.replica_of[replica] = name
        replicas[name] = names
    if not replicas:
        return
    merged.sections["models"] = expanded

    def listed(names: list[str]) -> list[str]:
        return [r for n in names for r in replicas.get(n, [n])]

    def single(section: str, name: str, key: str, value: str | None) -> None:
        if value in replicas:
            raise fail(section, name, key, f"{value!r} is trained once per seed: name one of its models "
                                           f"({', '.join(replicas[value])})")

    for name, spec in expanded.items():
        for key in ("init", "base", "undefended"):
            single("models", name, key, getattr(spec, key))
        if any(m in replicas for m in spec.members):
            expanded[name] = spec.model_copy(update={"members": listed(spec.members)})
    for name, spec in merged.sections["evaluations"].items():
        update = {"sources": listed(spec.sources)}
        if spec.targets != "self":
            update["targets"] = listed(spec.targets)
        merged.sections["evaluations"][name] = spec.model_copy(update=update)
    for name, spec in merged.sections["tables"].items():
        for axis, value in spec.where.items():
            if axis != "attack":
                single("tables", name, f"where.{axis}", value)
        for lines in ("rows", "columns"):
            for i, selector in enumerate([] if isinstance(getattr(spec, lines), str) else getattr(spec, lines)):
                for key in ("model", "source", "target"):
                    single("tables", name, f"{lines}[{i}].{key}", getattr(selector, key))
