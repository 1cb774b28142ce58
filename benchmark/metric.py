"""The metric contract: a pure function of stored job outputs to one number.

A table cell is a (source model, attack, target model) triple of one evaluation. A metric plugin's
``compute(cell, params) -> Estimate | float | None`` reads what it needs from the :class:`CellData` (loaded
lazily from the store; the keys it touched become the cell's provenance) and returns a number in its ``unit``, or
None where it does not apply (e.g. an attack success rate on clean inputs). A rate or a mean of per-sample values
should be returned as an :class:`rbench.estimate.Estimate` (``rate(mask, indices)``, ``mean(values)``): the cell
then carries its sample size and 95% interval, comparisons use them, and paired tests can use the outcomes.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import numpy as np
import torch
from pydantic import BaseModel

from rbench.artifacts import AdvSet, Predictions
from rbench.dataset import NoParams
from rbench.estimate import Estimate

T = TypeVar("T")


@dataclass(frozen=True)
class CellKeys:
    """The store keys behind one table cell: ``predictions`` (the target's outputs on the cell's inputs), ``clean``
    (its outputs on the clean slice), ``adv`` (the adversarial set; None for clean inputs) and ``model`` (the
    target's training job: its checkpoint and what its trainer recorded)."""

    predictions: str
    clean: str | None = None
    adv: str | None = None
    model: str | None = None


class CellOutputs(Protocol):
    """Where :class:`CellData` reads stored outputs from (the run's store; a test may pass its own)."""

    def advset(self, key: str) -> AdvSet: ...
    def predictions(self, key: str) -> Predictions: ...
    def model(self, key: str) -> torch.nn.Module: ...
    def training(self, key: str) -> dict: ...
    def inputs(self, evaluation: str) -> tuple[torch.Tensor, torch.Tensor]: ...

    def locate_clean(self, evaluation: str, model: str) -> str:
        """The key of ``model``'s outputs on ``evaluation``'s clean inputs (KeyError naming what is missing)."""
        ...

    def locate_predictions(self, evaluation: str, source: str, attack: str, target: str) -> str:
        """The key of cell (``source``, ``attack``, ``target``)'s predictions in ``evaluation`` (KeyError)."""
        ...


class CellData:
    """The stored outputs behind one table cell, loaded on first access.

    ``adv``: the adversarial set made on ``source`` (None when ``attack`` is ``"clean"``);
    ``predictions``: ``target``'s outputs on the cell's inputs (the adversarial set, or the clean slice);
    ``clean``: ``target``'s outputs on the clean slice; ``model``: the trained ``target`` itself;
    ``clean_of(evaluation)`` and ``predictions_of(evaluation)``: outputs from another evaluation of the suite
    (e.g. an out-of-distribution set); ``inputs``: the evaluation's clean data slice (``inputs_of(evaluation)``:
    another evaluation's); ``training``: what the target's trainer recorded (its statistics and per-epoch
    observations). ``used`` lists the store keys read (or tried) so far, in order. ``crafted_on``: the model
    ``adv`` was made on and its success flags are of: ``source``, except under ``threat_model = "transfer"``,
    where a defended source's sets are made on its undefended model.
    """

    def __init__(self, source: str, attack: str, target: str, keys: CellKeys, outputs: CellOutputs,
                 evaluation: str = "", crafted_on: str = ""):
        self.source, self.attack, self.target, self.evaluation = source, attack, target, evaluation
        self.crafted_on = crafted_on or source
        self.keys, self.outputs = keys, outputs
        self.used: list[str] = []
        self._memo: dict[tuple[str, ...], object] = {}

    def _read(self, key: str | None, load: Callable[[str], T]) -> T | None:
        if key is None:
            return None
        self.used.append(key)  # before loading: a key that fails to load is named in the cell's error
        return load(key)

    def _once(self, what: tuple[str, ...], get: Callable[[], T]) -> T:
        """``get()``, computed once per cell for ``what``."""
        if what not in self._memo:
            self._memo[what] = get()
        return self._memo[what]  # type: ignore[return-value]

    @cached_property
    def adv(self) -> AdvSet | None:
        return self._read(self.keys.adv, self.outputs.advset)

    @cached_property
    def predictions(self) -> Predictions:
        return _present(self._read(self.keys.predictions, self.outputs.predictions), "predictions")

    @cached_property
    def clean(self) -> Predictions:
        return _present(self._read(self.keys.clean, self.outputs.predictions), "clean predictions")

    @cached_property
    def model(self) -> torch.nn.Module:
        """The target model, trained, on the CPU, in eval mode."""
        return _present(self._read(self.keys.model, self.outputs.model), "trained model")

    @cached_property
    def training(self) -> dict:
        """What the target model's training job recorded: the trainer's statistics (``stats``), with the per-epoch
        observations under ``"observed"`` where the suite monitors the model (see ``monitor`` in the suite
        format). Empty for a model that was not trained (a defended model's assembly records none)."""
        return _present(self._read(self.keys.model, self.outputs.training), "training record")

    def clean_of(self, evaluation: str) -> Predictions:
        """``target``'s outputs on the clean inputs of another ``evaluation`` (e.g. an out-of-distribution set);
        that evaluation must evaluate ``target`` on itself."""
        def get() -> Predictions:
            key = self.outputs.locate_clean(evaluation, self.target)
            return _present(self._read(key, self.outputs.predictions), "clean predictions")

        return self._once(("clean_of", evaluation), get)

    def predictions_of(self, evaluation: str | None = None, attack: str | None = None) -> Predictions:
        """``target``'s outputs on the inputs of the (``source``, ``attack``, ``target``) cell of an ``evaluation``
        (default: this cell's) for an ``attack`` label (default: this cell's): there that attack is run on
        ``source`` over that evaluation's data. For ``attack`` "clean" this is :meth:`clean_of` whenever the
        evaluation evaluates ``target`` on its clean inputs (clean outputs do not depend on the source). A
        KeyError names what the evaluation lacks. Outputs of different evaluations may cover different samples:
        align them by ``indices``."""
        where = (evaluation or self.evaluation, attack or self.attack)

        def get() -> Predictions:
            key = self.outputs.locate_predictions(where[0], self.source, where[1], self.target)
            return _present(self._read(key, self.outputs.predictions), "predictions")

        return self._once(("predictions_of", *where), get)

    @property
    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean inputs of the cell's evaluation: (x float32 (N, C, H, W) in [0, 1], y int64 (N,)), on the CPU,
        in the order of every stored output made from them (the data slice the evaluation names)."""
        return self.inputs_of(self.evaluation)

    def inputs_of(self, evaluation: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean inputs of another ``evaluation`` of the suite (as :attr:`inputs`), e.g. a reference set such
        as the training split. A KeyError names an evaluation the suite does not have."""
        return self._once(("inputs_of", evaluation), lambda: self.outputs.inputs(evaluation))


def _present(value: T | None, what: str) -> T:
    if value is None:
        raise KeyError(f"this cell has no {what}")
    return value


ReferenceKind = Literal["evaluation", "attack", "model", "probe"]


@dataclass(frozen=True)
class Reference:
    """A metric parameter naming something of the suite, as a metric plugin declares it in
    :meth:`Metric.references`. The suite checks every one,
    for every cell the metric computes, before any work, so that a wrong name is one line instead of error cells
    after the run:

    - ``evaluation``: ``name`` is an evaluation of the suite (e.g. one whose inputs the metric reads);
    - ``attack``: the metric reads the cell's (source, target) predictions under attack label ``name`` ("clean"
      included; None: the cell's own attack) in ``evaluation`` (None: the cell's), as
      :meth:`rbench.metric.CellData.predictions_of` does: that evaluation must hold the label, and evaluate the cell's
      target on the cell's source's sets there (on clean inputs: evaluate the target);
    - ``model``: ``name`` is a model of the suite;
    - ``probe``: ``name`` labels a probe in the ``monitor`` of the cell's target model, where it has one (an
      unmonitored target is the cell's error).

    ``key``: the parameter's path in the params (``attacks[0].attack``), which messages name. ``paired`` (an
    ``attack`` reference): the metric matches these predictions with the cell's own, sample by sample by dataset
    index (an image's position in its split), so an ``evaluation`` other than the cell's must read the same dataset
    (plugin and params) and split; without it, the index of an MNIST digit would pair it with an unrelated letter of
    notMNIST. An OOD metric reading another dataset's predictions as a whole leaves it False.
    """

    key: str
    kind: ReferenceKind
    name: str | None
    evaluation: str | None = None
    paired: bool = False


def metric_number(value: Any) -> float | None:
    """``value`` as a float if it is a real number (a Python or numpy int or float, a one-element tensor or array
    of one), else None: a string, a bool, an array of several values or any other object is not a cell value."""
    if isinstance(value, torch.Tensor | np.ndarray):
        if value.size == 1 if isinstance(value, np.ndarray) else value.numel() == 1:
            value = value.item()
        else:
            return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    return float(value)


@dataclass(frozen=True)
class CellPlace:
    """Where a table cell sits, as the suite gives it, for :meth:`Metric.cell_problem`: its evaluation, source,
    attack label ("clean" for clean inputs) and target, and whether the attack generates its inputs from nothing
    (a generator: no clean images, no labels)."""

    evaluation: str
    source: str
    attack: str
    target: str
    generated: bool


def declared_cell_problem(obj: Any, params: Any, place: CellPlace) -> str | None:
    """What metric plugin ``obj`` says is wrong with computing ``params`` on a cell at ``place``
    (:meth:`Metric.cell_problem`); None for a metric object without the method."""
    hook = getattr(obj, "cell_problem", None)
    return hook(params, place) if callable(hook) else None


def declared_references(obj: Any, params: Any) -> list[Reference]:
    """What metric plugin ``obj`` declares its ``params`` name (:meth:`Metric.references`); none for a metric
    object without the method (the contract's duck typing allows one not derived from :class:`Metric`)."""
    hook = getattr(obj, "references", None)
    return list(hook(params)) if callable(hook) else []


class Metric:
    """Base of every metric plugin. ``unit`` ("%" or "") and ``fmt`` (a format spec) drive rendering; a value in %
    lies within 0-100 (:func:`rbench.results.unit_problem`): a difference of percentages declares ``unit = ""``."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams
    version: ClassVar[str | None] = None
    label: ClassVar[str | None] = None
    unit: ClassVar[str] = "%"
    fmt: ClassVar[str] = ".1f"

    # params: Any, as each plugin narrows it to its own Params class
    def compute(self, cell: CellData, params: Any) -> Estimate | float | None:
        raise NotImplementedError

    def cell_problem(self, params: Any, place: CellPlace) -> str | None:
        """Why ``params`` cannot be computed on a cell at ``place`` (one line), or None: the suite refuses such a
        table before any work rather than failing its cells after the jobs ran. None by default."""
        return None

    def references(self, params: Any) -> list[Reference]:
        """The names of the suite ``params`` give (evaluations, attack labels, models, probes): the suite checks
        each for every cell the metric computes, before any work, and ``rbench run --only`` computes the
        predictions and models they name. A metric whose params name nothing keeps this default."""
        return []
