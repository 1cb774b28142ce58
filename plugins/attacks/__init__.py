"""Built-in attack plugins: one attack per module, named after the method."""

from rbench import hookimpl
from rbench.attack import Attack
from rbench.plugins.attacks.art_adapter import ArtAttack
from rbench.plugins.attacks.fast_gradient import FastGradientValue, Fgsm
from rbench.plugins.attacks.foolbox_adapter import FoolboxAttack
from rbench.plugins.attacks.gradient_ascent import GradientAscent
from rbench.plugins.attacks.lbfgs import Lbfgs
from rbench.plugins.attacks.map_elites import MapElites
from rbench.plugins.attacks.noise import GaussianNoise
from rbench.plugins.attacks.odin import Odin
from rbench.plugins.attacks.pgd import Bim, Pgd
from rbench.plugins.attacks.pixel import PixelAttack


@hookimpl
def rbench_attacks() -> list[Attack]:
    return [Fgsm(), FastGradientValue(), Pgd(), Bim(), GaussianNoise(), Lbfgs(), FoolboxAttack(), ArtAttack(), Odin(),
            PixelAttack(), MapElites(), GradientAscent()]
