"""Built-in model plugins."""

from rbench import hookimpl
from rbench.model import ModelPlugin
from rbench.plugins.models.an2020 import An2020
from rbench.plugins.models.autoencoder import AeSoftmax
from rbench.plugins.models.checkpoint import Checkpoint
from rbench.plugins.models.ensemble import Ensemble
from rbench.plugins.models.lenet import LeNet
from rbench.plugins.models.mlp import Mlp
from rbench.plugins.models.sigmoid_mlp import SigmoidMlp
from rbench.plugins.models.temperature import TemperatureScaled


@hookimpl
def rbench_models() -> list[ModelPlugin]:
    return [Mlp(), LeNet(), AeSoftmax(), An2020(), Ensemble(), TemperatureScaled(), Checkpoint(), SigmoidMlp()]
