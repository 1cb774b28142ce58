"""Built-in trainer plugins."""

from rbench import hookimpl
from rbench.model import Trainer
from rbench.plugins.trainers.adversarial import AdversarialTrainer
from rbench.plugins.trainers.adversarial_stages import AdversarialStages
from rbench.plugins.trainers.augment import CutmixTrainer, MixupTrainer, NoiseTrainer, RotationTrainer
from rbench.plugins.trainers.autoencoder import AutoencoderPretrain
from rbench.plugins.trainers.denoising import DenoisingTrainer
from rbench.plugins.trainers.none import NoTraining
from rbench.plugins.trainers.outlier_exposure import OutlierExposure
from rbench.plugins.trainers.standard import StandardTrainer
from rbench.plugins.trainers.temperature import TemperatureFit


@hookimpl
def rbench_trainers() -> list[Trainer]:
    return [StandardTrainer(), AutoencoderPretrain(), NoTraining(), TemperatureFit(), OutlierExposure(),
            MixupTrainer(), CutmixTrainer(), RotationTrainer(), NoiseTrainer(), AdversarialTrainer(),
            AdversarialStages(), DenoisingTrainer()]
