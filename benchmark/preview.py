"""What a run would do, without doing it (``rbench run --dry-run``): the plan's jobs per kind, how many the store
holds, and the compute time of the rest estimated from the store's own records.

Every stored entry records the seconds its job took (``provenance.seconds``, see :mod:`rbench.provenance`) and its
job spec. A job to compute is estimated from stored jobs *similar* to it: the same kind and the same plugin (an
attack's or transform's plugin; a training job's trainer and model plugins; an evaluation's model plugin), else any
stored job of the same kind (never a checkpoint's load or a defended model's assembly for a training, nor the
reverse: those take no time) -- such an estimate is *borrowed* from other plugins' jobs and counted as such, for
the output to say how rough it is; of those, the ones of the job's precision where there are any. Where both sides know
how much they compute -- samples times an attack's steps or a trainer's epochs (:func:`work`) --, the estimate is
the median seconds per such sample-pass of the similar jobs times the job's; otherwise their median seconds. A job
with no similar stored job is counted as unknown: no number is made up for it. The estimate is compute time on one
worker (workers running in parallel finish sooner), from whatever machine stored the entries.

The stored jobs' own records add up to what they took (``recorded``; ``unrecorded``: stored jobs without a
``seconds``): with the estimate, the compute a cold run of the plan takes on one worker, on the machines that
stored them (under whatever load those had).

Nothing here writes: the store is read (``Store.has``, the same test the runner starts from, and the entries'
recorded metadata), never created, locked or changed.
"""

from __future__ import annotations

import functools
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rbench.manager import get_plugin
from rbench.plan import Plan
from rbench.store import Store
from rbench.trust import stored_jobs

#: the job kinds in the order a run computes them
KINDS = ("train", "attack", "transform", "eval")

Spec = dict[str, Any]


@dataclass
class KindPreview:
    """The jobs of one kind: how many, how many stored, and the estimate for the rest (``seconds`` over the
    ``to_compute - unknown`` jobs that have similar stored jobs; ``unknown``: jobs without any; ``borrowed``: jobs
    estimated from other plugins' jobs of their kind); ``recorded``: the seconds the stored ones took, over all but
    the ``unrecorded`` ones."""

    kind: str
    jobs: int = 0
    stored: int = 0
    seconds: float = 0.0
    unknown: int = 0
    recorded: float = 0.0
    unrecorded: int = 0
    borrowed: int = 0

    @property
    def to_compute(self) -> int:
        return self.jobs - self.stored


@dataclass
class Preview:
    kinds: list[KindPreview] = field(default_factory=list)

    @property
    def jobs(self) -> int:
        return sum(k.jobs for k in self.kinds)

    @property
    def stored(self) -> int:
        return sum(k.stored for k in self.kinds)

    @property
    def seconds(self) -> float:
        return sum(k.seconds for k in self.kinds)

    @property
    def unknown(self) -> int:
        return sum(k.unknown for k in self.kinds)

    @property
    def recorded(self) -> float:
        return sum(k.recorded for k in self.kinds)

    @property
    def borrowed(self) -> int:
        return sum(k.borrowed for k in self.kinds)

    @property
    def unrecorded(self) -> int:
        return sum(k.unrecorded for k in self.kinds)


#: the similarity of a training job that trains nothing: a checkpoint loaded (a trainer that reads no data), a
#: defended model assembled (no trainer)
ASSEMBLY = "(assembly)"


def _reads_data(trainer: str) -> bool:
    """Whether the trainer plugin ``trainer`` trains on data (True for one not installed: assume it does)."""
    from rbench.manager import get_registry

    info = get_registry().plugins["trainer"].get(trainer)
    return bool(getattr(info.obj, "reads_data", True)) if info is not None and info.obj is not None else True


