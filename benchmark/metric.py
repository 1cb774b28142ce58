"""The metric contract: a pure function of stored job outputs to one number.

A table cell is a (source model, attack, target model) triple of one evaluation. A metric plugin's
``compute(cell, params) -> Estimate | float | None`` reads what it needs from the :class:`CellData` (loaded
lazily from the store; the keys it touched become the cell's provenance) and returns a number in its ``unit``, or
None where it does not apply (e.g. an attack success rate on clean inputs). A rate or a mean of per-sample values
should be returned as an :class:`rbench.estimate.Estimate` (``rate(mask, indices)``, ``mean(values)``): the cell
then carries its sample size and 95% interval, comparisons use them, and paired tests can use the outcomes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from pydantic import BaseModel

from rbench.artifacts import AdvSet, Predictions
from rbench.dataset import NoParams
from rbench.estimate import Estimate


class CellData:
    """The stored outputs behind one table cell, loaded on first access.

    ``adv``: the adversarial set made on ``source`` (None when ``attack`` is ``"clean"``);
    ``predictions``: ``target``'s outputs on the cell's inputs (the adversarial set, or the clean slice);
    ``clean``: ``target``'s outputs on the clean slice; ``model``: the trained ``target`` itself;
    ``clean_of(evaluation)`` and ``predictions_of(evaluation)``: outputs from another evaluation of the suite
    (e.g. an out-of-distribution set); ``inputs``: the evaluation's clean data slice (``inputs_of(evaluation)``:
    another evaluation's); ``training``: what the
    target's trainer recorded (its statistics and per-epoch observations). ``used`` lists the store keys read
    (or tried) so far.
    """

    def __init__(self, source: str, attack: str, target: str, keys: dict[str, str | None],
                 loaders: dict[str, Callable[[str], object]], evaluation: str = ""):
        self.source, self.attack, self.target, self.evaluation = source, attack, target, evaluation
        self._keys, self._loaders, self._cache = keys, loaders, {}
        self.used: list[str] = []

    def _get(self, what: str | tuple[str, str, str]) -> object:
        if what not in self._cache:
            if isinstance(what, tuple):  # ("clean_of" | "predictions_of", evaluation, attack)
                kind, evaluation, attack = what
                if kind == "clean_of":
                    key = self._loaders["locate_clean"]((evaluation, self.target))
                else:
                    key = self._loaders["locate_predictions"]((evaluation, self.source, attack, self.target))
                self.used.append(key)  # before loading: a key that fails to load is named in the cell's error
                self._cache[what] = self._loaders["clean" if kind == "clean_of" else "predictions"](key)
                return self._cache[what]
            key = self._keys.get(what)
            self._cache[what] = None if key is None else self._loaders[what](key)
            if key is not None:
                self.used.append(key)
        return self._cache[what]

    @property
    def adv(self) -> AdvSet | None:
        return self._get("adv")  # type: ignore[return-value]

    @property
    def predictions(self) -> Predictions:
        return self._get("predictions")  # type: ignore[return-value]

    @property
    def clean(self) -> Predictions:
        return self._get("clean")  # type: ignore[return-value]

    def clean_of(self, evaluation: str) -> Predictions:
        """``target``'s outputs on the clean inputs of another ``evaluation`` (e.g. an out-of-distribution set);
        that evaluation must evaluate ``target`` on itself."""
        return self._get(("clean_of", evaluation, ""))  # type: ignore[return-value]

    def predictions_of(self, evaluation: str | None = None, attack: str | None = None) -> Predictions:
        """``target``'s outputs on the inputs of the (``source``, ``attack``, ``target``) cell of an ``evaluation``
        (default: this cell's) for an ``attack`` label (default: this cell's): there that attack is run on
        ``source`` over that evaluation's data. For ``attack`` "clean" this is :meth:`clean_of` whenever the
        evaluation evaluates ``target`` on its clean inputs (clean outputs do not depend on the source). A
        KeyError names what the evaluation lacks. Outputs of different evaluations may cover different samples:
        align them by ``indices``."""
        where = (evaluation or self.evaluation, attack or self.attack)
        return self._get(("predictions_of", *where))  # type: ignore[return-value]

    @property
    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean inputs of the cell's evaluation: (x float32 (N, C, H, W) in [0, 1], y int64 (N,)), on the CPU,
        in the order of every stored output made from them (the data slice the evaluation names)."""
        if "inputs" not in self._cache:
            self._cache["inputs"] = self._loaders["inputs"](self.evaluation)
        return self._cache["inputs"]  # type: ignore[return-value]

    def inputs_of(self, evaluation: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean inputs of another ``evaluation`` of the suite (as :attr:`inputs`), e.g. a reference set such
        as the training split. A KeyError names an evaluation the suite does not have."""
        if f"inputs_of:{evaluation}" not in self._cache:
            self._cache[f"inputs_of:{evaluation}"] = self._loaders["inputs"](evaluation)
        return self._cache[f"inputs_of:{evaluation}"]  # type: ignore[return-value]

    @property
    def training(self) -> dict:
        """What the target model's training job recorded: the trainer's statistics (``stats``), with the per-epoch
        observations under ``"observed"`` where the suite monitors the model (see ``monitor`` in the suite
        format). Empty for a model that was not trained (a defended model's assembly records none)."""
        return self._get("training")  # type: ignore[return-value]

    @property
    def model(self) -> torch.nn.Module:
        """The target model, trained, on the CPU, in eval mode."""
        return self._get("model")  # type: ignore[return-value]


class Metric:
    """Base of every metric plugin. ``unit`` ("%" or "") and ``fmt`` (a format spec) drive rendering."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams
    version: ClassVar[str | None] = None
    label: ClassVar[str | None] = None
    unit: ClassVar[str] = "%"
    fmt: ClassVar[str] = ".1f"

    def compute(self, cell: CellData, params: BaseModel) -> Estimate | float | None:
        raise NotImplementedError
