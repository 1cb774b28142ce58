"""rbench: a plugin-based benchmark of the adversarial robustness of neural-network classifiers.

The public plugin API: :data:`hookimpl` (mark hook implementations), :class:`AttackOutput`, the plugin base
classes, and :func:`get_plugin`. See ``hookspecs.py`` for every hook.
"""

from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("rbench")

from rbench.attack import (  # noqa: E402
    Attack,
    AttackOutput,
    Budget,
    FixedBudgetAttack,
    GeneratorAttack,
    MinimizationAttack,
    misclassified,
)
from rbench.dataset import Dataset, NoParams  # noqa: E402
from rbench.defense import Defense, DefenseModule  # noqa: E402
from rbench.estimate import Estimate  # noqa: E402
from rbench.manager import get_plugin  # noqa: E402
from rbench.metric import CellData, CellKeys, CellOutputs, Metric  # noqa: E402
from rbench.model import EpochObserver, ModelPlugin, Progress, TrainData, Trainer  # noqa: E402
from rbench.probe import Probe  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:  # the API pulls in the runner: loaded on first use, not by every plugin import
    if name in ("evaluate", "Results"):
        from rbench import api

        return getattr(api, name)
    if name == "load_results":
        from rbench.report.tidy import load_results

        return load_results
    raise AttributeError(f"module 'rbench' has no attribute {name!r}")


__all__ = [
    "Attack", "AttackOutput", "Budget", "CellData", "CellKeys", "CellOutputs", "Dataset", "Defense", "DefenseModule",
    "EpochObserver", "Estimate",
    "FixedBudgetAttack", "GeneratorAttack", "Metric", "MinimizationAttack", "ModelPlugin", "NoParams", "Probe",
    "Progress", "Results", "TrainData", "Trainer",
    "evaluate", "get_plugin", "hookimpl", "load_results", "misclassified",
]
