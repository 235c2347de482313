"""RFC 8785 JSON Canonicalization Scheme (JCS), the body of the PCS 0.3 signed message.

:func:`jcs` equals ``rfc8785.dumps`` (the reference, pinned by a property test) and takes a
fast path for what PCS records hold: ``msgspec`` writes sorted keys and JCS string escapes
(they agree byte for byte), and each float is written in ECMAScript form. Keys outside the
Basic Multilingual Plane (where UTF-16 order differs from code-point order), floats that need
an exponent and integers outside the exact range go to ``rfc8785`` itself.
"""

from __future__ import annotations

from typing import Any

import msgspec
import rfc8785

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer JSON (IEEE doubles) and RFC 8785 represent exactly (SPEC section 2)."""

_encode_sorted = msgspec.json.Encoder(order="sorted").encode
_Raw = msgspec.Raw


class _Fallback(Exception):
    """The value needs the reference canonicalizer."""


def es_number(x: float) -> bytes:
    """A finite float as ECMAScript ``Number.prototype.toString`` writes it (RFC 8785 3.2.2.3)."""
    text = float.__repr__(x)
    if "e" in text or "n" in text:  # exponent form, inf, nan: the reference decides
        return rfc8785.dumps(x)
    if x == 0.0:
        return b"0"
    return (text[:-2] if text.endswith(".0") else text).encode("ascii")


def _prepare(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        raise _Fallback
    if kind is float:
        text = float.__repr__(value)
        if "e" in text or "n" in text:
            raise _Fallback
        if value == 0.0:
            return _Raw(b"0")
        return _Raw((text[:-2] if text.endswith(".0") else text).encode("ascii"))
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str or (not k.isascii() and max(k) > "\uffff"):
                raise _Fallback
            out[k] = _prepare(v)
        return out
    if kind is list or kind is tuple:
        return [_prepare(v) for v in value]
    raise _Fallback


def jcs(obj: Any) -> bytes:
    """Canonical JSON (RFC 8785) of plain JSON data (dict, list, str, int, float, bool, None).

    Raises ``ValueError`` (from ``rfc8785``: a non-finite float, an integer beyond 2^53 - 1,
    a non-string key) for data JCS cannot represent.
    """
    try:
        return _encode_sorted(_prepare(obj))
    except _Fallback:
        try:
            return rfc8785.dumps(obj)
        except rfc8785.CanonicalizationError as exc:
            raise ValueError(f"not canonicalizable: {type(exc).__name__}") from None
