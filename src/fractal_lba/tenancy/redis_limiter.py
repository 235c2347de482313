"""Shared rate limiter on Redis: exact limits across verifier replicas.

One Lua script per request does the daily quota, the tenant bucket and the global bucket
atomically (Redis runs scripts one at a time), so N replicas together admit exactly what
one would. Keys (``ns`` = DEDUP_NAMESPACE):

* ``{ns}:rl:{len}:{tenant}`` / ``{ns}:rl:*global`` - hash ``t`` (tokens), ``ts`` (unix s),
  expiring a minute after the bucket would be full again (Redis expires keys on its own
  clock: the margin covers replicas whose clocks differ from it, and tests with a fake clock);
* ``{ns}:quota:{YYYY-MM-DD}:{len}:{tenant}`` - admitted count of that UTC day (3-day TTL),
  the same keys :class:`~fractal_lba.tenancy.quota.RedisQuotaStore` uses.

The time comes from the caller's (injectable) clock, so tests control midnight; replicas
should run NTP. A replica whose clock is behind never moves a bucket's stamp backwards.
Single Redis (or one primary); the keys of one call are not co-located for Redis Cluster.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fractal_lba.stores import StoreError
from fractal_lba.stores.redis import call, connect
from fractal_lba.tenancy.errors import LimiterUnavailable
from fractal_lba.tenancy.limiter import ALLOWED, Cause, LimitUsage, RateDecision, refusal
from fractal_lba.tenancy.model import Tenant
from fractal_lba.tenancy.quota import QUOTA_KEY_TTL_S, quota_key, retry_after_midnight, utc_day

# KEYS[1] tenant bucket, KEYS[2] global bucket, KEYS[3] quota counter.
# ARGV: now, rate, size, global rate, global size, quota (0 = none), quota ttl, cost (0 = peek).
# Returns {code, tenant tokens * 1000, global tokens * 1000, quota used};
# code 0 = admitted (or peeked), 1 = quota, 2 = tenant rate, 3 = global rate.
ACQUIRE_LUA = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[8])
local function level(key, rate, size)
  if rate <= 0 then return 0, now end
  local v = redis.call('HMGET', key, 't', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or ts == nil then return size, now end
  if now > ts then
    tokens = math.min(size, tokens + (now - ts) * rate)
    ts = now
  end
  return math.min(tokens, size), ts
end
local rate, size = tonumber(ARGV[2]), tonumber(ARGV[3])
local grate, gsize = tonumber(ARGV[4]), tonumber(ARGV[5])
local quota = tonumber(ARGV[6])
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
local t, tts = level(KEYS[1], rate, size)
local g, gts = level(KEYS[2], grate, gsize)
local code = 0
if quota > 0 and used + cost > quota then code = 1
elseif rate > 0 and t < cost then code = 2
elseif grate > 0 and g < cost then code = 3 end
if code == 0 and cost > 0 then
  if rate > 0 then
    t = t - cost
    redis.call('HSET', KEYS[1], 't', tostring(t), 'ts', tostring(tts))
    redis.call('PEXPIRE', KEYS[1], math.ceil((size - t) / rate * 1000) + 60000)
  end
  if grate > 0 then
    g = g - cost
    redis.call('HSET', KEYS[2], 't', tostring(g), 'ts', tostring(gts))
    redis.call('PEXPIRE', KEYS[2], math.ceil((gsize - g) / grate * 1000) + 60000)
  end
  if quota > 0 then
    used = redis.call('INCRBY', KEYS[3], cost)
    redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7]))
  end
end
return {code, math.floor(t * 1000), math.floor(g * 1000), used}
"""

_CAUSES: dict[int, Cause] = {1: "quota", 2: "rate", 3: "global"}


class RedisLimiter:
    """:class:`~fractal_lba.tenancy.limiter.RateLimiter` on Redis (``RATE_LIMIT_BACKEND=redis``).

    Fails closed: when Redis does not answer within ``op_timeout`` the call raises
    :class:`LimiterUnavailable` (the server answers 503 with ``Retry-After``).
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "flk",
        clock: Callable[[], float] = time.time,
        global_rate: float = 0.0,
        op_timeout: float = 2.0,
    ) -> None:
        self._ns = namespace
        self._clock = clock
        self._global_rate = global_rate
        self._timeout = op_timeout
        self._global_key = f"{namespace}:rl:*global"  # '*' cannot start a tenant id
        self._client = connect(url, op_timeout=op_timeout)
        self._script = self._client.register_script(ACQUIRE_LUA)

    @property
    def global_limited(self) -> bool:
        """Whether every request must pass through :meth:`acquire`."""
        return self._global_rate > 0

    async def open(self) -> None:
        await self._call(self._client.ping())

    async def acquire(self, tenant: Tenant) -> RateDecision:
        now = self._clock()
        code, tokens, g_tokens, used = await self._run(tenant, now, 1)
        if code == 0:
            return ALLOWED
        return refusal(
            tenant, _CAUSES[code], now, tokens=tokens, quota_used=used,
            global_rate=self._global_rate, global_tokens=g_tokens,
        )  # fmt: skip

    async def usage(self, tenant: Tenant) -> LimitUsage:
        now = self._clock()
        _code, tokens, _g, used = await self._run(tenant, now, 0)
        return LimitUsage(
            token_rate=tenant.token_rate,
            bucket_size=tenant.bucket_size,
            tokens_left=tokens if tenant.token_rate > 0 else None,
            daily_quota=tenant.daily_quota,
            quota_used=used,
            day=utc_day(now),
            quota_resets_in_s=retry_after_midnight(now),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def _run(self, tenant: Tenant, now: float, cost: int) -> tuple[int, float, float, int]:
        tid = tenant.id
        keys = [
            f"{self._ns}:rl:{len(tid)}:{tid}",
            self._global_key,
            quota_key(self._ns, utc_day(now), tid),
        ]
        args = [
            repr(now), repr(tenant.token_rate), repr(tenant.bucket_size),
            repr(self._global_rate), repr(max(1.0, self._global_rate)),
            str(tenant.daily_quota), str(QUOTA_KEY_TTL_S), str(cost),
        ]  # fmt: skip
        res = await self._call(self._script(keys=keys, args=args))
        return int(res[0]), int(res[1]) / 1000.0, int(res[2]) / 1000.0, int(res[3])

    async def _call(self, aw: Awaitable[Any]) -> Any:
        """The script call, bounded by op_timeout; store errors answered as 503 upstream."""
        try:
            return await call("rate limiter", aw, self._timeout)
        except StoreError as exc:
            raise LimiterUnavailable(f"rate limiter: {exc}") from None
