"""rbench: a plugin-based benchmark of the adversarial robustness of neural-network classifiers.

The public plugin API: :data:`hookimpl` (mark hook implementations), :class:`AttackOutput`, the plugin base
classes, and :func:`get_plugin`. See ``hookspecs.py`` for every hook.

Each name is imported from its module on first use (``from rbench import Attack`` as before), so that ``import
rbench`` does not import torch (1.3 s): the command line's help and ``cache ls``, and the report's figure code in a
process of its own, start without it.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

import pluggy

hookimpl = pluggy.HookimplMarker("rbench")

__version__ = "0.1.0"

#: every public name but ``hookimpl``, and the module (below ``rbench``) defining it
_DEFINED_IN = {
    **dict.fromkeys(("Attack", "AttackOutput", "Budget", "FixedBudgetAttack", "GeneratorAttack", "MinimizationAttack",
                     "misclassified"), "attack"),
    **dict.fromkeys(("Dataset", "NoParams"), "dataset"),
    **dict.fromkeys(("Defense", "DefenseModule"), "defense"),
    "Estimate": "estimate",
    "get_plugin": "manager",
    **dict.fromkeys(("CellData", "CellKeys", "CellOutputs", "Metric"), "metric"),
    **dict.fromkeys(("EpochObserver", "ModelPlugin", "Progress", "TrainData", "Trainer"), "model"),
    "Probe": "probe",
    **dict.fromkeys(("evaluate", "Results"), "api"),  # the API pulls in the runner
    "load_results": "report.tidy",
}

if TYPE_CHECKING:
    from rbench.api import Results, evaluate
    from rbench.attack import (
        Attack,
        AttackOutput,
        Budget,
        FixedBudgetAttack,
        GeneratorAttack,
        MinimizationAttack,
        misclassified,
    )
    from rbench.dataset import Dataset, NoParams
    from rbench.defense import Defense, DefenseModule
    from rbench.estimate import Estimate
    from rbench.manager import get_plugin
    from rbench.metric import CellData, CellKeys, CellOutputs, Metric
    from rbench.model import EpochObserver, ModelPlugin, Progress, TrainData, Trainer
    from rbench.probe import Probe
    from rbench.report.tidy import load_results


def __getattr__(name: str) -> Any:
    """A public name, imported from its module; else a submodule (``import rbench; rbench.defense.Defense``, as
    when this package imported them all), imported."""
    module = _DEFINED_IN.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"rbench.{module}"), name)
    elif name.isidentifier() and not name.startswith("_") and importlib.util.find_spec(f"rbench.{name}"):
        value = importlib.import_module(f"rbench.{name}")
    else:
        raise AttributeError(f"module 'rbench' has no attribute {name!r}")
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_DEFINED_IN})


__all__ = [  # a literal, for linters and type checkers; tests/test_layering.py checks it against _DEFINED_IN
    "Attack", "AttackOutput", "Budget", "CellData", "CellKeys", "CellOutputs", "Dataset", "Defense", "DefenseModule",
    "EpochObserver", "Estimate", "FixedBudgetAttack", "GeneratorAttack", "Metric", "MinimizationAttack",
    "ModelPlugin", "NoParams", "Probe", "Progress", "Results", "TrainData", "Trainer", "evaluate", "get_plugin",
    "hookimpl", "load_results", "misclassified",
]
