"""Built-in attack plugins: one attack per module, named after the method."""

from rbench import hookimpl
from rbench.plugins.attacks.art_adapter import ArtAttack
from rbench.plugins.attacks.fast_gradient import FastGradientValue, Fgsm
from rbench.plugins.attacks.foolbox_adapter import FoolboxAttack
from rbench.plugins.attacks.lbfgs import Lbfgs
from rbench.plugins.attacks.noise import GaussianNoise
from rbench.plugins.attacks.odin import Odin
from rbench.plugins.attacks.pgd import Bim, Pgd


@hookimpl
def rbench_attacks():
    return [Fgsm(), FastGradientValue(), Pgd(), Bim(), GaussianNoise(), Lbfgs(), FoolboxAttack(), ArtAttack(), Odin()]
