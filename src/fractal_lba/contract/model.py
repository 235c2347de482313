"""The PCS wire model (SPEC section 2) and its strict decoder.

``decode_pcs`` turns raw JSON bytes into a :class:`PCS` or raises
:class:`~fractal_lba.contract.errors.ValidationError` naming the field; it never echoes values.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

import msgspec

from fractal_lba.contract.canonical import compute_pcs_id, signature_payload
from fractal_lba.contract.errors import ValidationError

SCHEMA = "fractal-lba-kakeya"
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.1", "0.2")
LATEST_VERSION = "0.2"
MAX_META_KEYS = 16
MAX_META_VALUE = 256

Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Regime = Literal["sticky", "mixed", "non_sticky"]


class FT(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Fault-tolerance annotations set by the agent."""

    outbox_seq: NonNegInt = 0
    degraded: bool = False
    fallbacks: list[Annotated[str, msgspec.Meta(max_length=256)]] = []
    clock_skew_ms: int = 0


class VRFProof(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """ECVRF proof (80 bytes) and output beta (64 bytes), both base64 (version >= 0.2)."""

    proof: str
    output: str


class PCS(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Proof-of-Computation Summary as it goes over the wire."""

    pcs_id: Hex64
    schema: str
    version: str
    shard_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    epoch: NonNegInt
    attempt: Annotated[int, msgspec.Meta(ge=1)] = 1
    sent_at: str | None = None
    seed: NonNegInt
    scales: Annotated[list[int], msgspec.Meta(min_length=2, max_length=64)]
    N_j: Annotated[dict[str, NonNegInt], msgspec.Meta(max_length=64)]
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
        """The exact bytes the signature covers (SPEC section 2)."""
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


_decoder = msgspec.json.Decoder(PCS)
_encoder = msgspec.json.Encoder()
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED = re.compile(r"field `(?P<name>[^`]+)`")


def encode_pcs(pcs: PCS) -> bytes:
    """Compact JSON of a PCS (optional fields left out when unset)."""
    return _encoder.encode(pcs)


def _path_to_field(path: str) -> str:
    """``.N_j["4"]`` -> ``N_j.4``; ``.v_star[0]`` -> ``v_star[0]``."""
    out = re.sub(r'\["([^"]*)"\]', r".\1", path)
    return out.lstrip(".") or "body"


def _non_finite_field(obj: Any, prefix: str = "") -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return prefix or "body"
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = _non_finite_field(v, f"{prefix}.{k}" if prefix else str(k))
            if found:
                return found
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _non_finite_field(v, f"{prefix}[{i}]")
            if found:
                return found
    return None


def _explain_decode_error(body: bytes) -> ValidationError:
    """Locate a syntax problem; NaN/Infinity (which Python emits) get their field named."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        pos = getattr(exc, "pos", None)
        where = f" at byte {pos}" if pos is not None else ""
        return ValidationError("body", f"malformed JSON{where}", code="malformed_json")
    field = _non_finite_field(obj)
    if field is not None:
        return ValidationError(
            field, "must be a finite number (NaN/Infinity are not JSON)", code="invalid_number"
        )
    return ValidationError("body", "malformed JSON", code="malformed_json")


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValidationError(name, "must be a finite number", code="invalid_number")


def validate_pcs(pcs: PCS) -> PCS:
    """Contract checks beyond types: schema, version features, N_j keys, meta limits, pcs_id."""
    if pcs.seed >= 2**64:
        raise ValidationError("seed", "must fit in 64 bits", code="invalid_field")
    if pcs.schema != SCHEMA:
        raise ValidationError("schema", f"must be {SCHEMA!r}", code="unknown_schema")
    if pcs.version not in SUPPORTED_VERSIONS:
        raise ValidationError(
            "version",
            f"unsupported version (supported: {', '.join(SUPPORTED_VERSIONS)})",
            code="unsupported_version",
        )
    if pcs.version == "0.1":
        if pcs.vrf is not None:
            raise ValidationError("vrf", "requires version >= 0.2", code="invalid_field")
        if pcs.meta is not None:
            raise ValidationError("meta", "requires version >= 0.2", code="invalid_field")
    for name in ("D_hat", "coh_star", "r", "budget"):
        _check_finite(name, getattr(pcs, name))
    for i, comp in enumerate(pcs.v_star):
        _check_finite(f"v_star[{i}]", comp)
    for key in pcs.N_j:
        if not key.isdigit() or str(int(key)) != key:
            raise ValidationError(
                f"N_j.{key[:32]}", "keys must be decimal scale numbers", code="invalid_field"
            )
    if pcs.meta is not None:
        if len(pcs.meta) > MAX_META_KEYS:
            raise ValidationError("meta", f"at most {MAX_META_KEYS} keys", code="invalid_field")
        for key, value in pcs.meta.items():
            if len(value) > MAX_META_VALUE:
                raise ValidationError(
                    f"meta.{key[:64]}", f"at most {MAX_META_VALUE} characters", code="invalid_field"
                )
    if pcs.sig == "":
        raise ValidationError("sig", "missing signature", code="missing_field")
    if compute_pcs_id(pcs.merkle_root, pcs.epoch, pcs.shard_id) != pcs.pcs_id:
        raise ValidationError(
            "pcs_id", "does not equal sha256(merkle_root|epoch|shard_id)", code="pcs_id_mismatch"
        )
    return pcs


def decode_pcs(body: bytes) -> PCS:
    """Parse and validate a PCS from JSON bytes; raise ValidationError naming the field."""
    try:
        pcs = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        # msgspec details name types and constraints, never the offending value.
        raise _explain_validation_error(str(exc)) from None
    except msgspec.DecodeError:
        raise _explain_decode_error(body) from None
    return validate_pcs(pcs)


def _explain_validation_error(msg: str) -> ValidationError:
    at = _AT.search(msg)
    path = _path_to_field(at.group("path")) if at else ""
    detail = (msg[: at.start()] if at else msg).replace("`", "")
    named = _NAMED.search(msg)
    if named and ("missing required field" in msg or "unknown field" in msg):
        field = f"{path}.{named.group('name')}" if path and path != "body" else named.group("name")
        code = "missing_field" if "missing" in msg else "unknown_field"
        return ValidationError(field, detail, code=code)
    return ValidationError(path or "body", detail, code="invalid_field")
