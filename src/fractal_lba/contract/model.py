"""The PCS wire model (SPEC section 2) and its strict decoder.

:func:`decode_record` turns raw JSON bytes into a :class:`PCS` (and the plain JSON object it
was read from, which the 0.3 signature covers) or raises
:class:`~fractal_lba.contract.errors.ValidationError` naming the field path. Errors never
echo a value, nor a key of ``N_j`` or ``meta`` (those are data). Order of the checks:

1. JSON syntax (a truncated body included)                      -> ``malformed_json``
2. a key duplicated anywhere (last-wins vs first-wins readers)  -> ``duplicate_key``
3. types and bounds of every field (integers in [0, 2^53 - 1])   -> ``invalid_field`` ...
4. the strict rules: texts, ``vrf`` sizes, ``N_j`` keys, version features, ``pcs_id``
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from typing import Annotated, Any, Literal

import msgspec

from fractal_lba.contract.canonical import (
    compute_pcs_id,
    full_record_message,
    jcs,
    signature_payload,
)
from fractal_lba.contract.errors import ValidationError
from fractal_lba_client import ErrorCode as E
from fractal_lba_client.contract import (
    DEFAULT_PCS_VERSION,
    FULL_RECORD_VERSIONS,
    MAX_META_KEYS,
    MAX_SAFE_INTEGER,
    MAX_TEXT,
    PCS_VERSIONS,
    SCHEMA,
    VRF_OUTPUT_BYTES,
    VRF_PROOF_BYTES,
    b64_problem,
    text_problem,
    version_key,
)

SUPPORTED_VERSIONS: tuple[str, ...] = PCS_VERSIONS
LATEST_VERSION = DEFAULT_PCS_VERSION
VERSION_ORDER: dict[str, tuple[int, int]] = {v: version_key(v) for v in PCS_VERSIONS}
DELIVERY_FIELDS = frozenset({"sig", "attempt", "sent_at", "ft"})
"""Fields a producer may change between deliveries of one 0.3 record (re-signing it): left
out of its identity, so a retry is a duplicate and not an idempotency conflict."""
MAX_META_VALUE = MAX_TEXT

Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
SafeInt = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INTEGER)]
SignedSafeInt = Annotated[int, msgspec.Meta(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
Regime = Literal["sticky", "mixed", "non_sticky"]


class FT(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Fault-tolerance annotations set by the agent."""

    outbox_seq: SafeInt = 0
    degraded: bool = False
    fallbacks: list[Annotated[str, msgspec.Meta(max_length=256)]] = []
    clock_skew_ms: SignedSafeInt = 0


