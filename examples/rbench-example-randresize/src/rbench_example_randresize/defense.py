"""Random resizing and padding (Xie, Wang, Zhang, Ren and Yuille, "Mitigating Adversarial Effects Through
Randomization", ICLR 2018), as an rbench input defense.

Each image is resized (bilinear) to a random ``r`` x ``r`` with ``r`` between its size and ``max_size``, placed at
a random offset on a ``max_size`` x ``max_size`` canvas of zeros, and the canvas is resized (bilinear) back to the
input's size, so the classifier behind it sees inputs of the shape it was trained on. Xie et al. feed the padded
canvas itself to an ImageNet network that accepts the larger size; a classifier with a fixed input size (a
LeNet on 28 x 28 MNIST) needs the last step, which also shrinks the digit a little.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from rbench.defense import Defense, DefenseModule


class RandomResizePadParams(BaseModel):
    """``max_size``: the side of the padded canvas (default 32 for 28 x 28 MNIST, as Xie et al.'s 331 for 299);
    at least the input's height and width (checked on the first batch)."""

    model_config = ConfigDict(extra="forbid")
    max_size: Annotated[int, Field(ge=1, le=1024)] = 32


class RandomResizePadModule(DefenseModule):
    """The transform. Per image, three uniform draws through :meth:`DefenseModule.uniform` (so the engine's
    seeding makes runs reproducible): the size ``r``, and the left and top offsets on the canvas."""

    def __init__(self, max_size: int):
        super().__init__()
        self.max_size = max_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        side = self.max_size
        if side < max(h, w):
            raise ValueError(f"random_resize_pad: max_size {side} is smaller than the inputs ({h} x {w})")
        u = self.uniform(torch.empty(n, 3, dtype=torch.float64))  # CPU draws, the same on every device
        lo = max(h, w)
        sizes = (lo + (u[:, 0] * (side - lo + 1)).floor()).long().clamp(max=side)
        room = side - sizes
        left = (u[:, 1] * (room + 1)).floor().long().clamp(max=room)
        top = (u[:, 2] * (room + 1)).floor().long().clamp(max=room)
        canvases: list[torch.Tensor | None] = [None] * n
        for r in sizes.unique().tolist():  # one interpolation per drawn size
            rows = (sizes == r).nonzero().flatten().tolist()
            small = F.interpolate(x[rows], size=(r, r), mode="bilinear", align_corners=False)
            for j, i in enumerate(rows):
                a, b = int(left[i]), int(top[i])
                canvases[i] = F.pad(small[j], (a, side - r - a, b, side - r - b))
        canvas = torch.stack(canvases)
        out = F.interpolate(canvas, size=(h, w), mode="bilinear", align_corners=False)
        return out.clamp(0, 1)

    def extra_repr(self) -> str:
        return f"max_size={self.max_size}"


class RandomResizePad(Defense):
    """Xie et al. (2018)'s randomization layers for a fixed-size classifier: resize each image to a random size
    ``r`` in [its size, ``max_size``] (bilinear), pad it with zeros at a random offset to ``max_size`` x
    ``max_size``, and resize back to the input's size (bilinear), so the output has the input's shape.

    Params: ``max_size`` (default 32).

    Randomized: three draws per image at every forward pass (an adaptive attack averages gradients over draws:
    EOT, as Athalye et al. 2018 do to break it). Differentiable: bilinear interpolation and zero padding are
    linear in the pixels, so the input gradients are exact for each draw. Not trained, does not aggregate."""

    name = "random_resize_pad"
    Params = RandomResizePadParams
    randomized = True

    def build(self, params: RandomResizePadParams) -> RandomResizePadModule:
        return RandomResizePadModule(params.max_size)
