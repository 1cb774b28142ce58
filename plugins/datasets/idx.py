"""MNIST, Fashion-MNIST and notMNIST from IDX files (see :mod:`rbench.data` for where files come from)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from rbench.data import check_split, content_digest, load_split, split_size
from rbench.dataset import Dataset


class _IdxDigits(Dataset):
    input_shape = (1, 28, 28)
    num_classes = 10

    def load(self, split: str, params: BaseModel) -> tuple[np.ndarray, np.ndarray]:
        images, labels = load_split(self.name, split)  # type: ignore[arg-type]
        x = images.astype(np.float32).reshape(-1, 1, 28, 28) / np.float32(255.0)
        return x, labels.astype(np.int64)

    def size(self, split: str, params: BaseModel) -> int | None:
        return split_size(self.name, split)

    def prepare(self, split: str, params: BaseModel) -> None:
        check_split(self.name, split)


class Mnist(_IdxDigits):
    """MNIST handwritten digits (LeCun et al.), 60000 train + 10000 test, 28x28 grey."""

    name = "mnist"


class FashionMnist(_IdxDigits):
    """Fashion-MNIST (Xiao et al. 2017), Zalando article images, 60000 train + 10000 test, 28x28 grey."""

    name = "fashion-mnist"


class NotMnist(_IdxDigits):
    """notMNIST (Bulatov 2011): glyphs of the letters A-J in many fonts, 28x28 grey, labels 0-9 for A-J.

    Never downloaded (there is no canonical checksummed release): put IDX files named like MNIST's in
    ``$RBENCH_DATA/notmnist/`` -- ``t10k-images-idx3-ubyte.gz`` + ``t10k-labels-idx1-ubyte.gz`` for the test
    split, ``train-images-idx3-ubyte.gz`` + ``train-labels-idx1-ubyte.gz`` for the train split (gzipped, uint8
    (N, 28, 28) images and (N,) labels, any N; the layout of the notMNIST-to-MNIST conversions). Nothing
    vouches for the files, so their SHA-256 is the split's ``fingerprint``: it enters the keys of the jobs that
    read them (replacing them recomputes those jobs; a trainer that loads notMNIST itself as outliers is keyed by
    its params only). ``prepare`` decodes and checks them (a bad header, images not (N, 28, 28), labels outside 0-9 or
    not one per image: one DataError naming the file before any work); ``size`` reads the images file's header."""

    name = "notmnist"

    def fingerprint(self, split: str, params: BaseModel) -> str | None:
        return content_digest(self.name, split)
