"""Job specs: what a job computes, one typed frozen dataclass per job kind.

A spec names everything its job's output depends on: plugin calls (name, version, validated params), the keys of
the jobs whose outputs it reads, data slices and seeds. Its :meth:`to_dict` form is what enters the job's key
(:func:`rbench.plan.Plan.add`) and what is stored beside the output (``meta["spec"]``), so it is a stable,
documented format: a field is written only where it applies, exactly as :mod:`rbench.plan` has always keyed jobs
(a change here changes every key; bump :data:`rbench.plan.FORMAT` with it).

Plugin params and model specs stay JSON trees (``dict``): they are the plugins' own data, validated against each
plugin's ``Params`` where they are used. A model spec is a tree of plugin calls (members, defenses) from which a
network is rebuilt from a checkpoint's sidecar alone (:func:`rbench.inputs.build_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

#: the batch an attack job runs at where its evaluation does not say (fastest on a 2-core CPU for LeNet, make bench);
#: an execution option, in a job's key only where a randomized source's draws follow the batches
ATTACK_BATCH = 250

Json = dict[str, Any]

#: what each job kind's store entry holds, by the spec's ``kind`` (checked when an entry is read)
ENTRY_KINDS = {"train": "checkpoint", "attack": "advset", "transform": "advset", "eval": "predictions"}


@dataclass(frozen=True)
class Call:
    """A plugin call as it enters a key: the plugin's name and version, its params (JSON) and, for a third-party
    plugin, its distribution (None for a built-in: the keys of built-in plugins' jobs predate the field), so that
    a plugin of one name and version from another distribution never gets the first one's stored outputs."""

    plugin: str
    version: str
    params: Json
    distribution: str | None = None

    def to_dict(self) -> Json:
        d: Json = {"plugin": self.plugin, "version": self.version, "params": self.params}
        if self.distribution is not None:
            d["distribution"] = self.distribution
        return d

    @classmethod
    def from_dict(cls, d: Json) -> Call:
        return cls(d["plugin"], d["version"], d["params"], d.get("distribution"))


@dataclass(frozen=True)
class DataSlice:
    """``n`` samples (all: None) of a dataset split drawn with ``subset_seed``; with ``parts``, from part ``part`` of
    the split cut into disjoint parts of those sizes (:func:`rbench.inputs.load_slice` loads it)."""

    dataset: Call
    split: str
    n: int | None
    subset_seed: int
    parts: tuple[int, ...] | None = None
    part: int = 0
    #: the split's content digest where its dataset gives one (:meth:`rbench.dataset.Dataset.fingerprint`)
    content: str | None = None

    def to_dict(self) -> Json:
        d: Json = {"dataset": self.dataset.to_dict(), "split": self.split, "n": self.n,
                   "subset_seed": self.subset_seed}
        if self.parts is not None:
            d.update(parts=list(self.parts), part=self.part)
        if self.content is not None:  # absent otherwise: the keys of datasets without one are unchanged
            d["content"] = self.content
        return d

    @classmethod
    def from_dict(cls, d: Json) -> DataSlice:
        parts = d.get("parts")
        return cls(Call.from_dict(d["dataset"]), d["split"], d["n"], d["subset_seed"],
                   None if parts is None else tuple(parts), d.get("part", 0), d.get("content"))


@dataclass(frozen=True)
class Monitoring:
    """Per-epoch measurements of a model in training: ``probes`` (label -> call) on ``data`` every ``every``
    epochs."""

    data: DataSlice
    every: int
    probes: dict[str, Call]

    def to_dict(self) -> Json:
        return {"data": self.data.to_dict(), "every": self.every,
                "probes": {label: call.to_dict() for label, call in self.probes.items()}}


@dataclass(frozen=True)
class View:
    """How an adaptive attack sees a defended source: BPDA through its non-differentiable stages, and the
    expectation over ``eot`` draws of its randomized ones."""

    bpda: bool
    eot: int

    def to_dict(self) -> Json:
        return {"bpda": self.bpda, "eot": self.eot}


@dataclass(frozen=True)
class Generation:
    """What a generator attack makes instead of perturbing a data slice: ``per_class`` inputs of ``shape`` for each
    of ``classes`` classes (targets: :func:`rbench.plan.generated_targets`)."""

    classes: int
    per_class: int
    shape: tuple[int, ...]

    def to_dict(self) -> Json:
        return {"classes": self.classes, "per_class": self.per_class, "shape": list(self.shape)}


@dataclass(frozen=True)
class TrainSpec:
    """A checkpoint: a ``model`` (model spec) trained by ``trainer`` on ``data``, from the weights of the last of
    ``init`` if any, with ``members`` (keys) trained first; or a trained ``defense`` component instead of a
    model; or, with no trainer, a defended model assembled from the trained parts ``members``."""

    kind: ClassVar[str] = "train"
    model: Json | None = None
    defense: Call | None = None
    trainer: Call | None = None
    data: DataSlice | None = None
    seed: int | None = None
    members: tuple[str, ...] = ()
    monitor: Monitoring | None = None
    init: tuple[str, ...] = ()
    #: (dataset plugin, split, content digest) of the data the trainer loads itself (its ``extra_data``, e.g.
    #: outliers) where the dataset gives a fingerprint, so that other files there make another checkpoint
    extra_content: tuple[tuple[str, str, str], ...] = ()

    def to_dict(self) -> Json:
        d: Json = {}
        if self.model is not None:
            d["model"] = self.model
        if self.defense is not None:
            d["defense"] = self.defense.to_dict()
        if self.trainer is not None:
            assert self.data is not None
            d.update(trainer=self.trainer.to_dict(), data=self.data.to_dict(), seed=self.seed)
        if self.members or self.trainer is None:  # an assembly always names its parts
            d["members"] = list(self.members)
        if self.monitor is not None:
            d["monitor"] = self.monitor.to_dict()
        if self.init:
            d["init"] = list(self.init)
        if self.extra_content:  # absent otherwise: the keys of trainers reading no fingerprinted data are unchanged
            d["extra_content"] = [list(entry) for entry in self.extra_content]
        return d

    def slices(self) -> list[DataSlice]:
        return [s for s in (self.data, self.monitor.data if self.monitor else None) if s is not None]

    def worker(self) -> str:
        return f"trainer {self.trainer.plugin!r}" if self.trainer else "defended model assembly"


@dataclass(frozen=True)
class AttackSpec:
    """An adversarial set: ``attack`` run on the trained ``source`` (key) over ``data``; or, for a generator
    attack, the inputs of ``generate`` made from nothing. ``view``: how it sees a defended source; ``batch_size``
    enters the key only where a randomized source's or the attack's draws follow the batches."""

    kind: ClassVar[str] = "attack"
    attack: Call
    source: str
    seed: int
    data: DataSlice | None = None
    generate: Generation | None = None
    view: View | None = None
    batch_size: int | None = None
    #: the arithmetic the attack's model passes run in (:mod:`rbench.precision`); keyed only when not fp32
    precision: str = "fp32"

    def to_dict(self) -> Json:
        d: Json = {"attack": self.attack.to_dict(), "source": self.source, "seed": self.seed}
        if self.generate is not None:
            d["generate"] = self.generate.to_dict()
        else:
            assert self.data is not None
            d["data"] = self.data.to_dict()
        if self.view is not None:
            d["view"] = self.view.to_dict()
        if self.batch_size is not None:
            d["batch_size"] = self.batch_size
        if self.precision != "fp32":
            d["precision"] = self.precision
        return d

    def slices(self) -> list[DataSlice]:
        return [] if self.data is None else [self.data]

    def worker(self) -> str:
        return f"attack {self.attack.plugin!r}"


@dataclass(frozen=True)
class TransformSpec:
    """An adversarial set: ``transform`` applied to the stored set ``input`` (key) made on ``source`` over
    ``data``."""

    kind: ClassVar[str] = "transform"
    transform: Call
    input: str
    source: str
    data: DataSlice
    seed: int
    #: the arithmetic of the success flags' re-prediction (:mod:`rbench.precision`); keyed only when not fp32
    precision: str = "fp32"

    def to_dict(self) -> Json:
        d: Json = {"transform": self.transform.to_dict(), "input": self.input, "source": self.source,
                   "data": self.data.to_dict(), "seed": self.seed}
        if self.precision != "fp32":
            d["precision"] = self.precision
        return d

    def slices(self) -> list[DataSlice]:
        return [self.data]

    def worker(self) -> str:
        return f"transform {self.transform.plugin!r}"


@dataclass(frozen=True)
class EvalSpec:
    """Predictions: the trained ``model`` (key) on the stored set ``advset`` (key) or on the ``clean`` slice."""

    kind: ClassVar[str] = "eval"
    model: str
    clean: DataSlice | None = None
    advset: str | None = None
    #: the arithmetic of the forward pass (:mod:`rbench.precision`); keyed only when not fp32
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if (self.clean is None) == (self.advset is None):
            raise ValueError("an eval spec reads either a clean slice or an adversarial set")

    def to_dict(self) -> Json:
        given: Json = {"advset": self.advset} if self.clean is None else {"clean": self.clean.to_dict()}
        d: Json = {"model": self.model, "input": given}
        if self.precision != "fp32":
            d["precision"] = self.precision
        return d

    def slices(self) -> list[DataSlice]:
        return [] if self.clean is None else [self.clean]


JobSpec = TrainSpec | AttackSpec | TransformSpec | EvalSpec
