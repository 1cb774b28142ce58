"""Built-in metric plugins."""

from rbench import hookimpl
from rbench.plugins.metrics.calibration import CalibrationError, OodAuroc
from rbench.plugins.metrics.operator_norm import OperatorNorm
from rbench.plugins.metrics.rates import (
    Accuracy,
    CleanError,
    Distortion,
    Error,
    SuccessRate,
    TransferRate,
)


@hookimpl
def rbench_metrics():
    return [Error(), Accuracy(), CleanError(), SuccessRate(), TransferRate(), Distortion(), OperatorNorm(),
            CalibrationError(), OodAuroc()]
