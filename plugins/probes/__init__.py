"""Built-in probe plugins: per-epoch measurements of a model in training (:mod:`rbench.probe`)."""

from rbench import hookimpl
from rbench.plugins.probes.gradients import InputGradient
from rbench.plugins.probes.regimes import ActivationRegimes
from rbench.plugins.probes.robustness import CleanAccuracy, FgsmRobustness
from rbench.probe import Probe


@hookimpl
def rbench_probes() -> list[Probe]:
    return [CleanAccuracy(), FgsmRobustness(), ActivationRegimes(), InputGradient()]
