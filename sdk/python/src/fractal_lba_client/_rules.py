"""The strict rules of SPEC section 2 as pure predicates, shared by the SDK and the verifier.

Each returns None when the value passes, else a short reason that never contains the value.
"""

from __future__ import annotations

import binascii
import unicodedata

from fractal_lba_client._jcs import MAX_SAFE_INTEGER

MAX_TEXT = 256
"""``shard_id`` and ``meta`` keys and values: 1..256 characters."""
MAX_META_KEYS = 16
VRF_PROOF_BYTES = 80
VRF_OUTPUT_BYTES = 64
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Control, format (bidi overrides, zero-width), surrogate, line and paragraph separators."""


def text_problem(value: str) -> str | None:
    """1..256 characters, none of Unicode category Cc, Cf, Cs, Zl, Zp, not only whitespace."""
    n = len(value)
    if n == 0:
        return "must not be empty"
    if n > MAX_TEXT:
        return f"at most {MAX_TEXT} characters"
    # isprintable() is False for every forbidden category (and for some allowed ones, such
    # as non-ASCII spaces), so only those strings take the per-character look-up.
    if not value.isprintable():
        category = unicodedata.category
        if any(category(ch) in FORBIDDEN_CATEGORIES for ch in value):
            return "must not contain control, format, surrogate or separator characters"
    if value.isspace():
        return "must not be only whitespace"
    return None


def int_problem(value: int, *, signed: bool = False) -> str | None:
    """Integers lie in [0, 2^53 - 1] (``signed``: |x| <= 2^53 - 1), exact in JSON and JCS."""
    lo = -MAX_SAFE_INTEGER if signed else 0
    if lo <= value <= MAX_SAFE_INTEGER:
        return None
    return f"must be in [{lo}, 2^53 - 1]"


def b64_problem(value: str, size: int) -> str | None:
    """Standard padded base64 (canonical: re-encoding gives the same text) of ``size`` bytes."""
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        return "must be standard, padded base64"
    if len(raw) != size:
        return f"must decode to exactly {size} bytes"
    if binascii.b2a_base64(raw, newline=False) != value.encode("ascii"):
        return "must be canonical base64"
    return None
