"""Redis dedup store for several verifier replicas (``redis.asyncio``).

A record is one string key ``{namespace}:dedup:{len(tenant_id)}:{tenant_id}:{pcs_id}`` (the
length prefix keeps the key unambiguous whatever characters a tenant id holds). Its value is
``repr(expires_at) | msgpack(StoredOutcome)``. Expiry is logical against the store clock (as
in every backend); the key also carries a Redis TTL so Redis drops it physically.

Concurrent calls share round trips (:class:`~fractal_lba.stores.batching.Batcher`): the
``get`` calls of a batch are ONE ``MGET``, the ``put_if_absent`` calls ONE Lua script that
runs first-write-wins per key in call order (atomic as a whole, so a key repeated in a batch
gets the first call's value). Per call, a round trip, a pool checkout and a timer were most
of the client's CPU under load. Multi-key commands need all keys in one hash slot: Redis
Cluster is not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import msgspec
from redis.exceptions import RedisError

from fractal_lba.stores.base import (
    Clock,
    StoredOutcome,
    check_limit,
    check_namespace,
    check_positive,
)
from fractal_lba.stores.batching import Batcher
from fractal_lba.stores.errors import StoreError, StoreUnavailable
from fractal_lba.stores.redis.connection import Client, Script, connect
from fractal_lba.stores.redis.errors import call, timed_out

T = TypeVar("T")

# KEYS: the batch's keys in call order (may repeat); ARGV[1] now, then per key i its new
# value ARGV[2i] and ttl in ms ARGV[2i+1]. Returns per key the live value of the winner, or
# false (a nil element) when our value was stored. A value whose head is not a number is
# returned as is (the caller reports it corrupt) instead of failing the whole batch.
_PUT_LUA = """
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  local live = false
  if cur then
    local sep = string.find(cur, '|', 1, true)
    if sep then
      local exp = tonumber(string.sub(cur, 1, sep - 1))
      live = exp == nil or exp > now
    end
  end
  if live then
    out[i] = cur
  else
    redis.call('SET', key, ARGV[2 * i], 'PX', ARGV[2 * i + 1])
    out[i] = false
  end
end
return out
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

# Batches in flight per operation: while one batch is on the wire the next one fills up, so
# under load the client mostly sends full batches; a few more keep a slow reply from holding
# everything up. More would only split the same load into smaller batches.
_MAX_INFLIGHT = 3
# Calls per batch: above the concurrency one replica sees (64 requests), so load rarely
# splits, yet small enough that one script (Redis serves nobody else while it runs) stays
# well under a millisecond.
_MAX_BATCH = 128

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(StoredOutcome)

