"""Daily quotas: UTC day arithmetic and durable per-(day, tenant) counters.

A quota day is the UTC calendar day; it resets at 00:00 UTC, and a refused request is told
to retry at that instant. Unix time has no leap seconds, so day boundaries are multiples of
86400 and the arithmetic is exact.

:class:`QuotaStore` keeps the counters where the dedup store keeps its records (SQLite file
in ``DATA_DIR``, PostgreSQL table, Redis keys), so they survive a restart. It has one write
method, :meth:`QuotaStore.add`, which adds deltas and returns the totals: with several
workers or replicas each one learns the others' counts at every flush. (The Redis limiter
keeps its counters in the same Redis keys, inside its atomic script.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import sqlite3
import threading
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

import psycopg
import redis.asyncio as aioredis
from psycopg import sql
from redis.exceptions import RedisError

from fractal_lba.errors import ConfigError
from fractal_lba.tenancy.errors import LimiterUnavailable

T = TypeVar("T")

DAY_S = 86400
QUOTA_KEY_TTL_S = 3 * DAY_S
"""Redis quota keys outlive their day a little, for ``/usage`` around midnight."""
QUOTA_SQLITE_FILENAME = "quota.sqlite3"


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


def quota_key(namespace: str, day: str, tenant_id: str) -> str:
    """Redis key of one counter (length-prefixed id, as the dedup store does)."""
    return f"{namespace}:quota:{day}:{len(tenant_id)}:{tenant_id}"


class QuotaStore(Protocol):
    """Durable counters ``(day, tenant_id) -> admitted requests``."""

    name: str

    async def open(self) -> None:
        """Connect / create the schema; raise :class:`LimiterUnavailable` if unreachable."""
        ...

    async def add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        """Add ``deltas`` (0 reads) and return each tenant's total for ``day``."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


async def _bounded(aw: Awaitable[T], timeout: float, what: str) -> T:
    try:
        async with asyncio.timeout(timeout):
            return await aw
    except TimeoutError:
        raise LimiterUnavailable(f"quota store ({what}) timed out") from None


class MemoryQuotaStore:
    """Counters in this process only (``DEDUP_BACKEND=memory``: nothing survives anyway)."""

    name = "memory"

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    async def open(self) -> None:
        return None

    async def add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for tid, n in deltas.items():
            out[tid] = self._counts[(day, tid)] = self._counts.get((day, tid), 0) + n
        return out

    async def close(self) -> None:
        return None


