"""The Redis backend: the one client builder, the one driver-error mapping, and every store
kept in Redis (dedup records, daily quota counters; the rate limiter's script in
:mod:`fractal_lba.tenancy.redis_limiter` runs on a client from :func:`connect`)."""

from fractal_lba.stores.redis.connection import Client, Script, connect
from fractal_lba.stores.redis.dedup import RedisStore
from fractal_lba.stores.redis.errors import call
from fractal_lba.stores.redis.quota import QUOTA_KEY_TTL_S, RedisQuotaStore, quota_key

__all__ = [
    "QUOTA_KEY_TTL_S",
    "Client",
    "RedisQuotaStore",
    "RedisStore",
    "Script",
    "call",
    "connect",
    "quota_key",
]
