"""In-memory forms of the stored job outputs (what metrics and reports read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DISTORTIONS = ("l2", "linf", "rms", "mean_abs")


def distortions(x: np.ndarray, x_adv: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample distortion of ``x_adv`` from ``x`` (both (N, ...) float32 with pixels in [0, 1]).

    ``l2``: Euclidean norm; ``linf``: max abs; ``rms``: sqrt(sum(d^2) / n) with n the pixels per sample
    (Szegedy et al.'s "distortion"); ``mean_abs``: mean absolute difference per pixel.
    """
    d = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    n = d.shape[1]
    l2 = np.sqrt((d * d).sum(axis=1))
    return {
        "l2": l2.astype(np.float32),
        "linf": np.abs(d).max(axis=1, initial=0.0).astype(np.float32),
        "rms": (l2 / np.sqrt(n)).astype(np.float32),
        "mean_abs": np.abs(d).mean(axis=1).astype(np.float32),
    }


@dataclass
class AdvSet:
    """An adversarial set: one attack run on one source model over one data slice.

    ``x_adv`` float32 (N, C, H, W); ``success`` bool (N,) (on the source model); ``labels`` int64; ``targets``
    int64 (-1 where untargeted); ``indices`` int64 (positions in the dataset split); ``distortion`` maps each
    of :data:`DISTORTIONS` to float32 (N,); ``extras`` holds the attack's optional per-sample outputs;
    ``meta`` the spec and provenance.

    A generated set (a :class:`rbench.attack.GeneratorAttack`'s: inputs made from nothing for target classes) has
    ``labels`` and ``indices`` -1 and no distortions at all (``distortion == {}``): there is no clean input.
    """

    x_adv: np.ndarray
    success: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    indices: np.ndarray
    distortion: dict[str, np.ndarray]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> array mapping, as stored in HDF5."""
        out = {
            "x_adv": self.x_adv,
            "success": self.success,
            "labels": self.labels,
            "targets": self.targets,
            "indices": self.indices,
        }
        out.update({f"distortion/{k}": v for k, v in self.distortion.items()})
        out.update({f"extras/{k}": v for k, v in self.extras.items()})
        return out

    @property
    def generated(self) -> bool:
        """True for a generated set: inputs made for target classes from nothing, without clean inputs."""
        return not self.distortion

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> AdvSet:
        """The set stored as ``arrays``; ValueError naming what is missing or malformed."""
        n = _rows(arrays, "x_adv", "f", ndim=4)
        _rows(arrays, "success", "b", n=n)
        for name in ("labels", "targets", "indices"):
            _rows(arrays, name, "iu", n=n)
        if any(f"distortion/{name}" in arrays for name in DISTORTIONS):  # all of them, or none (a generated set)
            for name in DISTORTIONS:
                _rows(arrays, f"distortion/{name}", "f", n=n)
        for name in arrays:
            if name.startswith("extras/"):
                _rows(arrays, name, "biuf", n=n)
        return cls(
            x_adv=arrays["x_adv"],
            success=arrays["success"],
            labels=arrays["labels"],
            targets=arrays["targets"],
            indices=arrays["indices"],
            distortion={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("distortion/")},
            extras={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("extras/")},
            meta=meta,
        )


@dataclass
class Predictions:
    """A model's outputs on an input set: ``logits`` float32 (N, C), ``labels`` and ``indices`` int64 (N,)."""

    logits: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def predicted(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels

    def arrays(self) -> dict[str, np.ndarray]:
        return {"logits": self.logits, "labels": self.labels, "indices": self.indices}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Predictions:
        """The predictions stored as ``arrays``; ValueError naming what is missing or malformed."""
        n = _rows(arrays, "logits", "f", ndim=2)
        _rows(arrays, "labels", "iu", n=n)
        _rows(arrays, "indices", "iu", n=n)
        return cls(logits=arrays["logits"], labels=arrays["labels"], indices=arrays["indices"], meta=meta)


def _rows(arrays: dict[str, np.ndarray], name: str, kinds: str, *, n: int | None = None, ndim: int | None = None
          ) -> int:
    """Check that ``arrays[name]`` exists, has a dtype of one of the numpy ``kinds`` (e.g. "f", "iu"), ``ndim``
    dimensions if given, and ``n`` rows if given; return its number of rows. ValueError otherwise."""
    if name not in arrays:
        raise ValueError(f"the array {name!r} is missing")
    a = arrays[name]
    if a.dtype.kind not in kinds:
        raise ValueError(f"the array {name!r} has dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim or a.ndim == 0:
        raise ValueError(f"the array {name!r} has shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"the array {name!r} has {len(a)} rows, not {n}")
    return len(a)
