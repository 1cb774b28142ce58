"""The conformance kit for metric plugins: ``rbench.testing.check_metric(name, params)``.

It computes an installed metric on two cells built in memory from the kit's reference model and data (the same
as :func:`rbench.testing.check_attack` uses): the clean cell and a cell under a built-in attack (FGSM at eps 0.1
by default), and asserts that on each

1. the value is one a table can hold: a real number, an :class:`rbench.Estimate` or None (as the engine
   accepts, :func:`rbench.metric.metric_number`), finite, with an interval around the value where it has one;
2. computing it again on a fresh cell gives the same value (a metric is a pure function of its cell);
3. the cell's outputs are left unchanged (every array of the adversarial set and the predictions).

A metric whose params name other evaluations, attack labels or models of a suite (its ``references``) reads
outputs the kit cannot make up: run it through a suite, whose checks cover it.

In a metric plugin's tests::

    from rbench.testing import check_metric

    def test_conformance():
        check_metric("my_metric", {"threshold": 0.5})
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rbench.artifacts import AdvSet, Predictions, distortions
from rbench.contract import ModelGuard
from rbench.errors import PluginContractError
from rbench.estimate import Estimate
from rbench.manager import get_plugin
from rbench.metric import CellData, CellKeys, declared_references, metric_number
from rbench.results import Cell, cell_problem, unit_problem
from rbench.suite_schema import validate_params

EVALUATION = "kit"


@dataclass
class MetricReport:
    """What :func:`check_metric` measured: the metric's value on the clean cell and on the attacked cell."""

    clean: float | Estimate | None
    attacked: float | Estimate | None


class _KitOutputs:
    """The :class:`rbench.metric.CellOutputs` of the kit's two cells: everything in memory, nothing stored."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, adv: AdvSet, attack: str):
        # copies: neither the kit's cached model and data nor another cell's outputs can be changed through these
        self.model_, self.x, self.y, self.attack = copy.deepcopy(model), x.clone(), y.clone(), attack
        self.guard = ModelGuard(self.model_)
        with torch.no_grad():
            clean, attacked = model(x).numpy(), model(torch.from_numpy(adv.x_adv)).numpy()
        indices = np.arange(len(x), dtype=np.int64)
        adv = AdvSet(adv.x_adv.copy(), adv.success.copy(), adv.labels.copy(), adv.targets.copy(),
                     adv.indices.copy(), {k: v.copy() for k, v in adv.distortion.items()})
        self.entries: dict[str, Any] = {
            "adv": adv, "clean": Predictions(clean, y.numpy().copy(), indices),
            "attacked": Predictions(attacked, y.numpy().copy(), indices.copy())}

    def advset(self, key: str) -> AdvSet:
        return self.entries[key]

    def predictions(self, key: str) -> Predictions:
        return self.entries[key]

    def model(self, key: str) -> torch.nn.Module:
        return self.model_

    def training(self, key: str) -> dict:
        return {"stats": {}}

    def inputs(self, evaluation: str) -> tuple[torch.Tensor, torch.Tensor]:
        if evaluation != EVALUATION:
            raise KeyError(f"the kit has one evaluation, {EVALUATION!r}, not {evaluation!r}")
        return self.x, self.y

    def locate_clean(self, evaluation: str, model: str) -> str:
        self.inputs(evaluation)
        return "clean"

    def locate_predictions(self, evaluation: str, source: str, attack: str, target: str) -> str:
        self.inputs(evaluation)
        if attack not in ("clean", self.attack):
            raise KeyError(f"the kit's evaluation has the attacks 'clean' and {self.attack!r}, not {attack!r}")
        return "clean" if attack == "clean" else "attacked"

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of every array the cells can read (outputs and inputs), to tell whether a metric changed one."""
        out = {"inputs.x": self.x.numpy().copy(), "inputs.y": self.y.numpy().copy()}
        for key, entry in self.entries.items():
            out.update({f"{key}.{name}": np.array(a, copy=True) for name, a in entry.arrays().items()})
        return out


def _cell(outputs: _KitOutputs, attack: str) -> CellData:
    keys = CellKeys(predictions="clean" if attack == "clean" else "attacked", clean="clean",
                    adv=None if attack == "clean" else "adv", model="model")
    return CellData("reference", attack, "reference", keys, outputs, EVALUATION)


