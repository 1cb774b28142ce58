"""USPS handwritten digits (Hull 1994), test split, framed as MNIST digits so that MNIST models can read them.

The file is LIBSVM's ``usps.t.bz2`` (2007 images of 16x16 pixels in [-1, 1], labels 1-10 for the digits 0-9),
found, verified and downloaded like MNIST's files (:func:`rbench.data.resolve_file`: ``$RBENCH_DATA/usps/``, the
cache, then LIBSVM's site). USPS digits fill their 16x16 box edge to edge, while MNIST's are fitted into a 20x20 box
inside a 28x28 field and centred there by their centre of mass (LeCun et al.'s description of MNIST), so a plain
resize gives MNIST models digits a third larger than any they were trained on. ``framing`` chooses:

- ``"mnist"`` (default): MNIST's own preparation -- crop to the ink, scale so the longer side is 20 pixels (aspect
  kept, bilinear with antialiasing), place in 28x28 with the centre of mass where MNIST's are (:data:`CENTRE`; a
  whole-pixel shift, kept inside the field);
- ``"stretch"``: the whole 16x16 image resized to 28x28 (bilinear), as Uličný et al. 2016 describe theirs
  ("resized to match dimensions of MNIST pictures").

Both are deterministic; the choice is a dataset param, so it is part of every job key that reads the images.
"""

from __future__ import annotations

import bz2
import functools
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from rbench.data import resolve_file
from rbench.dataset import Dataset
from rbench.errors import DataError

FILE = "usps.t.bz2"
#: images in LIBSVM's USPS test file (fixed by its SHA-256)
TEST_SIZE = 2007
SIDE = 16
#: MNIST's field and the box its digits are fitted into
FIELD, BOX = 28, 20
#: where MNIST's digits have their centre of mass (row and column, in pixel indices): every one of its test digits
#: lies in [13.5, 14.5], 14.0 on average (measured), so its shifts were whole pixels towards 14, not 13.5
CENTRE = FIELD / 2
#: a pixel (in [0, 1]) above this is ink when cropping: USPS's smoothed background stays below 1e-3
INK = 0.05


class UspsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    framing: Literal["mnist", "stretch"] = "mnist"


def parse_libsvm(path: Path, features: int) -> tuple[np.ndarray, np.ndarray]:
    """(values float32 (N, features), labels int64 (N,)) of a LIBSVM text file compressed with bzip2; features it
    omits are 0, as LIBSVM's sparse format means. DataError naming the file and the line for anything else.

    Hand-written: scikit-learn's ``load_svmlight_file`` reads this format, but scikit-learn is not a dependency of
    rbench's core, and the parse of one fixed, checksummed file is these few lines."""
    try:
        with bz2.open(path, "rt", encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"cannot read LIBSVM file {path}: {' '.join(str(err).split())}") from err
    values = np.zeros((len(lines), features), dtype=np.float32)
    labels = np.zeros(len(lines), dtype=np.int64)
    for row, line in enumerate(lines):
        try:
            label, *pairs = line.split()
            labels[row] = int(float(label))
            for pair in pairs:
                index, value = pair.split(":")
                if not 1 <= int(index) <= features:
                    raise ValueError(f"feature index {index} outside 1-{features}")
                values[row, int(index) - 1] = float(value)
        except ValueError as err:
            raise DataError(f"LIBSVM file {path}, line {row + 1}: {err}; replace the file") from None
    return values, labels


def _mnist_frame(image: np.ndarray) -> np.ndarray:
    """One 16x16 image in [0, 1] fitted into MNIST's 20x20 box and centred by mass in a 28x28 field."""
    rows, cols = np.nonzero(image > INK)
    if rows.size == 0:  # no ink: nothing to fit, an empty field
        return np.zeros((FIELD, FIELD), dtype=np.float32)
    ink = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = BOX / max(ink.shape)
    height, width = (max(1, round(side * scale)) for side in ink.shape)
    fitted = F.interpolate(torch.from_numpy(np.ascontiguousarray(ink))[None, None], size=(height, width),
                           mode="bilinear", align_corners=False, antialias=True)[0, 0].clamp_(0, 1).numpy()
    mass = fitted.sum()
    centre = (np.array([(fitted.sum(axis=1) * np.arange(height)).sum(), (fitted.sum(axis=0) * np.arange(width)).sum()])
              / mass)
    top, left = (int(np.clip(round(CENTRE - c), 0, FIELD - side)) for c, side in zip(centre, (height, width),
                                                                                     strict=True))
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top:top + height, left:left + width] = fitted
    return field


def frame(images: np.ndarray, framing: str) -> np.ndarray:
    """(N, 16, 16) images in [0, 1] as (N, 1, 28, 28) float32 in [0, 1], framed as the module's docstring says."""
    if framing == "stretch":
        resized = F.interpolate(torch.from_numpy(images)[:, None], size=(FIELD, FIELD), mode="bilinear",
                                align_corners=False)
        return resized.clamp_(0, 1).numpy()
    return np.stack([_mnist_frame(image) for image in images])[:, None]


@functools.lru_cache(maxsize=4)
def _framed(path: str, signature: tuple[int, ...], framing: str) -> tuple[np.ndarray, np.ndarray]:
    """The framed split of the verified file at ``path``; ``signature`` (size, mtime, inode) only keys the cache."""
    values, raw_labels = parse_libsvm(Path(path), SIDE * SIDE)
    if len(raw_labels) != TEST_SIZE:
        raise DataError(f"LIBSVM file {path} holds {len(raw_labels)} images, USPS's test split {TEST_SIZE}; replace it")
    if raw_labels.min() < 1 or raw_labels.max() > 10:
        raise DataError(f"LIBSVM file {path} has labels outside 1-10; replace it")
    images = ((np.clip(values, -1, 1) + 1) / 2).reshape(-1, SIDE, SIDE)
    x, y = frame(images, framing), raw_labels - 1  # LIBSVM's label k is the digit k - 1
    x.flags.writeable = y.flags.writeable = False
    return x, y


class Usps(Dataset):
    """USPS handwritten digits (Hull 1994), LIBSVM's test split: 2007 images, framed as 28x28 MNIST digits (params:
    ``framing = "mnist"`` (default) or ``"stretch"``; see the module). Checksummed like MNIST; the training split is
    not offered (no SHA-256 of it could be pinned)."""

    name = "usps"
    Params = UspsParams
    version = "2"  # 2: centred by mass at 14, as MNIST's digits are (1: at 13.5, half a pixel up and left)
    input_shape = (1, FIELD, FIELD)
    num_classes = 10
    splits = ("test",)

    def load(self, split: str, params: UspsParams) -> tuple[np.ndarray, np.ndarray]:
        path = resolve_file(self.name, FILE)
        st = path.stat()
        x, y = _framed(str(path), (st.st_size, st.st_mtime_ns, st.st_ino), params.framing)
        return x.copy(), y.copy()

    def size(self, split: str, params: UspsParams) -> int | None:
        return TEST_SIZE

    def prepare(self, split: str, params: UspsParams) -> None:
        resolve_file(self.name, FILE)
