"""Content keys: a job's key is the SHA-256 of the canonical JSON of its spec (shared by the plan, which makes
keys, and the store, which checks that every entry it serves is the one its key names)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical(spec: Any) -> str:
    """``spec`` as canonical JSON: sorted keys, no spaces, ASCII only."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_key(spec: dict[str, Any]) -> str:
    """The 40-hex-digit key of ``spec``."""
    return hashlib.sha256(canonical(spec).encode()).hexdigest()[:40]
