"""Typed answers of the verifier (SPEC section 4): VerifyResult, Error, Health."""

from __future__ import annotations

import msgspec


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    """The decision on a submitted PCS (200 accepted, 202 escalated).

    ``replayed`` is True when the server answered a duplicate from its dedup store
    (``Idempotent-Replayed: true``); ``request_id`` is the server's ``X-Request-Id``.
    """

    accepted: bool
    escalated: bool
    reason: str | None
    recomputed_D_hat: float | None
    recomputed_budget: float | None
    regime: str
    policy_version: str
    anomaly_score: float
    pcs_id: str
    tenant_id: str
    status_code: int = 200
    replayed: bool = False
    request_id: str | None = None


class Error(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON error body of every non-2xx answer: ``error`` is an ErrorCode value."""

    error: str
    field: str | None = None
    detail: str | None = None


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /health``: the process is alive; ``accepted_versions`` from its header."""

    status: str
    accepted_versions: tuple[str, ...] = ()
