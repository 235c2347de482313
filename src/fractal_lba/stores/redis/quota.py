"""Daily quota counters in Redis: ``{namespace}:quota:{day}:{len}:{tenant}`` (INCRBY + EXPIRE).

The Redis rate limiter's atomic script counts in the same keys
(:mod:`fractal_lba.tenancy.redis_limiter`), so both limiters agree on a tenant's day.
"""

from __future__ import annotations

from collections.abc import Mapping

from fractal_lba.stores.redis.connection import connect
from fractal_lba.stores.redis.errors import call

QUOTA_KEY_TTL_S = 3 * 86400
"""Quota keys outlive their day a little, for ``/usage`` around midnight."""


def quota_key(namespace: str, day: str, tenant_id: str) -> str:
    """Redis key of one counter (length-prefixed id, as the dedup store does)."""
    return f"{namespace}:quota:{day}:{len(tenant_id)}:{tenant_id}"


class RedisQuotaStore:
    """:class:`~fractal_lba.tenancy.quota.QuotaStore` on Redis; shared by replicas."""

    name = "redis"

    def __init__(self, url: str, *, namespace: str = "flk", op_timeout: float = 2.0) -> None:
        self._namespace = namespace
        self._timeout = op_timeout
        self._client = connect(url, op_timeout=op_timeout)

    async def open(self) -> None:
        await call("quota ping", self._client.ping(), self._timeout)

    async def add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        tids = list(deltas)
        if not tids:
            return {}
        # MULTI/EXEC: a counter never exists without its expiry.
        pipe = self._client.pipeline(transaction=True)
        for tid in tids:
            key = quota_key(self._namespace, day, tid)
            pipe.incrby(key, deltas[tid])
            pipe.expire(key, QUOTA_KEY_TTL_S)
        res = await call("quota add", pipe.execute(), self._timeout)
        return {tid: int(res[2 * i]) for i, tid in enumerate(tids)}

    async def close(self) -> None:
        await self._client.aclose()
