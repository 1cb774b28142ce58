"""Built-in dataset plugins."""

from rbench import hookimpl
from rbench.dataset import Dataset
from rbench.plugins.datasets.idx import FashionMnist, Mnist, NotMnist
from rbench.plugins.datasets.usps import Usps


@hookimpl
def rbench_datasets() -> list[Dataset]:
    return [Mnist(), FashionMnist(), NotMnist(), Usps()]
