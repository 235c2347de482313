"""PostgreSQL dedup store for several verifier replicas (psycopg 3 async + connection pool).

Table ``{namespace}_dedup`` (created on open under an advisory lock so concurrent replicas
do not race on ``CREATE TABLE``). First write wins with ``INSERT ... ON CONFLICT DO UPDATE
... WHERE expires_at <= now RETURNING``: the row lock makes exactly one concurrent writer
win; a loser reads the committed winner with a follow-up ``SELECT`` (a new statement, so a
new snapshot in autocommit mode, which sees the winner's commit).

The pool is opened without waiting and gives up on a reconnect loop after
``reconnect_timeout`` so that, after an outage, new connections are attempted promptly
instead of after a long exponential backoff. Connections are not pinged before each use
(that would double the round trips of every request); instead an operation that finds its
connection broken (e.g. the server restarted) is retried on another one within
``op_timeout``. Every operation is idempotent (a read, or first-write-wins), so a retry after
an ambiguous failure is safe.

Sessions run with ``synchronous_commit = off``: a dedup record is not the durable record of a
request (the inbox WAL and the audit log are, both fsync'd before the answer), so the
store does not need its own flush per insert; a PostgreSQL crash may forget the last few
hundred milliseconds of dedup records, which WAL replay and the audit log cover, the same
trade as the SQLite store's ``synchronous = NORMAL``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.errors import PoolClosed

from fractal_lba.stores.base import (
    Clock,
    StoredOutcome,
    check_namespace,
    check_positive,
    insert_args,
)
from fractal_lba.stores.errors import StoreError, StoreUnavailable

T = TypeVar("T")

_Conn = psycopg.AsyncConnection[TupleRow]

# SQLSTATE classes meaning "the server cannot serve now" rather than "the query is wrong".
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "58", "40")


class PostgresStore:
    """PostgreSQL :class:`~fractal_lba.stores.base.DedupStore`; shared by replicas."""

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        namespace: str = "flk",
        op_timeout: float = 2.0,
        clock: Clock = time.time,
        min_size: int = 1,
        max_size: int = 10,
        reconnect_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._table_name = f"{check_namespace(namespace)}_dedup"
        self._op_timeout = check_positive("op_timeout", op_timeout)
        self._clock = clock
        self._min_size = min_size
        self._max_size = max_size
        self._reconnect_timeout = reconnect_timeout
        self._pool: AsyncConnectionPool[_Conn] | None = None
        self._schema_ready = False
        self._abandoned: set[asyncio.Future[Any]] = set()
        t = sql.Identifier(self._table_name)
        self._sql_get = sql.SQL(
            "SELECT status, body, payload_hash, request_id, created_at FROM {t} "
            "WHERE tenant_id = %s AND pcs_id = %s AND expires_at > %s"
        ).format(t=t)
        self._sql_winner = sql.SQL(
            "SELECT status, body, payload_hash, request_id, created_at FROM {t} "
            "WHERE tenant_id = %s AND pcs_id = %s"
        ).format(t=t)
        self._sql_put = sql.SQL(
            "INSERT INTO {t} AS d (tenant_id, pcs_id, status, body, payload_hash, request_id, "
            "created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (tenant_id, pcs_id) DO UPDATE SET status = EXCLUDED.status, "
            "body = EXCLUDED.body, payload_hash = EXCLUDED.payload_hash, "
            "request_id = EXCLUDED.request_id, created_at = EXCLUDED.created_at, "
            "expires_at = EXCLUDED.expires_at WHERE d.expires_at <= %s RETURNING 1"
        ).format(t=t)
        self._sql_purge = sql.SQL("DELETE FROM {t} WHERE expires_at <= %s").format(t=t)
        self._sql_ping = sql.SQL("SELECT 1 FROM {t} LIMIT 1").format(t=t)
        self._sql_schema = [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} (tenant_id text NOT NULL, pcs_id text NOT NULL, "
                "status integer NOT NULL, body bytea NOT NULL, payload_hash text NOT NULL, "
                "request_id text NOT NULL, created_at double precision NOT NULL, "
                "expires_at double precision NOT NULL, PRIMARY KEY (tenant_id, pcs_id))"
            ).format(t=t),
            sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (expires_at)").format(
                i=sql.Identifier(f"{self._table_name}_expires_idx"), t=t
            ),
        ]
        digest = hashlib.sha256(f"fractal_lba.stores:{self._table_name}".encode()).digest()
        self._lock_id = int.from_bytes(digest[:8], "big", signed=True)

    @property
    def table(self) -> str:
        """Name of the dedup table."""
        return self._table_name

    async def open(self) -> None:
        """Start the pool (without waiting for it) and create the table.

        Raises ``StoreUnavailable`` if the server does not answer within ``op_timeout``;
        calling ``open`` again later retries the schema creation.
        """
        if self._pool is None:
            self._pool = AsyncConnectionPool(
                self._dsn,
                open=False,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._op_timeout,
                reconnect_timeout=self._reconnect_timeout,
                configure=self._configure,
                kwargs={"autocommit": True, "connect_timeout": max(2, math.ceil(self._op_timeout))},
                name=f"flk-dedup-{self._table_name}",
            )
            await self._pool.open(wait=False)
        if not self._schema_ready:
            await self._run("open", self._create_schema)
            self._schema_ready = True

    async def get(self, tenant_id: str, pcs_id: str) -> StoredOutcome | None:
        """Return the live outcome for the key, or ``None``."""
        args = (tenant_id, pcs_id, self._clock())

        async def work(conn: _Conn) -> StoredOutcome | None:
            row = await (await conn.execute(self._sql_get, args)).fetchone()
            return None if row is None else _outcome(row)

        return await self._run("get", work)

    async def put_if_absent(
        self, tenant_id: str, pcs_id: str, outcome: StoredOutcome, ttl_s: float
    ) -> StoredOutcome:
        """Store ``outcome`` unless a live record exists; return the winner."""
        args = insert_args(tenant_id, pcs_id, outcome, self._clock(), ttl_s)

        async def work(conn: _Conn) -> StoredOutcome:
            # The loop only repeats if the winner was purged between the two statements.
            for _ in range(3):
                if await (await conn.execute(self._sql_put, args)).fetchone() is not None:
                    return outcome
                row = await (await conn.execute(self._sql_winner, args[:2])).fetchone()
                if row is not None:
                    return _outcome(row)
            raise StoreUnavailable("postgres put kept losing to concurrent deletes")

        return await self._run("put", work)

    async def ping(self) -> None:
        """Borrow a checked connection and read the table."""

        async def work(conn: _Conn) -> None:
            await conn.execute(self._sql_ping)

        await self._run("ping", work)

    async def purge_expired(self) -> int:
        """Delete expired rows; return how many."""
        args = (self._clock(),)

        async def work(conn: _Conn) -> int:
            return (await conn.execute(self._sql_purge, args)).rowcount

        return await self._run("purge", work)

    async def close(self) -> None:
        """Close the pool. Idempotent."""
        pool, self._pool = self._pool, None
        self._schema_ready = False
        # A second cancel makes psycopg drop a connection stuck in a cancel request at once.
        abandoned = list(self._abandoned)
        for task in abandoned:
            task.cancel()
        if abandoned:
            await asyncio.wait(abandoned, timeout=self._op_timeout)
        if pool is not None:
            await pool.close(timeout=self._op_timeout)

    async def _configure(self, conn: _Conn) -> None:
        """Bound every statement on the server side too, so a stuck query frees its lock;
        no per-insert flush (see the module docstring)."""
        ms = max(1, int(self._op_timeout * 1000))
        await conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(ms)))
        await conn.execute("SET synchronous_commit = off")

    async def _create_schema(self, conn: _Conn) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_id,))
            for statement in self._sql_schema:
                await conn.execute(statement)

    async def _run(self, op: str, work: Callable[[_Conn], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection within op_timeout, translating driver errors.

        The attempt runs in its own task that is abandoned (cancelled, not awaited) on
        timeout: psycopg answers a cancellation by sending the server a cancel request and
        waiting for it, which against a hung server takes seconds longer than op_timeout.
        """
        pool = self._pool
        if pool is None:
            raise StoreError("postgres store is not open")
        task = asyncio.ensure_future(self._attempt(pool, work))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._op_timeout)
        except BaseException:
            self._abandon(task)
            raise
        if not done:
            self._abandon(task)
            raise StoreUnavailable(f"postgres {op} timed out after {self._op_timeout:g}s")
        try:
            return task.result()
        except PoolTimeout:
            raise StoreUnavailable(f"postgres {op} timed out after {self._op_timeout:g}s") from None
        except PoolClosed:
            raise StoreError("postgres store is not open") from None
        except psycopg.Error as exc:
            raise _translate(exc, op) from None
        except OSError as exc:
            raise StoreUnavailable(f"postgres {op} failed: {type(exc).__name__}") from None

    async def _attempt(
        self, pool: AsyncConnectionPool[_Conn], work: Callable[[_Conn], Awaitable[T]]
    ) -> T:
        # A pooled connection may have died since it was last used (server restart, network
        # cut): the pool discards it when it comes back broken, so try the next one.
        for _ in range(self._max_size):
            async with pool.connection() as conn:
                try:
                    return await work(conn)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    if not conn.broken:
                        raise
        async with pool.connection() as conn:
            return await work(conn)

    def _abandon(self, task: asyncio.Future[Any]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller already got StoreUnavailable


def _outcome(row: tuple[Any, ...]) -> StoredOutcome:
    status, body, payload_hash, request_id, created_at = row
    return StoredOutcome(
        status=int(status),
        body=bytes(body),
        payload_hash=str(payload_hash),
        request_id=str(request_id),
        created_at=float(created_at),
    )


def _translate(exc: psycopg.Error, op: str) -> StoreError:
    """Map a psycopg error by SQLSTATE; never echo its message (it may quote row values)."""
    state = exc.sqlstate or ""
    what = state or type(exc).__name__
    if (
        isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        or state[:2] in _TRANSIENT_SQLSTATE_CLASSES
    ):
        return StoreUnavailable(f"postgres {op} failed: {what}")
    return StoreError(f"postgres {op} failed: {what}")
