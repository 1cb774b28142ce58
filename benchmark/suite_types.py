"""A suite as it runs: every entry of the file resolved to validated plugin calls (:func:`rbench.suite.load_suite`
makes it), and what tables and the plan read of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from rbench.manager import BUILTIN_DISTRIBUTION, get_registry


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

    @property
    def takes_gradients(self) -> bool:
        """Whether the attack plugin making the inputs (a transform's: its base's) differentiates the model (its
        ``uses_gradients``; True for a plugin that does not say)."""
        if self.base is not None:
            return self.base.takes_gradients
        uses = getattr(self.call.obj, "uses_gradients", None)
        return not callable(uses) or bool(uses(self.call.params))

    @property
    def batch_invariant(self) -> bool:
        """Whether the attack plugin making the inputs (a transform's: its base's) gives the same result at any
        batch size (its ``batch_invariant``; True for a plugin that does not say)."""
        if self.base is not None:
            return self.base.batch_invariant
        invariant = getattr(self.call.obj, "batch_invariant", None)
        return not callable(invariant) or bool(invariant(self.call.params))


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

    def scored(self) -> list[str]:
        """Every model whose predictions its cells read: its sources (success and transfer rates read theirs) and
        their targets, each once, in that order."""
        return list(dict.fromkeys([*self.sources, *(t for s in self.sources for t in self.targets_of(s))]))

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
    #: the label of a last row (column) of means over the rows (columns), which has no cell spec of its own
    #: (:func:`rbench.assemble.mean_cells`)
    mean_row: str | None = None
    mean_column: str | None = None

    def shape(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The rows and columns the table shows: its own, then the mean row (column) where it has one."""
        return self.rows + ((self.mean_row,) if self.mean_row else ()), \
            self.columns + ((self.mean_column,) if self.mean_column else ())


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
    #: they concern (``--only`` keeps those of the evaluations its tables read); under ``""`` the whole suite's
    warnings: dict[str, list[str]] = field(default_factory=dict)
    #: its published files' contents (path -> the validated document as JSON), recorded with the run's results
    published_docs: dict[str, Any] = field(default_factory=dict)
    #: every plugin the suite calls: (kind, name) -> (its version, its distribution), for the run's provenance
    plugins: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    #: the suite's ``description`` (shown under the title of its reports)
    description: str = ""

    def warning_lines(self) -> list[str]:
        """Its warnings, in the order of its evaluations."""
        return [line for lines in self.warnings.values() for line in lines]

    def chain_of(self, model: str) -> list[DefenseEntry]:
        """The defenses of ``model`` in order from the input (empty for an undefended model)."""
        defended = self.models[model].defended
        return [] if defended is None else [self.defenses[d] for d in defended.chain]

    def randomized_sources(self, evaluation: str) -> list[str]:
        """The sources of ``evaluation`` with a randomized defense in their chain."""
        return [s for s in self.evaluations[evaluation].sources if any(d.randomized for d in self.chain_of(s))]

    def single_draw_sources(self, evaluation: str) -> list[str]:
        """The randomized sources an adaptive gradient attack of ``evaluation`` sees through one random draw per
        step (``eot = 1``): the suite warns of them and the table title names them."""
        ev = self.evaluations[evaluation]
        if ev.eot != 1 or ev.threat_model != "adaptive" or not any(a.takes_gradients for a in ev.attacks.values()):
            return []
        return self.randomized_sources(evaluation)

    def undefended_of(self, model: str) -> str:
        """The model a transfer evaluation crafts ``model``'s adversarial sets on (itself if undefended)."""
        defended = self.models[model].defended
        return model if defended is None else str(defended.undefended)


def instance_label(name: str, point: dict[str, Any]) -> str:
    """An attack instance's label, its row or column in tables: ``name``, with its grid ``point``'s params
    (``pgd(eps=0.1, steps=40)``)."""
    return name + ("(" + ", ".join(f"{k}={v}" for k, v in point.items()) + ")" if point else "")


def threat_note(suite: Suite, evaluation: str) -> str | None:
    """How an evaluation's attacks saw the defended models it scores (None when it has none): for table titles."""
    ev = suite.evaluations[evaluation]
    scored = ev.scored()
    if not any(suite.chain_of(m) for m in scored):
        return None
    drawing = [m for m in scored if any(d.randomized for d in suite.chain_of(m))]
    # a randomized defense's cell is one draw per image (each cell's job seeded from its own key): its spread over
    # draws is not in the interval, and two columns of one model see different draws
    once = f"each cell one random draw per image on {', '.join(drawing)}" if drawing else ""
    if ev.threat_model == "transfer":
        return f"{evaluation}: attacks transferred from the undefended models" + (f" ({once})" if once else "")
    defended = [s for s in ev.sources if suite.chain_of(s)]
    if not defended:  # only targets are defended: the attacks, made on the sources, never saw their defenses
        targets = [m for m in scored if suite.chain_of(m)]
        return (f"{evaluation}: attacks made on the sources, transferred to the defended targets "
                f"{', '.join(targets)}" + (f" ({once})" if once else ""))
    # what was applied, and where: BPDA changes only sources with a non-differentiable defense, EOT only sources
    # with a randomized one (on the others every draw is the same: the plain attack is run)
    how = []
    gradients = any(a.takes_gradients for a in ev.attacks.values())  # BPDA is for the attacks that take them
    for what, on, applies in (("BPDA", ev.bpda and gradients, lambda d: not d.differentiable),
                              (f"EOT over {ev.eot} draws", ev.eot > 1, lambda d: d.randomized)):
        where = [s for s in defended if any(applies(d) for d in suite.chain_of(s))]
        if on and where:
            how.append(what if len(where) == len(defended) else f"{what} on {', '.join(where)}")
    drawn = suite.single_draw_sources(evaluation)
    if drawn:
        how.append(f"no EOT: one random draw per step on {', '.join(drawn)}")
    if once:
        how.append(once)
    return f"{evaluation}: adaptive white-box attacks through the defenses" + (f" ({'; '.join(how)})" if how else "")
