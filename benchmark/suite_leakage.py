"""A suite's warning where an evaluation scores a model on test images it, or a part it is made of, was fitted to.

A model trained on the test split (or a trained defense of it, such as a denoising autoencoder, or a member or
ancestor) and evaluated on that split reports figures on its own training data. That is sometimes meant with the
training split (Szegedy et al.'s training error), never silently with the test split: the suite is warned, not
refused, naming the evaluation, the model and the part trained there. Two slices are disjoint only where both cut
the split into the same ``parts`` and use different ones (one permutation, seeded from the suite's seed, cuts
both); two datasets of one plugin (USPS framed and stretched) hold the same images.
"""

from __future__ import annotations

from typing import Any

from rbench.suite_types import DataRef, PluginCall, Suite

#: the split whose images no model of a suite should have been fitted to before it is scored on them
HELD_OUT = "test"

#: what a trained part was fitted to: its own data slice, or (dataset plugin, split) a trainer loads itself whole
Fitted = DataRef | tuple[str, str]


def _fitted(data: DataRef | None, trainer: PluginCall | None) -> list[Fitted]:
    """The data a trained thing reads: its slice (unless its trainer reads none: weights loaded from a file) and
    what its trainer loads besides (``extra_data``: e.g. outlier exposure's outliers)."""
    obj: Any = trainer.obj if trainer is not None else None
    out: list[Fitted] = [data] if data is not None and getattr(obj, "reads_data", True) else []
    extra = getattr(obj, "extra_data", None)
    if callable(extra):
        out += [(str(plugin), str(split)) for plugin, split in extra(trainer.params)]  # type: ignore[union-attr]
    return out


def trained_on(suite: Suite, model: str) -> list[tuple[str, Fitted]]:
    """Every trained part ``model``'s outputs depend on, as (how a message names it, what it was fitted to): the
    model itself, its members and its ``init`` ancestors, and for a defended model its trained defenses and what
    they defend. Each model once (a member shared by two committees is listed once)."""
    seen: set[str] = set()
    found: list[tuple[str, Fitted]] = []

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        m = suite.models[name]
        if m.defended is not None:
            whose = "its" if name == model else f"{name!r}'s"
            found.extend((f"{whose} defense {d.name!r}", data) for d in suite.chain_of(name) if d.trained
                         for data in _fitted(d.data, d.trainer))
            for part in [m.defended.base] if m.defended.base else m.members:
                walk(part)
            return
        found.extend(("it" if name == model else f"model {name!r}", data) for data in _fitted(m.data, m.trainer))
        for part in [*m.members, *([m.init] if m.init else [])]:
            walk(part)

    walk(model)
    return found


def overlap(trained: Fitted, scored: DataRef) -> bool:
    """Whether images of ``scored`` may be among ``trained``'s: the same dataset plugin and split, not cut into
    the same parts of which each takes another (a trainer's extra data is its split whole)."""
    if isinstance(trained, tuple):
        return trained == (scored.call.name, scored.split)
    if trained.call.name != scored.call.name or trained.split != scored.split:
        return False
    return not (trained.parts is not None and trained.parts == scored.parts and trained.part != scored.part)


def leakage_warnings(suite: Suite, evaluation: str) -> list[str]:
    """One warning for each model ``evaluation`` scores (its sources, whose predictions success and transfer rates
    read, and its targets) on the :data:`HELD_OUT` split that one of its trained parts was fitted to (see the
    module), as the text after ``evaluations.<name>`` (the suite's validator puts the file and key before it)."""
    ev = suite.evaluations[evaluation]
    if ev.data.split != HELD_OUT:
        return []
    lines = []
    for model in ev.scored():
        fitted = [what for what, data in trained_on(suite, model) if overlap(data, ev.data)]
        if fitted:
            lines.append(f": scores {model!r} on {ev.data.dataset}'s {HELD_OUT} "
                         f"split, which {fitted[0]} was trained on: its figures are on images it was fitted to "
                         f"(train on split = \"train\", or cut the split into disjoint `parts`)")
    return lines