class VRFProof(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """ECVRF proof (80 bytes) and output beta (64 bytes), both base64 (version >= 0.2)."""

    proof: str
    output: str


class PCS(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Proof-of-Computation Summary as it goes over the wire."""

    pcs_id: Hex64
    schema: str
    version: str
    shard_id: str
    epoch: SafeInt
    attempt: Annotated[int, msgspec.Meta(ge=1, le=MAX_SAFE_INTEGER)] = 1
    sent_at: str | None = None
    seed: SafeInt
    scales: Annotated[list[SignedSafeInt], msgspec.Meta(min_length=2, max_length=64)]
    N_j: Annotated[dict[str, SafeInt], msgspec.Meta(max_length=64)]
    coh_star: float
    v_star: Annotated[list[float], msgspec.Meta(min_length=3, max_length=3)]
    D_hat: float
    r: float
    regime: Regime
    budget: float
    merkle_root: Hex64
    sig: str = ""
    ft: FT | None = None
    vrf: VRFProof | None = None
    meta: dict[str, str] | None = None

    def signed_payload(self) -> bytes:
        """The 8-field payload a 0.1/0.2 signature covers (SPEC section 2)."""
        return signature_payload(
            pcs_id=self.pcs_id,
            merkle_root=self.merkle_root,
            epoch=self.epoch,
            shard_id=self.shard_id,
            D_hat=self.D_hat,
            coh_star=self.coh_star,
            r=self.r,
            budget=self.budget,
        )


_FIELDS: dict[str, frozenset[str]] = {
    "": frozenset(PCS.__struct_fields__),
    "ft": frozenset(FT.__struct_fields__),
    "vrf": frozenset(VRFProof.__struct_fields__),
}
"""Where key names are schema (and may be named in errors); ``N_j``/``meta`` keys are data."""
DATA_KEYED = frozenset({"N_j", "meta"})

_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode
_encoder = msgspec.json.Encoder()
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED = re.compile(r"field `(?P<name>[^`]+)`")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
"""An unknown field's name is named in the error only when it is a plain identifier."""
_SEGMENT = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]')


def encode_pcs(pcs: PCS) -> bytes:
    """Compact JSON of a PCS (optional fields left out when unset)."""
    return _encoder.encode(pcs)


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
        return _field(path)
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


def _field(path: tuple[str, ...]) -> str:
    """Dotted field path, naming keys only where they are schema (never N_j/meta keys)."""
    out: list[str] = []
    container = ""
    for seg in path:
        if seg.startswith("["):
            if out:
                out[-1] += seg
                continue
            break
        known = _FIELDS.get(container)
        if known is None or seg not in known:
            break
        out.append(seg)
        container = seg if not out[:-1] else container
        if seg in DATA_KEYED:
            break
    return ".".join(out) or "body"


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
        field = _field(path)
        named = field.count(".") + 1 == len(path) and not field.endswith("]")
        detail = "key appears more than once" if named else "an object repeats a key"
        raise ValidationError(field, detail, code=E.DUPLICATE_KEY)


# -- 3. types and bounds ---------------------------------------------------------------------
def _path_tuple(path: str) -> tuple[str, ...]:
    """``.N_j["4"]`` -> ``("N_j", "4")``; ``.v_star[0]`` -> ``("v_star", "[0]")``."""
    out: list[str] = []
    for m in _SEGMENT.finditer(path):
        key, name, index = m.groups()
        out.append(key if key is not None else name if name is not None else f"[{index}]")
    return tuple(out)


def _explain_validation_error(msg: str) -> ValidationError:
    at = _AT.search(msg)
    path = _path_tuple(at.group("path")) if at else ()
    detail = (msg[: at.start()] if at else msg).replace("`", "")
    if detail.startswith("Invalid enum value"):
        detail = "not one of the allowed values"  # msgspec quotes the value; never echo it
    named = _NAMED.search(msg)
    if named and ("missing required field" in msg or "unknown field" in msg):
        missing = "missing" in msg
        name = named.group("name")
        field = _field((*path, name))
        if not missing and _PLAIN.fullmatch(name) and _field(path) in {"body", *_FIELDS}:
            parent = _field(path)
            field = name if parent == "body" else f"{parent}.{name}"
        detail = "required field is missing" if missing else "unknown field"
        return ValidationError(field, detail, code=E.MISSING_FIELD if missing else E.UNKNOWN_FIELD)
    return ValidationError(_field(path), detail, code=E.INVALID_FIELD)


# -- 4. strict rules -------------------------------------------------------------------------
def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValidationError(name, "must be a finite number", code=E.INVALID_NUMBER)


def _check_text(field: str, value: str) -> None:
    problem = text_problem(value)
    if problem is not None:
        raise ValidationError(field, problem, code=E.INVALID_FIELD)


@functools.lru_cache(maxsize=64)
def _scales_keys(scales: tuple[int, ...]) -> frozenset[str]:
    return frozenset(str(x) for x in scales)


def _scale_keys(scales: list[int]) -> frozenset[str]:
    """The N_j keys the scales allow (cached: agents send the same few scale lists)."""
    return _scales_keys(tuple(scales))


def validate_pcs(pcs: PCS) -> PCS:
    """Contract checks beyond types (SPEC section 2): schema, version features, texts, N_j
    keys, ``vrf`` sizes, ``meta`` limits, finite numbers, pcs_id."""
    if pcs.schema != SCHEMA:
        raise ValidationError("schema", f"must be {SCHEMA!r}", code=E.UNKNOWN_SCHEMA)
    if pcs.version not in SUPPORTED_VERSIONS:
        raise ValidationError(
            "version",
            f"unsupported version (supported: {', '.join(SUPPORTED_VERSIONS)})",
            code=E.UNSUPPORTED_VERSION,
        )
    _check_text("shard_id", pcs.shard_id)
    if pcs.version == "0.1":
        if pcs.vrf is not None:
            raise ValidationError("vrf", "requires version >= 0.2", code=E.INVALID_FIELD)
        if pcs.meta is not None:
            raise ValidationError("meta", "requires version >= 0.2", code=E.INVALID_FIELD)
    v = pcs.v_star
    if not math.isfinite(pcs.D_hat + pcs.coh_star + pcs.r + pcs.budget + v[0] + v[1] + v[2]):
        for name in ("D_hat", "coh_star", "r", "budget"):
            _check_finite(name, getattr(pcs, name))
        for i, comp in enumerate(v):
            _check_finite(f"v_star[{i}]", comp)
    if not _scale_keys(pcs.scales).issuperset(pcs.N_j):
        raise ValidationError("N_j", "every key must be one of the scales", code=E.INVALID_FIELD)
    if pcs.vrf is not None:
        for name, size in (("proof", VRF_PROOF_BYTES), ("output", VRF_OUTPUT_BYTES)):
            problem = b64_problem(getattr(pcs.vrf, name), size)
            if problem is not None:
                raise ValidationError(f"vrf.{name}", problem, code=E.INVALID_FIELD)
    if pcs.meta is not None:
        if len(pcs.meta) > MAX_META_KEYS:
            raise ValidationError("meta", f"at most {MAX_META_KEYS} keys", code=E.INVALID_FIELD)
        for key, value in pcs.meta.items():
            problem = text_problem(key)
            if problem is not None:
                raise ValidationError("meta", f"a key: {problem}", code=E.INVALID_FIELD)
            problem = text_problem(value)
            if problem is not None:
                raise ValidationError("meta", f"a value: {problem}", code=E.INVALID_FIELD)
    if pcs.sig == "":
        raise ValidationError("sig", "missing signature", code=E.MISSING_FIELD)
    if compute_pcs_id(pcs.merkle_root, pcs.epoch, pcs.shard_id) != pcs.pcs_id:
        raise ValidationError(
            "pcs_id", "does not equal sha256(merkle_root|epoch|shard_id)", code=E.PCS_ID_MISMATCH
        )
    return pcs


def decode_record(body: bytes) -> tuple[PCS, dict[str, Any]]:
    """Parse and validate a PCS from JSON bytes: the typed record and the JSON object it was
    read from (what a 0.3 signature covers). Raises ValidationError naming the field."""
    try:
        obj = _decode_json(body)
    except msgspec.DecodeError:
        raise _explain_decode_error(body) from None
    _check_duplicates(body, obj)
    try:
        pcs = msgspec.convert(obj, PCS)
    except msgspec.ValidationError as exc:
        # msgspec details name types and constraints; enum values are stripped above.
        raise _explain_validation_error(str(exc)) from None
    return validate_pcs(pcs), obj


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


def decode_pcs(body: bytes) -> PCS:
    """Parse and validate a PCS from JSON bytes; raise ValidationError naming the field."""
    return decode_record(body)[0]
