"""The dedup store contract: one stored outcome per ``(tenant_id, pcs_id)``, first write wins.

Expiry is logical: a record whose ``expires_at`` is not after the store clock's ``now`` is
absent for :meth:`DedupStore.get` and may be overwritten by
:meth:`DedupStore.put_if_absent`. Backends may also drop expired records physically
(:meth:`DedupStore.purge_expired`, Redis key TTLs).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

Clock = Callable[[], float]
"""Returns unix seconds; injectable so tests control expiry without sleeping."""

_NAMESPACE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


class StoredOutcome(msgspec.Struct, frozen=True):
    """The answer given to the first accepted submission of a PCS, replayed to duplicates."""

    status: int
    """HTTP status of the original answer (200/202/400/401)."""
    body: bytes
    """Exact JSON response body that was sent."""
    payload_hash: str
    """sha256 hex of the signed payload; a duplicate with another hash is a 422 upstream."""
    request_id: str
    """Id of the inbox-WAL record that produced this outcome."""
    created_at: float
    """Unix seconds."""


class DedupStore(Protocol):
    """Atomic first-write-wins map ``(tenant_id, pcs_id) -> StoredOutcome`` with a TTL.

    Every method raises :class:`~fractal_lba.stores.errors.StoreUnavailable` when the backend
    cannot answer within the store's ``op_timeout``; no driver exception escapes.
    """

    name: str

    async def open(self) -> None:
        """Connect and create the schema; raise ``StoreUnavailable`` if unreachable."""
        ...

    async def get(self, tenant_id: str, pcs_id: str) -> StoredOutcome | None:
        """Return the live outcome for the key, or ``None`` (expired records are absent)."""
        ...

    async def put_if_absent(
        self, tenant_id: str, pcs_id: str, outcome: StoredOutcome, ttl_s: float
    ) -> StoredOutcome:
        """Store ``outcome`` unless a live record exists; return the winner's outcome.

        Atomic across tasks, and across processes for shared backends. Returns ``outcome``
        itself when this call won.
        """
        ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the backend is not reachable (``GET /ready``)."""
        ...

    async def purge_expired(self, limit: int | None = None) -> int:
        """Delete expired records, at most ``limit`` of them (all when ``None``); return how
        many were deleted. A return value below ``limit`` means none were left (at the time
        of the call), so a caller purging in bounded batches knows when to pause."""
        ...

    async def close(self) -> None:
        """Release connections, threads and files. Idempotent."""
        ...


def check_namespace(namespace: str) -> str:
    """Validate a namespace: it becomes a SQL identifier prefix and a Redis key prefix."""
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise ValueError(
            "namespace must match [A-Za-z_][A-Za-z0-9_]{0,47} (it prefixes table names and keys)"
        )
    return namespace


def check_limit(limit: int | None) -> int | None:
    """Validate a purge batch size (``None`` = unbounded)."""
    if limit is not None and limit < 1:
        raise ValueError("purge limit must be at least 1")
    return limit


def check_positive(name: str, value: float) -> float:
    """Reject non-finite or non-positive durations (``ttl_s``, ``op_timeout``)."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds")
    return value


def outcome_from_row(row: Sequence[Any]) -> StoredOutcome:
    """The outcome in a SQL row ``(status, body, payload_hash, request_id, created_at)``
    (the column order every SQL backend selects)."""
    status, body, payload_hash, request_id, created_at = row
    return StoredOutcome(
        status=int(status),
        body=bytes(body),
        payload_hash=str(payload_hash),
        request_id=str(request_id),
        created_at=float(created_at),
    )


def insert_args(
    tenant_id: str, pcs_id: str, outcome: StoredOutcome, now: float, ttl_s: float
) -> tuple[object, ...]:
    """Parameters of the SQL first-write-wins insert shared by the sqlite and postgres stores:
    the row's columns, then ``now`` for the "expired record may be overwritten" condition."""
    o = outcome
    return (
        tenant_id,
        pcs_id,
        o.status,
        o.body,
        o.payload_hash,
        o.request_id,
        float(o.created_at),
        now + check_positive("ttl_s", ttl_s),
        now,
    )
