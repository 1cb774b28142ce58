"""Arrow arrays and tables for the tidy files, built from their buffers (``pyarrow.Array.from_buffers``).

Hand-written because ``pyarrow.array`` and ``pyarrow.table`` import pandas whenever it is installed, to ask
whether their input is a pandas object: 0.35-0.5 s of a 4 s warm run, and of every rbench process that writes a
run's report. The few types the tidy files hold (64-bit integers and floats, booleans, UTF-8 text, lists of
those, and the null type of a column with no value) have simple layouts, built here as ``pyarrow.array`` would
infer them from the same Python values (the tests compare the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _validity(present: np.ndarray) -> Any:
    """The validity bitmap of ``present`` (bool, True where there is a value); None when every value is there."""
    import pyarrow as pa

    return None if present.all() else pa.py_buffer(np.packbits(present, bitorder="little"))


def _from_values(kind: Any, values: np.ndarray, present: np.ndarray) -> Any:
    import pyarrow as pa

    data = np.packbits(values, bitorder="little") if values.dtype == bool else np.ascontiguousarray(values)
    return pa.Array.from_buffers(kind, len(values), [_validity(present), pa.py_buffer(data)],
                                 null_count=int((~present).sum()))


def column(values: Sequence[Any]) -> Any:
    """The array ``pyarrow.array(values)`` infers from plain Python values of one kind (int, float, bool or str;
    None for a missing one): int64, float64, bool or string, or the null type where no value is there. A
    ``TypeError`` for values of several kinds or of another type (numpy scalars, subclasses: the tidy columns are
    made plain first)."""
    import pyarrow as pa

    present = np.array([v is not None for v in values], dtype=bool)
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.nulls(len(values))
    if kinds == {str}:
        return _text(values, present)
    types = {bool: (pa.bool_(), bool), int: (pa.int64(), np.int64), float: (pa.float64(), np.float64)}
    if len(kinds) > 1 or not kinds <= types.keys():
        raise TypeError(f"a column of {sorted(k.__name__ for k in kinds)}: one of int, float, bool or str expected")
    kind, dtype = types[kinds.pop()]
    return _from_values(kind, np.array([v if v is not None else 0 for v in values], dtype=dtype), present)


def array(values: np.ndarray) -> Any:
    """The array of a one-dimensional numpy array of int32, int64, float64 or bool, none missing."""
    import pyarrow as pa

    kinds = {np.dtype(np.int32): pa.int32(), np.dtype(np.int64): pa.int64(), np.dtype(np.float64): pa.float64(),
             np.dtype(bool): pa.bool_()}
    return _from_values(kinds[values.dtype], values, np.ones(len(values), dtype=bool))


def _text(values: Sequence[str | None], present: np.ndarray) -> Any:
    import pyarrow as pa

    encoded = [v.encode() if v is not None else b"" for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError(f"{offsets[-1]} bytes of text: more than a string array's 32-bit offsets reach")
    buffers = [_validity(present), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers, null_count=int((~present).sum()))


def lists(parts: Sequence[np.ndarray]) -> Any:
    """A list array with one list per part (at least one part; one-dimensional numpy arrays of one of
    :func:`array`'s types)."""
    import pyarrow as pa

    offsets = np.zeros(len(parts) + 1, dtype=np.int32)
    np.cumsum([p.size for p in parts], out=offsets[1:])
    return pa.ListArray.from_arrays(array(offsets), array(np.concatenate(parts)))


def table(columns: dict[str, Any]) -> Any:
    """A table of the named arrays, in order."""
    import pyarrow as pa

    return pa.Table.from_arrays(list(columns.values()), names=list(columns))


#: numpy's type of each primitive Arrow type :func:`to_numpy` reads
_NUMPY_TYPES = {**{name: np.dtype(name) for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                                     "uint64")},
                "halffloat": np.dtype(np.float16), "float": np.dtype(np.float32), "double": np.dtype(np.float64)}


def to_numpy(values: Any) -> np.ndarray:
    """A copy of a primitive array without missing values (integers, floats or booleans) as a numpy array, read
    from its buffers (``Array.to_numpy`` imports pandas too); a ``ValueError`` for another type or a missing
    value."""
    import pyarrow as pa

    if values.null_count:
        raise ValueError("it has missing values")
    start, count = values.offset, len(values)
    data = values.buffers()[1]
    if pa.types.is_boolean(values.type):
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little") if count else np.zeros(0, bool)
        return bits[start:start + count].astype(bool)
    dtype = _NUMPY_TYPES.get(str(values.type))
    if dtype is None:
        raise ValueError(f"a {values.type} array, not integers, floats or booleans")
    return np.frombuffer(data, dtype=dtype, count=start + count)[start:].copy() if count else np.zeros(0, dtype)
