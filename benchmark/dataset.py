"""The dataset contract.

A dataset plugin has ``name``, ``Params``, ``input_shape`` (C, H, W), ``num_classes``, ``splits`` and
``load(split, params) -> (x, y)`` returning float32 images in [0, 1] shaped (N, C, H, W) and int64 labels
as numpy arrays (labels in [0, num_classes)); the engine checks every split as it loads it
(:func:`rbench.inputs.split_problem`) and selects deterministic subsets of it with
:func:`rbench.data.subset_indices`.

Optional: ``prepare(split, params)`` (called once per run, before any job, for the data of every job to
compute) and ``size(split, params) -> int | None``, the split's N when known cheaply (a constant, a file
header) without decoding, downloading or failing; suite validation checks ``n``, ``n_train`` and ``parts``
against it, so a suite asking for more images than a split holds is an error before any work. None (the
default) means unknown: the check is then left to the job.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict


class NoParams(BaseModel):
    """Params of a plugin that takes none (any key is an error)."""

    model_config = ConfigDict(extra="forbid")


class Dataset:
    """Base of every dataset plugin."""

    name: ClassVar[str]
    #: the pydantic params model; methods get a validated instance (typed Any here: each plugin annotates its own)
    Params: ClassVar[type[BaseModel]] = NoParams
    version: ClassVar[str | None] = None
    input_shape: ClassVar[tuple[int, int, int]]
    num_classes: ClassVar[int]
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    def load(self, split: str, params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return (x float32 (N, C, H, W) in [0, 1], y int64 (N,)) for ``split``."""
        raise NotImplementedError

    def size(self, split: str, params: Any) -> int | None:
        """The number of samples of ``split`` if known without loading it (cheap: no decoding, no download, no
        error for absent files), else None. Suite validation checks ``n``, ``n_train`` and ``parts`` against it, and an
        ``n`` equal to it is keyed as no ``n`` (the whole split): so it must be the same answer whether the files are
        present or not (a constant, or None where they are absent only if a fingerprint keys the content), else
        the jobs' keys change once the files arrive."""
        return None

    def fingerprint(self, split: str, params: Any) -> str | None:
        """A digest of ``split``'s content, or None. It enters the key of every job that reads the split, so data
        that nothing else pins (local files a user may replace) recomputes what was made from it when it changes,
        and a job refuses to run on other content than its key names. None (the default): the content is pinned
        by the plugin's name, version and params (a checksummed download, a generator of fixed data)."""
        return None

    def prepare(self, split: str, params: Any) -> None:
        """Make sure ``split`` can be loaded (files present and verified, downloaded if need be), or raise
        :class:`rbench.errors.DataError`. Called once per run before any job, so bad data is one clear error.
        The default loads the split."""
        self.load(split, params)
