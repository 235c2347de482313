"""The PCS wire model (SPEC section 2) as typed msgspec structs, and the strict rules.

One model for producers and the verifier: :func:`convert_record` turns a plain JSON object
into a :class:`PCS` (types and integer bounds) and :func:`check_rules` applies the rest of
SPEC section 2. Both raise :class:`~fractal_lba_client.ValidationError` naming the field path;
neither echoes a value, an enum value, nor a key of ``N_j`` or ``meta`` (those are data).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Annotated, Any, Literal

import msgspec

from fractal_lba_client._canonical import SCHEMA, compute_pcs_id, signature_payload
from fractal_lba_client._errors import ErrorCode as E
from fractal_lba_client._errors import ValidationError
from fractal_lba_client._jcs import MAX_SAFE_INTEGER
from fractal_lba_client._rules import (
    MAX_META_KEYS,
    VRF_OUTPUT_BYTES,
    VRF_PROOF_BYTES,
    b64_problem,
    text_problem,
)
from fractal_lba_client._versions import PCS_VERSIONS

SafeInt = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INTEGER)]
SignedSafeInt = Annotated[int, msgspec.Meta(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
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
    """Proof-of-Computation Summary as it goes over the wire (SPEC section 2)."""

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


SCHEMA_FIELDS: dict[str, frozenset[str]] = {
    "": frozenset(PCS.__struct_fields__),
    "ft": frozenset(FT.__struct_fields__),
    "vrf": frozenset(VRFProof.__struct_fields__),
}
"""Where key names are schema (and may be named in errors); ``N_j``/``meta`` keys are data."""
DATA_KEYED = frozenset({"N_j", "meta"})

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED = re.compile(r"field `(?P<name>[^`]+)`")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
"""An unknown field's name is named in the error only when it is a plain identifier."""
_SEGMENT = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]')


def field_path(path: tuple[str, ...]) -> str:
    """Dotted field path, naming keys only where they are schema (never N_j/meta keys)."""
    out: list[str] = []
    container = ""
    for seg in path:
        if seg.startswith("["):
            if out:
                out[-1] += seg
                continue
            break
        known = SCHEMA_FIELDS.get(container)
        if known is None or seg not in known:
            break
        out.append(seg)
        container = seg if len(out) == 1 else container
        if seg in DATA_KEYED:
            break
    return ".".join(out) or "body"


def _path_tuple(path: str) -> tuple[str, ...]:
    """``.N_j["4"]`` -> ``("N_j", "4")``; ``.v_star[0]`` -> ``("v_star", "[0]")``."""
    out: list[str] = []
    for m in _SEGMENT.finditer(path):
        key, name, index = m.groups()
        out.append(key if key is not None else name if name is not None else f"[{index}]")
    return tuple(out)


def _explain(msg: str) -> ValidationError:
    at = _AT.search(msg)
    path = _path_tuple(at.group("path")) if at else ()
    detail = (msg[: at.start()] if at else msg).replace("`", "")
    if detail.startswith("Invalid enum value"):
        detail = "not one of the allowed values"  # msgspec quotes the value; never echo it
    named = _NAMED.search(msg)
    if named and ("missing required field" in msg or "unknown field" in msg):
        missing = "missing" in msg
        name = named.group("name")
        field = field_path((*path, name))
        parent = field_path(path)
        if not missing and _PLAIN.fullmatch(name) and parent in {"body", *SCHEMA_FIELDS}:
            field = name if parent == "body" else f"{parent}.{name}"
        detail = "required field is missing" if missing else "unknown field"
        return ValidationError(field, detail, code=E.MISSING_FIELD if missing else E.UNKNOWN_FIELD)
    return ValidationError(field_path(path), detail, code=E.INVALID_FIELD)


def convert_record(obj: Any) -> PCS:
    """A plain JSON object -> :class:`PCS` (types and bounds); ValidationError naming the field."""
    try:
        return msgspec.convert(obj, PCS)
    except msgspec.ValidationError as exc:
        raise _explain(str(exc)) from None


@functools.lru_cache(maxsize=64)
def _scales_keys(scales: tuple[int, ...]) -> frozenset[str]:
    return frozenset(str(x) for x in scales)


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValidationError(name, "must be a finite number", code=E.INVALID_NUMBER)


def check_rules(pcs: PCS) -> PCS:
    """SPEC section 2 beyond types: schema, version features, texts, N_j keys, ``vrf`` sizes,
    ``meta`` limits, finite numbers, a signature present, pcs_id."""
    if pcs.schema != SCHEMA:
        raise ValidationError("schema", f"must be {SCHEMA!r}", code=E.UNKNOWN_SCHEMA)
    if pcs.version not in PCS_VERSIONS:
        raise ValidationError(
            "version",
            f"unsupported version (supported: {', '.join(PCS_VERSIONS)})",
            code=E.UNSUPPORTED_VERSION,
        )
    problem = text_problem(pcs.shard_id)
    if problem is not None:
        raise ValidationError("shard_id", problem)
    if pcs.version == "0.1":
        if pcs.vrf is not None:
            raise ValidationError("vrf", "requires version >= 0.2")
        if pcs.meta is not None:
            raise ValidationError("meta", "requires version >= 0.2")
    v = pcs.v_star
    if not math.isfinite(pcs.D_hat + pcs.coh_star + pcs.r + pcs.budget + v[0] + v[1] + v[2]):
        for name in ("D_hat", "coh_star", "r", "budget"):
            _finite(name, getattr(pcs, name))
        for i, comp in enumerate(v):
            _finite(f"v_star[{i}]", comp)
    if not _scales_keys(tuple(pcs.scales)).issuperset(pcs.N_j):
        raise ValidationError("N_j", "every key must be one of the scales")
    if pcs.vrf is not None:
        for name, size in (("proof", VRF_PROOF_BYTES), ("output", VRF_OUTPUT_BYTES)):
            problem = b64_problem(getattr(pcs.vrf, name), size)
            if problem is not None:
                raise ValidationError(f"vrf.{name}", problem)
    if pcs.meta is not None:
        if len(pcs.meta) > MAX_META_KEYS:
            raise ValidationError("meta", f"at most {MAX_META_KEYS} keys")
        for key, value in pcs.meta.items():
            problem = text_problem(key)
            if problem is not None:
                raise ValidationError("meta", f"a key: {problem}")
            problem = text_problem(value)
            if problem is not None:
                raise ValidationError("meta", f"a value: {problem}")
    if pcs.sig == "":
        raise ValidationError("sig", "missing signature", code=E.MISSING_FIELD)
    if compute_pcs_id(pcs.merkle_root, pcs.epoch, pcs.shard_id) != pcs.pcs_id:
        raise ValidationError(
            "pcs_id", "does not equal sha256(merkle_root|epoch|shard_id)", code=E.PCS_ID_MISMATCH
        )
    return pcs
