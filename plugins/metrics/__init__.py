"""Built-in metric plugins."""

from rbench import hookimpl
from rbench.metric import Metric
from rbench.plugins.metrics.calibration import CalibrationError, OodAuroc
from rbench.plugins.metrics.fooling import FooledFraction, FoolingConfidence, FoolingGenerations
from rbench.plugins.metrics.nearest import NearestDistance
from rbench.plugins.metrics.observed import Observed
from rbench.plugins.metrics.operator_norm import OperatorNorm
from rbench.plugins.metrics.rates import (
    Accuracy,
    ClassRobustness,
    CleanError,
    Distortion,
    Error,
    SuccessRate,
    TransferRate,
)
from rbench.plugins.metrics.unit_inspection import UnitPurity
from rbench.plugins.metrics.worst_case import WorstCase


@hookimpl
def rbench_metrics() -> list[Metric]:
    return [Error(), Accuracy(), CleanError(), SuccessRate(), TransferRate(), Distortion(), OperatorNorm(),
            CalibrationError(), OodAuroc(), ClassRobustness(), Observed(), WorstCase(),
            UnitPurity(), FoolingConfidence(), FooledFraction(), FoolingGenerations(), NearestDistance()]
