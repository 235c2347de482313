"""The project's one sorted, compact JSON encoding for hashing and signing.

``json.dumps(obj, sort_keys=True, separators=(",", ":"))`` encoded UTF-8: the rule of the
PCS signature payload (SPEC section 2), audit entries, anchor records, proofs and
``Policy.hash()``. Hot paths that build such bytes by hand (the signature payload, audit
lines) are pinned to this function by property tests.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (non-ASCII escaped, as ``json.dumps`` does)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")
