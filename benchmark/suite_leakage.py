"""A suite's warning where an evaluation scores a model on test images it, or a part it is made of, was fitted to.

A model trained on the test split (or a trained defense of it, such as a denoising autoencoder, or a member or
ancestor) and evaluated on that split reports figures on its own training data. That is sometimes meant with the
training split (Szegedy et al.'s training error), never silently with the test split: the suite is warned, not
refused, naming the evaluation, the model and the part trained there. Two slices are disjoint only where both cut
the split into the same ``parts`` and use different ones (one permutation, seeded from the suite's seed, cuts
both); two datasets of one plugin (USPS framed and stretched) hold the same images.
"""

from __future__ import annotations

from rbench.suite_types import DataRef, Suite

#: the split whose images no model of a suite should have been fitted to before it is scored on them
HELD_OUT = "test"


def trained_on(suite: Suite, model: str) -> list[tuple[str, DataRef]]:
    """Every trained part ``model``'s outputs depend on, as (how a message names it, what it was trained on): the
    model itself, its members and its ``init`` ancestors, and for a defended model its trained defenses and what
    they defend. Each model once (a member shared by two committees is listed once)."""
    seen: set[str] = set()
    found: list[tuple[str, DataRef]] = []

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        m = suite.models[name]
        if m.defended is not None:
            found.extend((f"its defense {d.name!r}", d.data) for d in suite.chain_of(name)
                         if d.trained and d.data is not None)
            for part in [m.defended.base] if m.defended.base else m.members:
                walk(part)
            return
        if m.data is not None:
            found.append(("it" if name == model else f"model {name!r}", m.data))
        for part in [*m.members, *([m.init] if m.init else [])]:
            walk(part)

    walk(model)
    return found


def overlap(trained: DataRef, scored: DataRef) -> bool:
    """Whether images of ``scored`` may be among ``trained``'s: the same dataset plugin and split, not cut into
    the same parts of which each takes another."""
    if trained.call.name != scored.call.name or trained.split != scored.split:
        return False
    return not (trained.parts is not None and trained.parts == scored.parts and trained.part != scored.part)


def leakage_warnings(suite: Suite, evaluation: str, where: str) -> list[str]:
    """One line for each model ``evaluation`` scores (its sources and targets) on the :data:`HELD_OUT` split that
    one of its trained parts was fitted to (see the module); ``where`` names the suite file."""
    ev = suite.evaluations[evaluation]
    if ev.data.split != HELD_OUT:
        return []
    scored = dict.fromkeys(t for s in ev.sources for t in ev.targets_of(s))
    lines = []
    for model in scored:
        fitted = [what for what, data in trained_on(suite, model) if overlap(data, ev.data)]
        if fitted:
            lines.append(f"{where}: evaluations.{evaluation}: scores {model!r} on {ev.data.dataset}'s {HELD_OUT} "
                         f"split, which {fitted[0]} was trained on: its figures are on images it was fitted to "
                         f"(train on split = \"train\", or cut the split into disjoint `parts`)")
    return lines
