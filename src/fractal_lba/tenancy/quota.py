"""Daily quotas: UTC day arithmetic and durable per-(day, tenant) counters.

A quota day is the UTC calendar day; it resets at 00:00 UTC, and a refused request is told
to retry at that instant. Unix time has no leap seconds, so day boundaries are multiples of
86400 and the arithmetic is exact.

:class:`QuotaStore` keeps the counters where the dedup store keeps its records (SQLite file
in ``DATA_DIR``, PostgreSQL table, Redis keys), so they survive a restart. It has one write
method, :meth:`QuotaStore.add`, which adds deltas and returns the totals: with several
workers or replicas each one learns the others' counts at every flush. (The Redis limiter
keeps its counters in the same Redis keys, inside its atomic script.) The implementations
live with their backend's driver code in :mod:`fractal_lba.stores` (``stores/<backend>/``);
they raise :class:`~fractal_lba.stores.StoreUnavailable`, which the limiter answers as
:class:`~fractal_lba.tenancy.errors.LimiterUnavailable`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from fractal_lba.stores.factory import QUOTA_SQLITE_FILENAME, create_quota_store
from fractal_lba.stores.memory import MemoryQuotaStore
from fractal_lba.stores.postgres import PostgresQuotaStore
from fractal_lba.stores.redis import QUOTA_KEY_TTL_S, RedisQuotaStore, quota_key
from fractal_lba.stores.sqlite import SqliteQuotaStore

DAY_S = 86400


def utc_day(now: float) -> str:
    """``YYYY-MM-DD`` of the UTC day containing unix time ``now``."""
    return _day_name(math.floor(now / DAY_S))


@functools.lru_cache(maxsize=8)
def _day_name(day: int) -> str:
    """Formatting a date costs microseconds; a limiter asks once per request."""
    return datetime.fromtimestamp(day * DAY_S, UTC).strftime("%Y-%m-%d")


def seconds_to_midnight(now: float) -> float:
    """Seconds from ``now`` to the next 00:00 UTC (in ``(0, 86400]``)."""
    return (math.floor(now / DAY_S) + 1) * DAY_S - now


def retry_after_midnight(now: float) -> int:
    """``Retry-After`` for an exhausted quota: whole seconds until 00:00 UTC, at least 1."""
    return max(1, math.ceil(seconds_to_midnight(now)))


class QuotaStore(Protocol):
    """Durable counters ``(day, tenant_id) -> admitted requests``."""

    name: str

    async def open(self) -> None:
        """Connect / create the schema; raise ``StoreUnavailable`` if unreachable."""
        ...

    async def add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        """Add ``deltas`` (0 reads) and return each tenant's total for ``day``."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


__all__ = [
    "DAY_S",
    "QUOTA_KEY_TTL_S",
    "QUOTA_SQLITE_FILENAME",
    "MemoryQuotaStore",
    "PostgresQuotaStore",
    "QuotaStore",
    "RedisQuotaStore",
    "SqliteQuotaStore",
    "create_quota_store",
    "quota_key",
    "retry_after_midnight",
    "seconds_to_midnight",
    "utc_day",
]
