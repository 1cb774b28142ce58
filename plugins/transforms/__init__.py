"""Built-in transform plugins."""

from rbench import hookimpl
from rbench.plugins.transforms.amplify import Amplify
from rbench.plugins.transforms.clip import Clip
from rbench.plugins.transforms.distortion import ScaleToDistortion
from rbench.transform import Transform


@hookimpl
def rbench_transforms() -> list[Transform]:
    return [Amplify(), Clip(), ScaleToDistortion()]