def _check_value(name: str, what: str, value: Any, unit: str) -> None:
    """What a table can hold, as the engine judges a cell when it assembles it (:func:`rbench.assemble`): an
    estimate -20% of a Wilson interval passed here and failed every cell of a suite."""
    if value is None:
        return
    if isinstance(value, Estimate):
        numbers = [value.value, *(v for v in (value.low, value.high) if v is not None)]
        assert all(math.isfinite(v) for v in numbers), f"metric {name!r} ({what}): non-finite Estimate {value}"
        assert (value.low is None or value.low <= value.value) and (value.high is None or value.value <= value.high), \
            f"metric {name!r} ({what}): its interval [{value.low}, {value.high}] does not hold {value.value}"
        problem = cell_problem(Cell("row", "column", value.value, [], n=value.n, low=value.low, high=value.high,
                                    interval=value.method))
        assert problem is None, f"metric {name!r} ({what}) returned an estimate rbench cannot stand behind: {problem}"
        return
    number = metric_number(value)
    assert number is not None, (f"metric {name!r} ({what}) returned {type(value).__name__} {value!r}: a metric "
                                "returns a number, an rbench.Estimate or None")
    assert math.isfinite(number), f"metric {name!r} ({what}) returned {number}, not a finite number"
    problem = unit_problem(number, unit)
    assert problem is None, f"metric {name!r} ({what}) returned {number:g}: {problem}"


def check_metric(name: str, params: dict[str, Any] | Any, *, attack: str = "fgsm",
                 attack_params: dict[str, Any] | None = None) -> MetricReport:
    """Assert the conformance of the installed metric plugin ``name`` with ``params`` (a dict or its Params) on
    the kit's clean cell and on a cell under the built-in ``attack`` (default FGSM, eps 0.1), run as a suite runs it
    (an attack breaking its own contract raises its :class:`rbench.errors.PluginContractError`). Raises
    ``AssertionError`` naming the problem; ``TypeError`` for a metric whose params name things of a suite."""
    from rbench.attack_loop import attack_in_batches, slice_batches
    from rbench.testing import reference_data, reference_model

    metric = get_plugin("metric", name)
    params = params if not isinstance(params, dict) else validate_params(metric.Params, params, f"metric {name!r}")
    if declared_references(metric, params):
        raise TypeError(f"metric {name!r} with these params reads other evaluations, attacks or models of a suite "
                        "(its references): check it through a suite, whose checks cover it")
    model = copy.deepcopy(reference_model())  # a copy: the attack chosen may be a third party's too
    x, y = (t.clone() for t in reference_data())
    plugin = get_plugin("attack", attack)
    attack_params = plugin.Params.model_validate(attack_params if attack_params is not None else {"eps": 0.1})
    generator = torch.Generator().manual_seed(0)
    one_batch = slice_batches(plugin, attack_params, model, model, x.clone(), y.clone(), device="cpu",
                              generator=generator)
    out = attack_in_batches(len(x), len(x), one_batch, generator=generator)  # checked, as a suite runs it
    adv = AdvSet(out.x_adv.numpy(), out.success.numpy().astype(bool), y.numpy(), np.full(len(x), -1, np.int64),
                 np.arange(len(x), dtype=np.int64), distortions(x.numpy(), out.x_adv.numpy()))
    values = {}
    for cell_attack in ("clean", attack):
        outputs = _KitOutputs(model, x, y, adv, attack)
        before = outputs.snapshot()
        what = "clean cell" if cell_attack == "clean" else f"cell under {attack!r}"
        first = metric.compute(_cell(outputs, cell_attack), params)
        _check_value(name, what, first, metric.unit)
        changed = [k for k, a in outputs.snapshot().items() if not np.array_equal(a, before[k], equal_nan=True)]
        assert not changed, f"metric {name!r} ({what}) changed the cell's {changed[0]} in place"
        try:
            outputs.guard.check(f"metric {name!r} ({what})")
        except PluginContractError as exc:
            raise AssertionError(str(exc).replace("the model it attacks", "the cell's model")) from None
        again = metric.compute(_cell(_KitOutputs(model, x, y, adv, attack), cell_attack), params)
        assert _same(first, again), f"metric {name!r} ({what}) is not a pure function of its cell: {first} then {again}"
        values[cell_attack] = first
    return MetricReport(values["clean"], values[attack])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Estimate) and isinstance(b, Estimate):
        return (a.value, a.low, a.high, a.n) == (b.value, b.low, b.high, b.n)
    return (a is None and b is None) or (a is not None and b is not None and metric_number(a) == metric_number(b))
