"""PostgreSQL dedup store for several verifier replicas (psycopg 3 async + connection pool).

Table ``{namespace}_dedup`` (created on open under an advisory lock so concurrent replicas
do not race on ``CREATE TABLE``). First write wins with ``INSERT ... ON CONFLICT DO UPDATE
... WHERE expires_at <= now RETURNING``: the row lock makes exactly one concurrent writer
win; a loser reads the committed winner with a follow-up ``SELECT`` (a new statement, so a
new snapshot in autocommit mode, which sees the winner's commit).

Concurrent calls are batched (:class:`~fractal_lba.stores.batching.Batcher`): the ``get``
calls queued while earlier batches run go out as one ``SELECT ... JOIN unnest(keys)``, the
``put_if_absent`` calls as one ``INSERT ... SELECT FROM unnest(rows) ON CONFLICT ...`` (plus
one ``SELECT`` of the winners of the keys that lost). Per call, a statement costs a pool
checkout, a task, a timer and a driver round trip, which under load made client CPU, not the
server, the limit; a batch pays them once. A key's first put in a batch is its candidate row
(one statement may not update a row twice); its later puts get the winner, as if they had
run right after it. Rows are inserted in key order, so overlapping batches (of this or
another replica) lock rows in the same order and cannot deadlock. A batch of one uses the
single-row statements (cheaper); a batch refused for one call's arguments is re-run call by
call, so that only that call gets the error.

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
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from fractal_lba.stores.base import (
    Clock,
    StoredOutcome,
    check_limit,
    check_namespace,
    check_positive,
    insert_args,
    outcome_from_row,
)
from fractal_lba.stores.batching import Batcher
from fractal_lba.stores.errors import StoreError, StoreUnavailable
from fractal_lba.stores.postgres import schema
from fractal_lba.stores.postgres.errors import DRIVER_ERRORS, StatementError, timed_out, translate

T = TypeVar("T")
R = TypeVar("R")

_Conn = psycopg.AsyncConnection[TupleRow]
_Key = tuple[str, str]
_Put = tuple[str, str, StoredOutcome, float]
"""A queued ``put_if_absent``: tenant_id, pcs_id, outcome, ttl_s."""

# Batches in flight per operation (gets and puts each). Every running batch holds a pooled
# connection: 6 + 6 leave 6 of the default pool of 18 for ping, purge, open and for attempts
# abandoned after a timeout (they keep their connection until the server answers or the
# connection dies). The server, not this process, is the limit of one worker: with 3 slots
# per operation the verifier used 0.65 of a core while batches waited on PostgreSQL; 6 let
# its backends work on the other core too (+11% req/s in interleaved A/B runs). A small pool
# gets fewer slots.
_MAX_INFLIGHT = 6
# Calls per statement: bounds a statement's size (a put carries the response body) and the
# rows it locks at once, i.e. how long an overlapping batch of another replica waits on it.
# Under the loads measured (64 concurrent requests) batches stay well below it.
_MAX_BATCH = 128
# How often a put re-inserts keys whose winner was purged between its two statements.
_PUT_ROUNDS = 3


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
        max_size: int = 18,
        reconnect_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._namespace = check_namespace(namespace)
        self._table_name = schema.table_name(self._namespace, "dedup")
        self._op_timeout = check_positive("op_timeout", op_timeout)
        self._clock = clock
        self._min_size = min_size
        self._max_size = max_size
        self._reconnect_timeout = reconnect_timeout
        self._pool: AsyncConnectionPool[_Conn] | None = None
        self._schema_ready = False
        self._abandoned: set[asyncio.Future[Any]] = set()
        inflight = max(1, min(_MAX_INFLIGHT, max_size // 3))
        self._gets: Batcher[_Key, StoredOutcome | None] = Batcher(
            self._get_batch,
            op_timeout=self._op_timeout,
            expired=lambda: self._timed_out("get"),
            max_batch=_MAX_BATCH,
            max_inflight=inflight,
        )
        self._puts: Batcher[_Put, StoredOutcome] = Batcher(
            self._put_batch,
            op_timeout=self._op_timeout,
            expired=lambda: self._timed_out("put"),
            max_batch=_MAX_BATCH,
            max_inflight=inflight,
        )
        t = sql.Identifier(self._table_name)
        row = sql.SQL("status, body, payload_hash, request_id, created_at")
        keys = sql.SQL("unnest(%s::text[], %s::text[]) AS k(tenant_id, pcs_id)")
        self._sql_get = sql.SQL(
            "SELECT {row} FROM {t} WHERE tenant_id = %s AND pcs_id = %s AND expires_at > %s"
        ).format(row=row, t=t)
        self._sql_get_many = sql.SQL(
            "SELECT tenant_id, pcs_id, {row} FROM {t} JOIN {keys} USING (tenant_id, pcs_id) "
            "WHERE expires_at > %s"
        ).format(row=row, t=t, keys=keys)
        self._sql_winner = sql.SQL(
            "SELECT {row} FROM {t} WHERE tenant_id = %s AND pcs_id = %s"
        ).format(row=row, t=t)
        self._sql_winner_many = sql.SQL(
            "SELECT tenant_id, pcs_id, {row} FROM {t} JOIN {keys} USING (tenant_id, pcs_id)"
        ).format(row=row, t=t, keys=keys)
        upsert = sql.SQL(
            "ON CONFLICT (tenant_id, pcs_id) DO UPDATE SET status = EXCLUDED.status, "
            "body = EXCLUDED.body, payload_hash = EXCLUDED.payload_hash, "
            "request_id = EXCLUDED.request_id, created_at = EXCLUDED.created_at, "
            "expires_at = EXCLUDED.expires_at WHERE d.expires_at <= %s"
        )
        columns = sql.SQL(
            "{t} AS d (tenant_id, pcs_id, status, body, payload_hash, request_id, "
            "created_at, expires_at)"
        ).format(t=t)
        self._sql_put = sql.SQL(
            "INSERT INTO {columns} VALUES (%s, %s, %s, %s, %s, %s, %s, %s) {upsert} RETURNING 1"
        ).format(columns=columns, upsert=upsert)
        # unnest keeps the order of the arrays, so rows are inserted (and locked) in key order.
        self._sql_put_many = sql.SQL(
            "INSERT INTO {columns} SELECT * FROM unnest(%s::text[], %s::text[], "
            "%s::integer[], %s::bytea[], %s::text[], %s::text[], %s::float8[], %s::float8[]) "
            "{upsert} RETURNING d.tenant_id, d.pcs_id"
        ).format(columns=columns, upsert=upsert)
        self._sql_purge = sql.SQL("DELETE FROM {t} WHERE expires_at <= %s").format(t=t)
        # A bounded batch, oldest first through the expiry index. SKIP LOCKED: rows a put is
        # overwriting right now (or another replica's purge holds) are left for the next
        # batch instead of waited for; the outer condition is re-checked on the newest row
        # version, so a row a put just renewed is never deleted.
        self._sql_purge_some = sql.SQL(
            "DELETE FROM {t} WHERE (tenant_id, pcs_id) IN (SELECT tenant_id, pcs_id FROM {t} "
            "WHERE expires_at <= %s ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED) "
            "AND expires_at <= %s"
        ).format(t=t)
        self._sql_ping = sql.SQL("SELECT 1 FROM {t} LIMIT 1").format(t=t)

    @property
    def table(self) -> str:
        """Name of the dedup table."""
        return self._table_name

    async def open(self) -> None:
        """Start the pool (without waiting for it) and create the table.

        Raises ``StoreUnavailable`` if the server does not answer within ``op_timeout``;
        calling ``open`` again later retries the schema creation.
        """
        self._gets.reopen()
        self._puts.reopen()
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
        return await self._gets.call((tenant_id, pcs_id))

    async def put_if_absent(
        self, tenant_id: str, pcs_id: str, outcome: StoredOutcome, ttl_s: float
    ) -> StoredOutcome:
        """Store ``outcome`` unless a live record exists; return the winner."""
        check_positive("ttl_s", ttl_s)
        return await self._puts.call((tenant_id, pcs_id, outcome, ttl_s))

    async def ping(self) -> None:
        """Borrow a checked connection and read the table."""

        async def work(conn: _Conn) -> None:
            await conn.execute(self._sql_ping)

        await self._run("ping", work)

    async def purge_expired(self, limit: int | None = None) -> int:
        """Delete expired rows (at most ``limit``, oldest first); return how many."""
        now = self._clock()
        args: tuple[float | int, ...]
        limit = check_limit(limit)
        if limit is None:
            statement, args = self._sql_purge, (now,)
        else:
            statement, args = self._sql_purge_some, (now, limit, now)

        async def work(conn: _Conn) -> int:
            return (await conn.execute(statement, args)).rowcount

        return await self._run("purge", work)

    async def close(self) -> None:
        """Fail queued calls, close the pool. Idempotent."""
        # Cancelling the running batches abandons their attempts (see _run).
        await self._gets.close()
        await self._puts.close()
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

    # --- batches ---------------------------------------------------------------------------

    async def _get_batch(
        self, items: list[_Key], timeout: float
    ) -> Sequence[StoredOutcome | BaseException | None]:
        """One statement for every get of the batch; the same key may be asked several times."""
        return await self._isolating("get", self._get_many, items, timeout)

    async def _get_many(self, items: list[_Key], timeout: float) -> list[StoredOutcome | None]:
        now = self._clock()
        if len(items) == 1:
            args: tuple[object, ...] = (*items[0], now)

            async def one(conn: _Conn) -> list[StoredOutcome | None]:
                row = await (await conn.execute(self._sql_get, args)).fetchone()
                return [None if row is None else outcome_from_row(row)]

            return await self._run("get", one, timeout)
        keys = list(dict.fromkeys(items))
        args = ([k[0] for k in keys], [k[1] for k in keys], now)

        async def many(conn: _Conn) -> dict[_Key, StoredOutcome]:
            rows = await (await conn.execute(self._sql_get_many, args)).fetchall()
            return {(row[0], row[1]): outcome_from_row(row[2:]) for row in rows}

        found = await self._run("get", many, timeout)
        return [found.get(key) for key in items]

    async def _put_batch(
        self, items: list[_Put], timeout: float
    ) -> Sequence[StoredOutcome | BaseException]:
        """One insert for every put of the batch (plus one select if some lost).

        A key's first put in the batch is its candidate; its later puts get the key's winner,
        as if they had run right after it."""
        return await self._isolating("put", self._put_many, items, timeout)

    async def _put_many(
        self, items: list[_Put], timeout: float
    ) -> list[StoredOutcome | BaseException]:
        now = self._clock()
        first: dict[_Key, _Put] = {}
        for item in items:
            first.setdefault((item[0], item[1]), item)
        # Key order: overlapping batches lock their rows in the same order (no deadlock).
        candidates = [first[key] for key in sorted(first)]

        async def work(conn: _Conn) -> dict[_Key, StoredOutcome]:
            winners: dict[_Key, StoredOutcome] = {}
            pending = candidates
            # Repeats only for keys whose winner was purged between the two statements.
            for _ in range(_PUT_ROUNDS):
                won = await self._insert(conn, pending, now)
                lost: list[_Put] = []
                for put in pending:
                    if (put[0], put[1]) in won:
                        winners[put[0], put[1]] = put[2]
                    else:
                        lost.append(put)
                if not lost:
                    break
                current = await self._select_winners(conn, [(p[0], p[1]) for p in lost])
                winners.update(current)
                pending = [p for p in lost if (p[0], p[1]) not in current]
                if not pending:
                    break
            return winners

        winners = await self._run("put", work, timeout)
        results: list[StoredOutcome | BaseException] = []
        for tenant_id, pcs_id, _, _ in items:
            winner = winners.get((tenant_id, pcs_id))
            if winner is None:
                results.append(StoreUnavailable("postgres put kept losing to concurrent deletes"))
            else:
                results.append(winner)
        return results

    async def _insert(self, conn: _Conn, puts: list[_Put], now: float) -> set[_Key]:
        """Insert-or-replace-expired each put's row; return the keys that were written."""
        if len(puts) == 1:
            tenant_id, pcs_id, outcome, ttl_s = puts[0]
            args = insert_args(tenant_id, pcs_id, outcome, now, ttl_s)
            row = await (await conn.execute(self._sql_put, args)).fetchone()
            return set() if row is None else {(tenant_id, pcs_id)}
        columns: tuple[list[object], ...] = ([], [], [], [], [], [], [], [])
        for tenant_id, pcs_id, o, ttl_s in puts:
            # The row's 8 columns; insert_args' last value (``now``) is the statement's own.
            values = insert_args(tenant_id, pcs_id, o, now, ttl_s)[: len(columns)]
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        rows = await (await conn.execute(self._sql_put_many, (*columns, now))).fetchall()
        return {(row[0], row[1]) for row in rows}

    async def _select_winners(self, conn: _Conn, keys: list[_Key]) -> dict[_Key, StoredOutcome]:
        """The committed rows of ``keys`` (live or not: they just beat an insert)."""
        if len(keys) == 1:
            row = await (await conn.execute(self._sql_winner, keys[0])).fetchone()
            return {} if row is None else {keys[0]: outcome_from_row(row)}
        args = ([k[0] for k in keys], [k[1] for k in keys])
        rows = await (await conn.execute(self._sql_winner_many, args)).fetchall()
        return {(row[0], row[1]): outcome_from_row(row[2:]) for row in rows}

    async def _isolating(
        self,
        op: str,
        run: Callable[[list[T], float], Awaitable[Sequence[R | BaseException]]],
        items: list[T],
        timeout: float,
    ) -> Sequence[R | BaseException]:
        """Run the batch; if a statement refuses one call's arguments, which fails the whole
        batch, run each call alone (in order, within the batch's time) so that the error
        reaches only that call, as it would have without batching."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            return await run(items, timeout)
        except StatementError:
            if len(items) == 1:
                raise
        results: list[R | BaseException] = []
        for item in items:
            try:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._timed_out(op)
                results.extend(await run([item], remaining))
            except StoreError as exc:
                results.append(exc)
        return results

    # --- connections -----------------------------------------------------------------------

    async def _configure(self, conn: _Conn) -> None:
        """Bound every statement on the server side too, so a stuck query frees its lock;
        no per-insert flush (see the module docstring)."""
        ms = max(1, int(self._op_timeout * 1000))
        await conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(ms)))
        await conn.execute("SET synchronous_commit = off")

    async def _create_schema(self, conn: _Conn) -> None:
        await schema.create(conn, self._namespace, "dedup")

    async def _run(
        self, op: str, work: Callable[[_Conn], Awaitable[T]], timeout: float | None = None
    ) -> T:
        """Run ``work`` on a pooled connection within ``timeout`` (default op_timeout),
        translating driver errors.

        The attempt runs in its own task that is abandoned (cancelled, not awaited) on
        timeout: psycopg answers a cancellation by sending the server a cancel request and
        waiting for it, which against a hung server takes seconds longer than op_timeout.
        """
        pool = self._pool
        if pool is None:
            raise StoreError("postgres store is not open")
        task = asyncio.ensure_future(self._attempt(pool, work))
        try:
            done, _ = await asyncio.wait(
                {task}, timeout=self._op_timeout if timeout is None else timeout
            )
        except BaseException:
            self._abandon(task)
            raise
        if not done:
            self._abandon(task)
            raise self._timed_out(op)
        try:
            return task.result()
        except DRIVER_ERRORS as exc:
            raise translate(exc, op, self._op_timeout) from None

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

    def _timed_out(self, op: str) -> StoreUnavailable:
        return timed_out(op, self._op_timeout)

    def _abandon(self, task: asyncio.Future[Any]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller already got StoreUnavailable
