"""Redis dedup store for several verifier replicas (``redis.asyncio``).

A record is one string key ``{namespace}:dedup:{len(tenant_id)}:{tenant_id}:{pcs_id}`` (the
length prefix keeps the key unambiguous whatever characters a tenant id holds). Its value is
``repr(expires_at) | msgpack(StoredOutcome)``. First write wins in ONE round trip: a Lua
script returns the live value or sets ours. Expiry is logical against the store clock (as in
every backend); the key also carries a Redis TTL so Redis drops it physically.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from fractal_lba.stores.base import Clock, StoredOutcome, check_namespace, check_positive
from fractal_lba.stores.errors import StoreError, StoreUnavailable

T = TypeVar("T")

# KEYS[1] key; ARGV[1] new value, ARGV[2] now, ARGV[3] ttl in ms.
# Returns the live value of the winner, or nil when our value was stored.
_PUT_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep and tonumber(string.sub(cur, 1, sep - 1)) > tonumber(ARGV[2]) then
    return cur
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return false
"""

# KEYS: candidate keys; ARGV[1] now. Deletes the logically expired ones, returns the count.
_PURGE_LUA = """
local n = 0
for _, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  if cur then
    local sep = string.find(cur, '|', 1, true)
    if sep and tonumber(string.sub(cur, 1, sep - 1)) <= tonumber(ARGV[1]) then
      redis.call('DEL', key)
      n = n + 1
    end
  end
end
return n
"""

# Error replies of a server that is up but cannot serve right now.
_TRANSIENT_REPLIES = frozenset(
    {"LOADING", "BUSY", "READONLY", "MISCONF", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"}
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(StoredOutcome)


class RedisStore:
    """Redis :class:`~fractal_lba.stores.base.DedupStore`; shared by replicas."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "flk",
        op_timeout: float = 2.0,
        clock: Clock = time.time,
        max_connections: int = 64,
    ) -> None:
        self._prefix = f"{check_namespace(namespace)}:dedup:"
        self._op_timeout = check_positive("op_timeout", op_timeout)
        self._clock = clock
        self._url = url
        self._max_connections = max_connections
        self._client: aioredis.Redis | None = None
        self._put_script: AsyncScript | None = None
        self._purge_script: AsyncScript | None = None

    async def open(self) -> None:
        """Create the client and check that the server answers."""
        if self._client is None:
            try:
                pool = aioredis.BlockingConnectionPool.from_url(
                    self._url,
                    max_connections=self._max_connections,
                    timeout=self._op_timeout,  # wait for a free connection, not fail
                    socket_connect_timeout=self._op_timeout,
                    socket_timeout=self._op_timeout,
                    # One immediate retry replaces a pooled connection that died with a
                    # server restart; the whole call stays bounded by op_timeout.
                    retry=Retry(NoBackoff(), 1),
                )
                self._client = aioredis.Redis.from_pool(pool)
            except ValueError:
                raise StoreError("redis: invalid REDIS_URL") from None
            # EVALSHA; redis-py reloads the script after NOSCRIPT (e.g. a restarted server).
            self._put_script = self._client.register_script(_PUT_LUA)
            self._purge_script = self._client.register_script(_PURGE_LUA)
        await self.ping()

    def key(self, tenant_id: str, pcs_id: str) -> str:
        """The Redis key of a record."""
        return f"{self._prefix}{len(tenant_id)}:{tenant_id}:{pcs_id}"

    async def get(self, tenant_id: str, pcs_id: str) -> StoredOutcome | None:
        """Return the live outcome for the key, or ``None``."""
        client = self._require_client()
        now = self._clock()
        raw = await self._call("get", client.get(self.key(tenant_id, pcs_id)))
        if raw is None:
            return None
        expires_at, outcome = _decode(raw)
        return outcome if expires_at > now else None

    async def put_if_absent(
        self, tenant_id: str, pcs_id: str, outcome: StoredOutcome, ttl_s: float
    ) -> StoredOutcome:
        """Store ``outcome`` unless a live record exists; return the winner (one round trip)."""
        check_positive("ttl_s", ttl_s)
        if self._put_script is None:
            raise StoreError("redis store is not open")
        now = self._clock()
        value = repr(now + ttl_s).encode() + b"|" + _encoder.encode(outcome)
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        call = self._put_script(keys=[self.key(tenant_id, pcs_id)], args=[value, repr(now), ttl_ms])
        raw = await self._call("put", call)
        if raw is None:
            return outcome
        return _decode(raw)[1]

    async def ping(self) -> None:
        """PING the server."""
        client = self._require_client()
        pong: Awaitable[bool] = _awaitable(client.ping())
        await self._call("ping", pong)

    async def purge_expired(self) -> int:
        """Delete logically expired records of this namespace (SCAN + Lua, per batch).

        Redis' own key TTL already removes records; this only catches records whose
        logical expiry (store clock) came first. Each round trip is bounded by op_timeout.
        """
        client = self._require_client()
        now = repr(self._clock())
        cursor: int = 0
        deleted = 0
        while True:
            cursor, keys = await self._call(
                "purge", client.scan(cursor, match=f"{self._prefix}*", count=500)
            )
            if keys:
                if self._purge_script is None:
                    raise StoreError("redis store is not open")
                call = self._purge_script(keys=keys, args=[now])
                deleted += int(await self._call("purge", call))
            if cursor == 0:
                return deleted

    async def close(self) -> None:
        """Close the connection pool. Idempotent."""
        client, self._client = self._client, None
        self._put_script = self._purge_script = None
        if client is not None:
            # Closing a dead connection fails; there is nothing left to release then.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(client.aclose(), self._op_timeout)

    def _require_client(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreError("redis store is not open")
        return self._client

    async def _call(self, op: str, awaitable: Awaitable[T]) -> T:
        """Await a redis call within op_timeout, translating every driver error."""
        try:
            async with asyncio.timeout(self._op_timeout):
                return await awaitable
        except (TimeoutError, RedisTimeoutError):
            raise StoreUnavailable(f"redis {op} timed out after {self._op_timeout:g}s") from None
        except AuthenticationError:
            raise StoreUnavailable(f"redis {op} failed: authentication rejected") from None
        except (ConnectionError, OSError) as exc:
            raise StoreUnavailable(f"redis {op} failed: {type(exc).__name__}") from None
        except ResponseError as exc:
            code = str(exc).split(" ", 1)[0][:16]
            if code in _TRANSIENT_REPLIES:
                raise StoreUnavailable(f"redis {op} failed: server replied {code}") from None
            raise StoreError(f"redis {op} failed: server replied {code}") from None
        except RedisError as exc:
            raise StoreError(f"redis {op} failed: {type(exc).__name__}") from None


def _awaitable(value: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py types async commands as ``Awaitable[T] | T``; narrow to the awaitable."""
    if not isinstance(value, Awaitable):
        raise StoreError("redis client is not asynchronous")
    return value


def _decode(raw: Any) -> tuple[float, StoredOutcome]:
    try:
        head, _, packed = bytes(raw).partition(b"|")
        return float(head), _decoder.decode(packed)
    except (ValueError, TypeError, msgspec.DecodeError):
        raise StoreError("redis dedup record is corrupt") from None
