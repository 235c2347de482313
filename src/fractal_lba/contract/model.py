"""The PCS wire model (SPEC section 2) and the verifier's strict decoder.

The model (:class:`PCS`, :class:`FT`, :class:`VRFProof`), its type conversion and the strict
rules are the SDK's (``fractal_lba_client``), shared with producers. This module adds what
only a reader of raw bytes needs, and turns the SDK's ``ValidationError`` into the verifier's.
:func:`decode_record` returns the typed record and the plain JSON object it was read from
(what a 0.3 signature covers). Order of the checks:

1. JSON syntax (a truncated body included)                      -> ``malformed_json``
2. a key duplicated anywhere (last-wins vs first-wins readers)  -> ``duplicate_key``
3. types and bounds of every field (integers in [0, 2^53 - 1])   -> ``invalid_field`` ...
4. the strict rules: texts, ``vrf`` sizes, ``N_j`` keys, version features, ``pcs_id``

Errors name the field path, never a value, an enum value, nor a key of ``N_j``/``meta``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import msgspec

from fractal_lba.contract.canonical import full_record_message, jcs
from fractal_lba.contract.errors import ValidationError
from fractal_lba_client import ErrorCode as E
from fractal_lba_client import ValidationError as SdkValidationError
from fractal_lba_client.contract import (
    DEFAULT_PCS_VERSION,
    FT,
    FULL_RECORD_VERSIONS,
    MAX_META_KEYS,
    MAX_TEXT,
    PCS,
    PCS_VERSIONS,
    VRFProof,
    check_rules,
    convert_record,
    field_path,
    version_key,
)

__all__ = [
    "DELIVERY_FIELDS",
    "FT",
    "LATEST_VERSION",
    "MAX_META_KEYS",
    "MAX_META_VALUE",
    "PCS",
    "SUPPORTED_VERSIONS",
    "VERSION_ORDER",
    "VRFProof",
    "decode_pcs",
    "decode_record",
    "encode_pcs",
    "record_identity",
    "signed_bytes",
    "validate_pcs",
]

SUPPORTED_VERSIONS: tuple[str, ...] = PCS_VERSIONS
LATEST_VERSION = DEFAULT_PCS_VERSION
VERSION_ORDER: dict[str, tuple[int, int]] = {v: version_key(v) for v in PCS_VERSIONS}
MAX_META_VALUE = MAX_TEXT
DELIVERY_FIELDS = frozenset({"sig", "attempt", "sent_at", "ft"})
"""Fields a producer may change between deliveries of one 0.3 record (re-signing it): left
out of its identity, so a retry is a duplicate and not an idempotency conflict."""

_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode
_encoder = msgspec.json.Encoder()


def encode_pcs(pcs: PCS) -> bytes:
    """Compact JSON of a PCS (optional fields left out when unset)."""
    return _encoder.encode(pcs)


def _ours(exc: SdkValidationError) -> ValidationError:
    return ValidationError(exc.field, exc.detail, code=exc.code)


# -- 1. syntax -------------------------------------------------------------------------------
def _explain_decode_error(body: bytes) -> ValidationError:
    """Locate a syntax problem; NaN/Infinity (which Python emits) get their field named."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        pos = getattr(exc, "pos", None)
        where = f" at byte {pos}" if pos is not None else ""
        return ValidationError("body", f"malformed JSON{where}", code=E.MALFORMED_JSON)
    field = _non_finite_field(obj)
    if field is not None:
        return ValidationError(
            field, "must be a finite number (NaN/Infinity are not JSON)", code=E.INVALID_NUMBER
        )
    return ValidationError("body", "malformed JSON", code=E.MALFORMED_JSON)


def _non_finite_field(obj: Any, path: tuple[str, ...] = ()) -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return field_path(path)
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = _non_finite_field(v, (*path, str(k)))
            if found:
                return found
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _non_finite_field(v, (*path, f"[{i}]"))
            if found:
                return found
    return None