def similarity(spec: Spec, spec_of: Callable[[str], Spec]) -> str:
    """What makes two jobs of one kind similar: the plugin doing the work (see the module docstring)."""
    kind = spec.get("kind")
    if kind in ("attack", "transform"):
        return str(spec.get(kind, {}).get("plugin"))
    if kind == "train":
        if "trainer" not in spec or not _reads_data(str(spec["trainer"].get("plugin"))):
            return ASSEMBLY
        made = spec.get("model") or {}
        model = made.get("plugin") or ("(defended)" if "defended" in made else None)
        if model is None and "defense" in spec:
            model = f"defense {spec['defense'].get('plugin')}"
        return f"{spec['trainer'].get('plugin')} {model}"
    if kind == "eval":
        trained = spec_of(str(spec.get("model")))
        made = trained.get("model") or {}
        return str(made.get("plugin") or ("(defended)" if "defended" in made else "?"))
    return "?"


def slice_size(data: Spec) -> int | None:
    """How many samples a data slice's spec names: its ``n``; for a whole split (``n`` None), its part's size or
    the split's as the dataset plugin gives it without loading it (None: unknown)."""
    n = data.get("n")
    if n is not None:
        return int(n)
    parts, part = data.get("parts"), data.get("part", 0)
    if isinstance(parts, list) and isinstance(part, int) and 0 <= part < len(parts):
        return int(parts[part])
    try:
        return _split_size(str(data["dataset"]["plugin"]), str(data["split"]), json.dumps(data["dataset"]["params"]))
    except (KeyError, TypeError):
        return None


@functools.cache
def _split_size(name: str, split: str, params: str) -> int | None:
    try:
        plugin = get_plugin("dataset", name)
        size = plugin.size(split, plugin.Params.model_validate(json.loads(params)))
    except Exception:  # a plugin gone, params of another version: no size, the estimate falls back on seconds
        return None
    return int(size) if isinstance(size, int) and size > 0 else None


def samples(spec: Spec, spec_of: Callable[[str], Spec]) -> int | None:
    """How many samples a job processes, from its spec (None: unknown)."""
    if "generate" in spec:
        g = spec["generate"]
        return int(g["classes"]) * int(g["per_class"])
    data = spec.get("data")
    if isinstance(data, dict):
        return slice_size(data)
    given = spec.get("input")
    if isinstance(given, dict):
        if "clean" in given:
            return slice_size(given["clean"])
        if "advset" in given:
            return samples(spec_of(str(given["advset"])), spec_of)
    return None


#: the params that count an attack's passes over its samples, and a trainer's
PASSES = {"attack": ("steps", "max_iter", "generations"), "train": ("epochs",)}


def work(spec: Spec, spec_of: Callable[[str], Spec]) -> float | None:
    """How much a job computes, in sample-passes: its samples times an attack's steps (``steps``, ``max_iter``,
    ``generations``) or a trainer's ``epochs`` where its params give them (None: the samples are unknown). A PGD
    of 100 steps then costs 100 FGSMs in the estimate, and 20 epochs 20 one-epoch trainings."""
    n = samples(spec, spec_of)
    if not n:
        return None
    kind = str(spec.get("kind"))
    call = spec.get("trainer" if kind == "train" else kind)
    params = call.get("params", {}) if isinstance(call, dict) else {}
    for name in PASSES.get(kind, ()):
        passes = params.get(name) if isinstance(params, dict) else None
        if isinstance(passes, int) and not isinstance(passes, bool) and passes > 0:
            return float(n * passes)
    return float(n)


def recorded_seconds(meta: dict[str, Any]) -> float | None:
    """The seconds a stored job took, from its recorded metadata (None: not recorded)."""
    prov = meta.get("provenance")
    seconds = prov.get("seconds") if isinstance(prov, dict) else None
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return None
    return float(seconds)


Group = tuple[str, str, str]  # (kind, similarity, precision)


def _history(store: Store, meta_of: Callable[[str], dict[str, Any]],
             spec_of: Callable[[str], Spec]) -> dict[Group, list[tuple[float, float | None]]]:
    """(kind, similarity, precision) -> (seconds, work) of every stored job that recorded its seconds."""
    out: dict[Group, list[tuple[float, float | None]]] = {}
    for key in store.keys():
        meta = meta_of(key)
        spec, seconds = meta.get("spec"), recorded_seconds(meta)
        if not isinstance(spec, dict) or seconds is None:
            continue
        try:
            group = (str(spec.get("kind")), similarity(spec, spec_of), str(spec.get("precision", "fp32")))
            out.setdefault(group, []).append((float(seconds), work(spec, spec_of)))
        except (AttributeError, KeyError, TypeError, ValueError):  # a spec of an older layout: not comparable
            continue
    return out


