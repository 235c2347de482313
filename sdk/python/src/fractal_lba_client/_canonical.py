"""Canonical forms of the PCS contract (SPEC section 2): round9, pcs_id, the 0.1/0.2 payload.

Byte-exact contract items; the signing vectors pin them. This is the one implementation:
the verifier and the agent import it from here.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import ROUND_HALF_UP, Context, Decimal
from json.encoder import encode_basestring_ascii
from typing import Any

SCHEMA = "fractal-lba-kakeya"

_NANO = Decimal("1e-9")
# Enough digits for any finite float with 9 decimals (the default 28 raised InvalidOperation
# from 1e19 up, so a huge claimed value crashed the signature check instead of failing it).
_CTX = Context(prec=400)

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
"""The 8 fields a 0.1/0.2 signature covers."""


def round9(x: float) -> float:
    """Round half-up to 9 decimals on the decimal repr (``round()`` gets ties wrong)."""
    x = float(x)
    text = float.__repr__(x)
    # Fast path: a plain repr with at most 9 decimals is already its own round9 (agents send
    # round9'ed values, so the verifier nearly always takes it).
    if "e" not in text and "n" not in text and len(text) - text.index(".") <= 10:
        return x
    return float(Decimal(text).quantize(_NANO, ROUND_HALF_UP, context=_CTX))


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
    """The exact bytes a 0.1/0.2 signature covers: 8 keys, floats round9'ed, sorted JSON.

    Built directly in sorted key order (byte-identical to ``json.dumps(sort_keys=True)``,
    pinned by the signing vectors and a property test); anything unusual (a non-finite
    number, a non-int epoch) takes the reference encoder.
    """
    d, c, rr, b = round9(D_hat), round9(coh_star), round9(r), round9(budget)
    if (
        type(epoch) is int
        and type(pcs_id) is str
        and type(merkle_root) is str
        and type(shard_id) is str
        and math.isfinite(d + c + rr + b)
    ):
        rep = float.__repr__
        return (
            f'{{"D_hat":{rep(d)},"budget":{rep(b)},"coh_star":{rep(c)},"epoch":{epoch!r},'
            f'"merkle_root":{encode_basestring_ascii(merkle_root)},'
            f'"pcs_id":{encode_basestring_ascii(pcs_id)},"r":{rep(rr)},'
            f'"shard_id":{encode_basestring_ascii(shard_id)}}}'
        ).encode("ascii")
    return _reference_payload(pcs_id, merkle_root, epoch, shard_id, d, c, rr, b)


def _reference_payload(
    pcs_id: str, merkle_root: str, epoch: int, shard_id: str, d: float, c: float, r: float,
    b: float,
) -> bytes:  # fmt: skip
    obj: dict[str, Any] = {
        "pcs_id": pcs_id,
        "merkle_root": merkle_root,
        "epoch": epoch,
        "shard_id": shard_id,
        "D_hat": d,
        "coh_star": c,
        "r": r,
        "budget": b,
    }
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def record_payload(record: Any) -> bytes:
    """:func:`signature_payload` of a PCS mapping (the 8 signed fields taken from it)."""
    return signature_payload(
        pcs_id=record["pcs_id"],
        merkle_root=record["merkle_root"],
        epoch=record["epoch"],
        shard_id=record["shard_id"],
        D_hat=record["D_hat"],
        coh_star=record["coh_star"],
        r=record["r"],
        budget=record["budget"],
    )
