"""Built-in transform plugins."""

from rbench import hookimpl
from rbench.plugins.transforms.amplify import Amplify


@hookimpl
def rbench_transforms():
    return [Amplify()]
