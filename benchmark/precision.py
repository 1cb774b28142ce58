"""Arithmetic precision of attack, transform and eval jobs: ``[suite] precision``, ``rbench run --precision``.

``fp32`` (the default) computes as always. ``bf16`` and ``fp16`` run the models' forward and backward passes of
those jobs under :func:`torch.autocast` (:func:`autocast`): matrix multiplies and convolutions in the reduced
type, everything else (the attacks' own arithmetic on the inputs, losses, the clamps to the box and the budget)
in float32. What a job stores keeps the engine's contract: float32 inputs inside the box and the budget
(:mod:`rbench.contract`), float32 logits. Training always stays in float32.

The precision enters the key of attack, transform and eval jobs (:mod:`rbench.specs`) only when it is not
``fp32``, so every fp32 key is the key such a job always had, and a bf16 run shares the trained models with the
fp32 one. The validity gate re-predicts a set's success flags under the set's precision
(:func:`rbench.gates.gate_advset`).
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Any, Literal, get_args

from pydantic import TypeAdapter, ValidationError

from rbench.errors import RbenchError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEFAULT: Precision = "fp32"


def check_precision(value: str, option: str = "--precision") -> Precision:
    """``value`` as a :data:`Precision`, else :class:`RbenchError` (one line naming ``option``)."""
    try:
        return TypeAdapter(Precision).validate_python(value, strict=True)
    except ValidationError:
        raise RbenchError(f"{option} {value!r}: not a precision (one of {', '.join(PRECISIONS)})") from None


def precision_of(spec: Any) -> str:
    """The precision a job spec computes in (a training job, which has none: ``fp32``)."""
    return str(getattr(spec, "precision", DEFAULT))


def autocast(precision: str, device: Any) -> AbstractContextManager[Any]:
    """A context in which ``device``'s (a :class:`torch.device` or its name) models compute in ``precision``:
    nothing changes for ``fp32``; else :func:`torch.autocast` to bfloat16 or float16 on that device's type."""
    if precision == DEFAULT:
        return contextlib.nullcontext()
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
