"""The one way this project builds a Redis client (dedup store, quota counters, limiter)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from fractal_lba.errors import ConfigError

Client = aioredis.Redis
"""The client type, for modules that hold one without importing the driver."""
Script = AsyncScript
"""A registered Lua script (EVALSHA; reloaded by redis-py after NOSCRIPT)."""


def connect(url: str, *, op_timeout: float, max_connections: int = 64) -> Client:
    """A client on a blocking pool: a call waits up to ``op_timeout`` for a free connection
    instead of failing, every socket operation is bounded by ``op_timeout``, and one
    immediate retry replaces a pooled connection that died with a server restart.

    No I/O happens here. A URL redis-py cannot parse is a :class:`ConfigError` (never
    echoing it: it may hold a password).
    """
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=op_timeout,
            socket_connect_timeout=op_timeout,
            socket_timeout=op_timeout,
            retry=Retry(NoBackoff(), 1),
        )
    except ValueError:
        raise ConfigError("REDIS_URL is not a valid Redis URL") from None
    return aioredis.Redis.from_pool(pool)
