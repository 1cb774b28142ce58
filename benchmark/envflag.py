"""On/off environment variables (``RBENCH_OFFLINE``, ``RBENCH_DEBUG``, ``RBENCH_TRACE_PLUGINS``), read one way."""

from __future__ import annotations

import os

from rbench.errors import RbenchError

ON, OFF = frozenset({"1", "true", "yes", "on"}), frozenset({"", "0", "false", "no", "off"})


def flag(name: str, error: type[RbenchError] = RbenchError) -> bool:
    """Whether the environment variable ``name`` is set to 1/true/yes/on; unset, empty or 0/false/no/off is False;
    any other value a one-line ``error`` (``RBENCH_OFFLINE=maybe`` went on to download, ``RBENCH_DEBUG=0`` printed
    tracebacks: any non-empty value counted as on)."""
    value = os.environ.get(name, "").strip().lower()
    if value not in ON | OFF:
        raise error(f"{name}={os.environ[name]!r}: give 1 (or true, yes, on) or 0 (or false, no, off)")
    return value in ON
