"""Built-in defense plugins (the contract: :mod:`rbench.defense`): input transforms (``noise_injection``,
``lowpass``, ``bit_depth``, ``median``), a trained one (``dae``, trained by the ``denoising`` trainer) and an
aggregation (``committee``)."""

from rbench import hookimpl
from rbench.defense import Defense
from rbench.plugins.defenses.bit_depth import BitDepth
from rbench.plugins.defenses.committee import Committee
from rbench.plugins.defenses.dae import Dae
from rbench.plugins.defenses.lowpass import Lowpass
from rbench.plugins.defenses.median import Median
from rbench.plugins.defenses.noise import NoiseInjection


@hookimpl
def rbench_defenses() -> list[Defense]:
    return [NoiseInjection(), Lowpass(), BitDepth(), Median(), Dae(), Committee()]