PutItem = tuple[str, bytes, int]
"""``(key, value, ttl_ms)`` of one ``put_if_absent`` call."""


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
        self._client: Client | None = None
        self._put_script: Script | None = None
        self._purge_script: Script | None = None
        self._purge_cursor = 0
        self._gets: Batcher[str, StoredOutcome | None] = Batcher(
            self._get_batch,
            op_timeout=self._op_timeout,
            expired=lambda: self._timed_out("get"),
            max_batch=_MAX_BATCH,
            max_inflight=_MAX_INFLIGHT,
        )
        self._puts: Batcher[PutItem, StoredOutcome | None] = Batcher(
            self._put_batch,
            op_timeout=self._op_timeout,
            expired=lambda: self._timed_out("put"),
            max_batch=_MAX_BATCH,
            max_inflight=_MAX_INFLIGHT,
        )

    async def open(self) -> None:
        """Create the client and check that the server answers."""
        if self._client is None:
            self._client = connect(
                self._url, op_timeout=self._op_timeout, max_connections=self._max_connections
            )
            # EVALSHA; redis-py reloads the script after NOSCRIPT (e.g. a restarted server).
            self._put_script = self._client.register_script(_PUT_LUA)
            self._purge_script = self._client.register_script(_PURGE_LUA)
            self._gets.reopen()
            self._puts.reopen()
        await self.ping()

    def key(self, tenant_id: str, pcs_id: str) -> str:
        """The Redis key of a record."""
        return f"{self._prefix}{len(tenant_id)}:{tenant_id}:{pcs_id}"

    async def get(self, tenant_id: str, pcs_id: str) -> StoredOutcome | None:
        """Return the live outcome for the key, or ``None`` (one ``MGET`` per batch)."""
        self._require_client()
        return await self._gets.call(self.key(tenant_id, pcs_id))

    async def put_if_absent(
        self, tenant_id: str, pcs_id: str, outcome: StoredOutcome, ttl_s: float
    ) -> StoredOutcome:
        """Store ``outcome`` unless a live record exists; return the winner (one script call
        per batch)."""
        check_positive("ttl_s", ttl_s)
        self._require_client()
        value = repr(self._clock() + ttl_s).encode() + b"|" + _encoder.encode(outcome)
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        winner = await self._puts.call((self.key(tenant_id, pcs_id), value, ttl_ms))
        return outcome if winner is None else winner

    async def ping(self) -> None:
        """PING the server."""
        client = self._require_client()
        pong: Awaitable[bool] = _awaitable(client.ping())
        await self._call("ping", pong)

    async def purge_expired(self, limit: int | None = None) -> int:
        """Delete logically expired records of this namespace (SCAN + one Lua call per step).

        Redis' own key TTL already removes every record (set from the same ``ttl_s``); this
        only catches records whose logical expiry (store clock) came first, e.g. behind a
        replica clock running ahead of Redis'. With ``limit`` one call is one bounded step
        of a scan that resumes where the previous call stopped: it examines about ``limit``
        keys (SCAN's COUNT is a hint) and deletes the expired ones among them. Without, it
        scans the whole namespace. Each round trip is bounded by op_timeout.
        """
        client = self._require_client()
        now = repr(self._clock())
        cursor = self._purge_cursor if check_limit(limit) is not None else 0
        count = 500 if limit is None else limit
        examined = deleted = 0
        while True:
            cursor, keys = await self._call(
                "purge", client.scan(cursor, match=f"{self._prefix}*", count=count)
            )
            if limit is not None:
                # A step may return more than COUNT keys: the rest wait for the next pass.
                keys = keys[: limit - examined]
            examined += len(keys)
            if keys:
                if self._purge_script is None:
                    raise StoreError("redis store is not open")
                call = self._purge_script(keys=keys, args=[now])
                deleted += int(await self._call("purge", call))
            if cursor == 0 or (limit is not None and examined >= limit):
                if limit is not None:
                    self._purge_cursor = cursor
                return deleted

    async def close(self) -> None:
        """Fail queued calls, close the connection pool. Idempotent."""
        await self._gets.close()
        await self._puts.close()
        client, self._client = self._client, None
        self._put_script = self._purge_script = None
        if client is not None:
            # Closing a dead connection fails; there is nothing left to release then.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(client.aclose(), self._op_timeout)

    async def _get_batch(
        self, keys: list[str], timeout: float
    ) -> Sequence[StoredOutcome | BaseException | None]:
        """One ``MGET`` for the batch (a key may repeat); decode each value against now."""
        client = self._require_client()
        raws: list[Any] = await self._call("get", client.mget(keys), timeout)
        now = self._clock()
        return [_live(raw, now) for raw in raws]

    async def _put_batch(
        self, items: list[PutItem], timeout: float
    ) -> Sequence[StoredOutcome | BaseException | None]:
        """One script call for the batch: per item the live winner, or ``None`` if ours won."""
        if self._put_script is None:
            raise StoreError("redis store is not open")
        args: list[bytes | int | str] = [repr(self._clock())]
        for _, value, ttl_ms in items:
            args += (value, ttl_ms)
        call = self._put_script(keys=[key for key, _, _ in items], args=args)
        raws: list[Any] = await self._call("put", call, timeout)
        return [None if raw is None else _winner(raw) for raw in raws]

    def _require_client(self) -> Client:
        if self._client is None:
            raise StoreError("redis store is not open")
        return self._client

    def _timed_out(self, op: str) -> StoreUnavailable:
        return timed_out(op, self._op_timeout)

    async def _call(self, op: str, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Await a redis call within ``timeout`` (default op_timeout); driver errors are
        translated by :func:`fractal_lba.stores.redis.errors.call`."""
        return await call(op, awaitable, self._op_timeout if timeout is None else timeout)


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


def _live(raw: Any, now: float) -> StoredOutcome | StoreError | None:
    """A ``get`` result: the outcome if live, else ``None``; a corrupt record is an error of
    its own call only."""
    if raw is None:
        return None
    try:
        expires_at, outcome = _decode(raw)
    except StoreError as exc:
        return exc
    return outcome if expires_at > now else None


def _winner(raw: Any) -> StoredOutcome | StoreError:
    try:
        return _decode(raw)[1]
    except StoreError as exc:
        return exc
