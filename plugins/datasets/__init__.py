"""Built-in dataset plugins."""

from rbench import hookimpl
from rbench.plugins.datasets.idx import FashionMnist, Mnist, NotMnist


@hookimpl
def rbench_datasets():
    return [Mnist(), FashionMnist(), NotMnist()]