class SqliteQuotaStore:
    """``<DATA_DIR>/quota.sqlite3``; shared safely by the workers of one host."""

    name = "sqlite"

    def __init__(self, path: Path, *, namespace: str = "flk", op_timeout: float = 2.0) -> None:
        self._path = path
        self._table = f"{namespace}_quota"
        self._timeout = op_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} (day TEXT NOT NULL, "
                "tenant_id TEXT NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (day, tenant_id))"
            )
            self._conn = conn
        return self._conn

    def _add_sync(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        with self._lock:
            conn = self._connect()
            out: dict[str, int] = {}
            conn.execute("BEGIN IMMEDIATE")
            try:
                for tid, n in deltas.items():
                    row = conn.execute(
                        f"INSERT INTO {self._table} (day, tenant_id, used) VALUES (?, ?, ?) "
                        "ON CONFLICT (day, tenant_id) DO UPDATE SET used = used + excluded.used "
                        "RETURNING used",
                        (day, tid, n),
                    ).fetchone()
                    out[tid] = int(row[0])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return out

    async def _run(self, day: str, deltas: dict[str, int]) -> dict[str, int]:
        try:
            return await _bounded(
                asyncio.to_thread(self._add_sync, day, deltas), self._timeout + 1.0, "sqlite"
            )
        except (sqlite3.Error, OSError) as exc:
            raise LimiterUnavailable(f"quota store (sqlite): {type(exc).__name__}") from None

    async def open(self) -> None:
        await self._run("0000-00-00", {})

    async def add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        return await self._run(day, dict(deltas))

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PostgresQuotaStore:
    """Table ``{namespace}_quota`` in the dedup store's PostgreSQL."""

    name = "postgres"

    def __init__(self, dsn: str, *, namespace: str = "flk", op_timeout: float = 2.0) -> None:
        self._dsn = dsn
        self._timeout = op_timeout
        t = sql.Identifier(f"{namespace}_quota")
        self._sql_schema = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} (day text NOT NULL, tenant_id text NOT NULL, "
            "used bigint NOT NULL, PRIMARY KEY (day, tenant_id))"
        ).format(t=t)
        self._sql_add = sql.SQL(
            "INSERT INTO {t} AS q (day, tenant_id, used) VALUES (%s, %s, %s) "
            "ON CONFLICT (day, tenant_id) DO UPDATE SET used = q.used + EXCLUDED.used "
            "RETURNING used"
        ).format(t=t)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=max(1, math.ceil(self._timeout))
            )
            # Concurrent replicas may race on CREATE TABLE; the loser's error is harmless.
            with contextlib.suppress(psycopg.errors.UniqueViolation):
                await conn.execute(self._sql_schema)
            self._conn = conn
        return self._conn

    async def _add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        async with self._lock:
            conn = await self._connection()
            out: dict[str, int] = {}
            try:
                async with conn.transaction():
                    for tid, n in deltas.items():
                        cur = await conn.execute(self._sql_add, (day, tid, n))
                        row = await cur.fetchone()
                        assert row is not None
                        out[tid] = int(row[0])  # type: ignore[call-overload]
            except psycopg.Error:
                await conn.close()
                raise
            return out

    async def open(self) -> None:
        await self.add("0000-00-00", {})

    async def add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        try:
            return await _bounded(self._add(day, deltas), self._timeout, "postgres")
        except psycopg.Error as exc:
            raise LimiterUnavailable(f"quota store (postgres): {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


class RedisQuotaStore:
    """``{namespace}:quota:{day}:{len}:{tenant}`` counters (INCRBY), as the Redis limiter uses."""

    name = "redis"

    def __init__(self, url: str, *, namespace: str = "flk", op_timeout: float = 2.0) -> None:
        self._namespace = namespace
        self._timeout = op_timeout
        try:
            self._client = aioredis.Redis.from_url(
                url, socket_connect_timeout=op_timeout, socket_timeout=op_timeout
            )
        except ValueError:
            raise ConfigError("REDIS_URL is not a valid Redis URL") from None

    async def open(self) -> None:
        try:
            await _bounded(self._client.ping(), self._timeout, "redis")
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"quota store (redis): {type(exc).__name__}") from None

    async def add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        tids = list(deltas)
        if not tids:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for tid in tids:
            key = quota_key(self._namespace, day, tid)
            pipe.incrby(key, deltas[tid])
            pipe.expire(key, QUOTA_KEY_TTL_S)
        try:
            res = await _bounded(pipe.execute(), self._timeout, "redis")
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"quota store (redis): {type(exc).__name__}") from None
        return {tid: int(res[2 * i]) for i, tid in enumerate(tids)}

    async def close(self) -> None:
        await self._client.aclose()


def create_quota_store(
    backend: str,
    *,
    data_dir: Path,
    redis_url: str,
    postgres_dsn: str,
    namespace: str = "flk",
    op_timeout: float = 2.0,
) -> QuotaStore:
    """The quota store living next to the dedup store of ``backend`` (DEDUP_BACKEND)."""
    if backend == "sqlite":
        return SqliteQuotaStore(
            data_dir / QUOTA_SQLITE_FILENAME, namespace=namespace, op_timeout=op_timeout
        )
    if backend == "postgres":
        return PostgresQuotaStore(postgres_dsn, namespace=namespace, op_timeout=op_timeout)
    if backend == "redis":
        return RedisQuotaStore(redis_url, namespace=namespace, op_timeout=op_timeout)
    if backend == "memory":
        return MemoryQuotaStore()
    raise ConfigError(
        f"DEDUP_BACKEND must be one of memory, sqlite, redis, postgres, got {backend!r}"
    )
