"""Canonical forms of the PCS contract (SPEC section 2): round9, pcs_id, signature payload.

These are byte-exact contract items; ``tests/vectors/signing.json`` pins them.
"""

from __future__ import annotations

import hashlib
import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

_NANO = Decimal("1e-9")

SIGNED_FIELDS: tuple[str, ...] = (
    "pcs_id",
    "merkle_root",
    "epoch",
    "shard_id",
    "D_hat",
    "coh_star",
    "r",
    "budget",
)


def round9(x: float) -> float:
    """Round half-up to 9 decimals on the decimal repr (``round()`` gets ties wrong)."""
    return float(Decimal(repr(float(x))).quantize(_NANO, ROUND_HALF_UP))


def compute_pcs_id(merkle_root: str, epoch: int, shard_id: str) -> str:
    """``sha256_hex(f"{merkle_root}|{epoch}|{shard_id}")``: the PCS identity."""
    return hashlib.sha256(f"{merkle_root}|{epoch}|{shard_id}".encode()).hexdigest()


def signature_payload(
    *,
    pcs_id: str,
    merkle_root: str,
    epoch: int,
    shard_id: str,
    D_hat: float,
    coh_star: float,
    r: float,
    budget: float,
) -> bytes:
    """The exact bytes that are signed: 8 keys, floats round9'ed, sorted compact JSON."""
    obj: dict[str, Any] = {
        "pcs_id": pcs_id,
        "merkle_root": merkle_root,
        "epoch": epoch,
        "shard_id": shard_id,
        "D_hat": round9(D_hat),
        "coh_star": round9(coh_star),
        "r": round9(r),
        "budget": round9(budget),
    }
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")
