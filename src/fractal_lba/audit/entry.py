"""Audit entry schema (SPEC section 7) and its canonical hashing.

``entry_hash = sha256(canonical JSON of the entry without entry_hash)``; the canonical JSON is
``json.dumps(obj, sort_keys=True, separators=(",", ":"))`` (the same rule as the PCS signature
payload), so any JSON tool can re-derive it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import msgspec

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
    prev_hash: str = ""
    entry_hash: str = ""


def canonical_bytes(obj: dict[str, Any]) -> bytes:
    """Sorted, compact JSON (UTF-8) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    """All fields of an entry as a plain dict (None values kept: they are hashed too)."""
    return {f: getattr(entry, f) for f in entry.__struct_fields__}


def compute_entry_hash(obj: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of ``obj`` without its ``entry_hash``."""
    body = {k: v for k, v in obj.items() if k != "entry_hash"}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()
