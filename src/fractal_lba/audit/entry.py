"""Audit entry schema (SPEC section 7) and its canonical hashing.

``entry_hash = sha256(canonical JSON of the entry without entry_hash)``; the canonical JSON is
``json.dumps(obj, sort_keys=True, separators=(",", ":"))`` (the same rule as the PCS signature
payload), so any JSON tool can re-derive it.
"""

from __future__ import annotations

import hashlib
import json
import math
from json.encoder import encode_basestring_ascii
from typing import Any, Literal

import msgspec

from fractal_lba.canonical_json import canonical_json

Outcome = Literal["accepted", "escalated", "rejected", "duplicate", "conflict"]
GENESIS_PREV_HASH = "0" * 64


class AuditEntry(msgspec.Struct, kw_only=True):
    """One audit record. The server fills everything but ``prev_hash``/``entry_hash``, which
    the writer assigns in append order. Fields unknown at rejection time stay ``None``.
    ``request_id`` links the entry to its inbox-WAL record (replay uses it)."""

    timestamp: str
    pcs_id: str | None
    tenant_id: str
    merkle_root: str | None = None
    D_hat: float | None = None
    coh_star: float | None = None
    r: float | None = None
    budget: float | None = None
    regime: str | None = None
    verify_outcome: Outcome
    reason: str | None = None
    status: int
    verify_params_hash: str | None = None
    policy_version: str | None = None
    region_id: str
    request_id: str
    shard_id: str | None = None
    """As the privacy gate lets it be stored: found PII replaced by keyed tokens."""
    pii: str | None = None
    """Privacy gate note: compact JSON ``[[type, field], ...]`` of its findings, no values."""
    prev_hash: str = ""
    entry_hash: str = ""


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    """All fields of an entry as a plain dict (None values kept: they are hashed too)."""
    return {f: getattr(entry, f) for f in entry.__struct_fields__}


def compute_entry_hash(obj: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of ``obj`` without its ``entry_hash``."""
    body = {k: v for k, v in obj.items() if k != "entry_hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


_SORTED_FIELDS: tuple[str, ...] = tuple(sorted(AuditEntry.__struct_fields__))
_HASH_INDEX = _SORTED_FIELDS.index("entry_hash")
_HASHED_FIELDS = tuple(f for f in _SORTED_FIELDS if f != "entry_hash")
_PREV_INDEX = _HASHED_FIELDS.index("prev_hash")
_HASHED_PREFIXES = tuple(
    ("{" if i == 0 else ",") + encode_basestring_ascii(name) + ":"
    for i, name in enumerate(_HASHED_FIELDS)
)
_PLAN = tuple(zip(_HASHED_PREFIXES, _HASHED_FIELDS, strict=True))
if _HASH_INDEX == 0:  # the split in chain_entry relies on a key before entry_hash
    raise RuntimeError("entry_hash must not be the first key of an audit entry")


def _json_value(v: Any) -> str:
    """One value exactly as ``json.dumps`` writes it (ASCII), for the entry's field types."""
    t = type(v)
    if t is str:
        return encode_basestring_ascii(v)
    if v is None:
        return "null"
    if t is float and math.isfinite(v):
        return float.__repr__(v)
    if t is int:
        return int.__repr__(v)
    return json.dumps(v)  # anything else (non-finite, bool, subclasses): the reference encoder


def chain_entry(entry: AuditEntry, prev_hash: str) -> tuple[str, bytes]:
    """``(entry_hash, line)`` of ``entry`` chained after ``prev_hash``.

    The same bytes as :func:`~fractal_lba.canonical_json.canonical_json` of the entry's dict
    (pinned by a property test), without building dicts or sorting keys per entry: this runs
    once per audited request.
    """
    parts = [p + _json_value(getattr(entry, name)) for p, name in _PLAN]
    parts[_PREV_INDEX] = _HASHED_PREFIXES[_PREV_INDEX] + encode_basestring_ascii(prev_hash)
    head, tail = "".join(parts[:_HASH_INDEX]), "".join(parts[_HASH_INDEX:])
    entry_hash = hashlib.sha256((head + tail + "}").encode("ascii")).hexdigest()
    return entry_hash, f'{head},"entry_hash":"{entry_hash}"{tail}}}\n'.encode("ascii")