# -- 2. duplicate keys -----------------------------------------------------------------------
class _Dup(dict[str, Any]):
    """An object read with a duplicated key (``key`` is the first one repeated)."""

    key: str = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dup: str | None = None
    for k, v in pairs:
        if dup is None and k in out:
            dup = k
        out[k] = v
    if dup is None:
        return out
    marked = _Dup(out)
    marked.key = dup
    return marked


def _find_dup(obj: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
    if isinstance(obj, dict):
        if isinstance(obj, _Dup):
            return (*path, obj.key)
        for k, v in obj.items():
            found = _find_dup(v, (*path, k))
            if found is not None:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _find_dup(v, (*path, f"[{i}]"))
            if found is not None:
                return found
    return None


def _check_duplicates(body: bytes, obj: Any) -> None:
    """Raise ``duplicate_key`` when an object of ``body`` repeats a key, at any depth.

    ``obj`` is ``body`` decoded (last key wins, so a repeated key is gone from it). Without
    escapes in the body, its strings are byte-identical in the re-encoding, so every colon
    outside strings (one per key) is accounted for: equal colon counts prove no key was
    dropped, at the cost of one C-level encode and two counts. Bodies with escapes, or a
    mismatch, take the exact reader (``json`` with a pairs hook), which also names the path.
    """
    if b"\\" not in body and body.count(b":") == _encode_json(obj).count(b":"):
        return
    try:
        tree = json.loads(body, object_pairs_hook=_pairs)
    except (ValueError, RecursionError):
        raise ValidationError(
            "body", "malformed JSON (too deeply nested)", code=E.MALFORMED_JSON
        ) from None
    path = _find_dup(tree, ())
    if path is not None:
        field = field_path(path)
        named = field.count(".") + 1 == len(path) and not field.endswith("]")
        detail = "key appears more than once" if named else "an object repeats a key"
        raise ValidationError(field, detail, code=E.DUPLICATE_KEY)


# -- 3 and 4 are the SDK's --------------------------------------------------------------------
def validate_pcs(pcs: PCS) -> PCS:
    """SPEC section 2 beyond types (the SDK's ``check_rules``), as the verifier's error."""
    try:
        return check_rules(pcs)
    except SdkValidationError as exc:
        raise _ours(exc) from None


def decode_record(body: bytes) -> tuple[PCS, dict[str, Any]]:
    """Parse and validate a PCS from JSON bytes: the typed record and the JSON object it was
    read from (what a 0.3 signature covers). Raises ValidationError naming the field."""
    try:
        obj = _decode_json(body)
    except msgspec.DecodeError:
        raise _explain_decode_error(body) from None
    _check_duplicates(body, obj)
    try:
        return check_rules(convert_record(obj)), obj
    except SdkValidationError as exc:
        raise _ours(exc) from None


def decode_pcs(body: bytes) -> PCS:
    """Parse and validate a PCS from JSON bytes; raise ValidationError naming the field."""
    return decode_record(body)[0]


def signed_bytes(pcs: PCS, record: dict[str, Any], tenant_id: str) -> bytes:
    """What the signature of ``pcs`` covers: the 0.3 full-record message bound to
    ``tenant_id`` (from ``record``, the JSON object as received), else the 8-field payload."""
    if pcs.version in FULL_RECORD_VERSIONS:
        return full_record_message(record, tenant_id)
    return pcs.signed_payload()


def record_identity(pcs: PCS, record: dict[str, Any], signed: bytes) -> str:
    """Hex digest that tells a duplicate from an idempotency conflict (SPEC 4 step 7).

    0.1/0.2: the signed 8-field payload. 0.3: every claim of the record (JCS without
    :data:`DELIVERY_FIELDS`), so a retry with a new ``attempt`` is a duplicate, and the same
    pcs_id with different ``N_j``, ``meta``, ... is a conflict.
    """
    if pcs.version not in FULL_RECORD_VERSIONS:
        return hashlib.sha256(signed).hexdigest()
    claims = {k: v for k, v in record.items() if k not in DELIVERY_FIELDS}
    return hashlib.sha256(b"pcs/v0.3 claims\n" + jcs(claims)).hexdigest()