def _estimate(spec: Spec, similar: list[tuple[float, float | None]], spec_of: Callable[[str], Spec]) -> float:
    n = work(spec, spec_of)
    rates = [seconds / m for seconds, m in similar if m]
    if n and rates:
        return statistics.median(rates) * n
    return statistics.median(seconds for seconds, _ in similar)


def preview(plan: Plan, store: Store) -> Preview:
    """The plan's jobs per kind, how many are stored, and the estimate for the others (module docstring)."""
    stored = {job.key for job in stored_jobs(plan, store)}
    metas: dict[str, dict[str, Any]] = {}

    def meta_of(key: str) -> dict[str, Any]:
        if key not in metas:
            metas[key] = store.recorded_meta(key)
        return metas[key]

    def spec_of(key: str) -> Spec:
        if key in plan.jobs:
            return plan.jobs[key].record
        recorded = meta_of(key).get("spec")
        return recorded if isinstance(recorded, dict) else {}

    todo = [job for job in plan.jobs.values() if job.key not in stored]
    history = _history(store, meta_of, spec_of) if todo else {}
    by_kind: dict[tuple[str, bool], list[tuple[float, float | None]]] = {}  # (kind, assembly) -> rows
    by_plugin: dict[tuple[str, str], list[tuple[float, float | None]]] = {}
    for (kind, like, _), rows in history.items():
        by_kind.setdefault((kind, like == ASSEMBLY), []).extend(rows)
        by_plugin.setdefault((kind, like), []).extend(rows)
    kinds = {k: KindPreview(k) for k in KINDS if any(job.kind == k for job in plan.jobs.values())}
    for job in plan.jobs.values():
        row = kinds.setdefault(job.kind, KindPreview(job.kind))
        row.jobs += 1
        if job.key in stored:
            row.stored += 1
            took = recorded_seconds(meta_of(job.key))
            if took is None:
                row.unrecorded += 1
            else:
                row.recorded += took
            continue
        like = similarity(job.record, spec_of)  # the same precision first: bf16 and fp32 differ in speed
        similar = history.get((job.kind, like, str(job.record.get("precision", "fp32")))) \
            or by_plugin.get((job.kind, like))
        if not similar:
            similar = by_kind.get((job.kind, like == ASSEMBLY))
            row.borrowed += bool(similar)
        if not similar:
            row.unknown += 1
        else:
            row.seconds += _estimate(job.record, similar, spec_of)
    return Preview(list(kinds.values()))


def duration(seconds: float) -> str:
    """``<1 s``, ``45 s``, ``3.2 min``, ``1.5 h``."""
    if seconds < 0.5:
        return "<1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def recorded_text(seconds: float, stored: int, unrecorded: int) -> str:
    """What ``stored`` jobs took, ``unrecorded`` of them without a record."""
    if stored == 0:
        return "-"
    if unrecorded == stored:
        return "not recorded"
    took = duration(seconds)
    return took if unrecorded == 0 else f"at least {took} ({unrecorded} not recorded)"


def estimate_text(seconds: float, to_compute: int, unknown: int, borrowed: int = 0) -> str:
    """The estimate for ``to_compute`` jobs, ``unknown`` of them without similar stored jobs, ``borrowed`` of them
    estimated from other plugins' jobs (said: those can be off many times over)."""
    if to_compute == 0:
        return "-"
    if unknown == to_compute:
        return "unknown"
    known = duration(seconds)
    known = known if known.startswith("<") else f"~{known}"
    notes = [f"{unknown} unknown"] if unknown else []
    if borrowed:
        notes.append(f"{'all' if borrowed == to_compute - unknown else borrowed} from other plugins' jobs: rough")
    known = known if not unknown else f"at least {known}"
    return f"{known} ({'; '.join(notes)})" if notes else known
