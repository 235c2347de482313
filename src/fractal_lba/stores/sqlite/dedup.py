"""Embedded dedup store on one SQLite file, safe for several server worker processes.

Design:

* One dedicated thread owns the ``sqlite3`` connection; the event loop only enqueues
  operations and awaits futures, so it never blocks on SQLite.
* Group commit: the thread drains every queued operation (up to ``max_batch``) and runs
  them in ONE transaction (``BEGIN IMMEDIATE`` when the batch writes), then resolves the
  futures after ``COMMIT``. Under load one commit serves many requests.
* First write wins across processes: ``INSERT ... ON CONFLICT DO UPDATE ... WHERE
  expires_at <= now`` under the write lock of ``BEGIN IMMEDIATE``, followed by a read of the
  winner in the same transaction.
* ``journal_mode=WAL`` (readers never block the writer), ``synchronous=NORMAL`` (a commit is
  atomic and survives a process crash; the last commits may be lost on power loss, which
  the inbox WAL replay covers). Lookups run in their own read transaction, which never waits
  for the write lock; a write batch that finds the lock taken by another process retries
  every 0.1-1 ms (not SQLite's 1, 2, 5, 10... ms busy handler) until ``op_timeout``.
* WAL checkpoints run on a thread of their own
  (:class:`~fractal_lba.stores.sqlite.checkpoint.Checkpointer`), never inside a commit of
  the store thread: on a large store they cost tens to hundreds of milliseconds each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from fractal_lba.stores.base import (
    Clock,
    StoredOutcome,
    check_limit,
    check_namespace,
    check_positive,
    insert_args,
    outcome_from_row,
)
from fractal_lba.stores.errors import StoreError, StoreUnavailable
from fractal_lba.stores.sqlite import schema
from fractal_lba.stores.sqlite.checkpoint import Checkpointer
from fractal_lba.stores.sqlite.connection import connect
from fractal_lba.stores.sqlite.errors import DRIVER_ERRORS, is_busy, translate
from fractal_lba.wal.group import STOP, take_batch

T = TypeVar("T")

_Work = Callable[[sqlite3.Connection], Any]


@dataclass(eq=False, slots=True)
class _Op:
    """One queued operation; ``work`` runs on the store thread inside a batch transaction."""

    name: str
    work: _Work
    writes: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any] = field(repr=False)


_LOCK_BACKOFF_S = (0.0001, 0.0002, 0.0005, 0.001)


class SqliteStore:
    """SQLite :class:`~fractal_lba.stores.base.DedupStore` with a connection-owning thread."""

    name = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        namespace: str = "flk",
        op_timeout: float = 2.0,
        clock: Clock = time.time,
        max_batch: int = 512,
    ) -> None:
        self._path = path
        self._namespace = check_namespace(namespace)
        self._table = schema.table_name(self._namespace, "dedup")
        self._op_timeout = check_positive("op_timeout", op_timeout)
        self._clock = clock
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None  # touched only by the store thread
        self._checkpointer = Checkpointer(path)
        self._commits = 0
        t = self._table
        self._sql_get = (
            f"SELECT status, body, payload_hash, request_id, created_at FROM {t} "
            "WHERE tenant_id = ? AND pcs_id = ? AND expires_at > ?"
        )
        self._sql_winner = (
            f"SELECT status, body, payload_hash, request_id, created_at FROM {t} "
            "WHERE tenant_id = ? AND pcs_id = ?"
        )
        self._sql_put = (
            f"INSERT INTO {t} (tenant_id, pcs_id, status, body, payload_hash, request_id, "
            "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (tenant_id, pcs_id) DO UPDATE SET status = excluded.status, "
            "body = excluded.body, payload_hash = excluded.payload_hash, "
            "request_id = excluded.request_id, created_at = excluded.created_at, "
            f"expires_at = excluded.expires_at WHERE {t}.expires_at <= ?"
        )
        self._sql_purge = f"DELETE FROM {t} WHERE expires_at <= ?"
        # Oldest first through the expiry index; LIMIT bounds how long the batch holds the
        # write lock (the batch shares a transaction with the requests' writes).
        self._sql_purge_some = (
            f"DELETE FROM {t} WHERE (tenant_id, pcs_id) IN (SELECT tenant_id, pcs_id FROM {t} "
            "WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"
        )

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def commit_count(self) -> int:
        """Write transactions committed so far (far fewer than writes, thanks to group commit)."""
        return self._commits

    async def open(self) -> None:
        """Start the store thread, open the file and create the table."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"flk-sqlite-{self._table}", daemon=True
        )
        self._thread.start()
        try:
            await self._submit("open", lambda conn: None, writes=False)
        except BaseException:
            await self.close()
            raise
        self._checkpointer.start()

    async def get(self, tenant_id: str, pcs_id: str) -> StoredOutcome | None:
        """Return the live outcome for the key, or ``None``."""
        args = (tenant_id, pcs_id, self._clock())

        def work(conn: sqlite3.Connection) -> StoredOutcome | None:
            row = conn.execute(self._sql_get, args).fetchone()
            return None if row is None else outcome_from_row(row)

        return cast("StoredOutcome | None", await self._submit("get", work, writes=False))

    async def put_if_absent(
        self, tenant_id: str, pcs_id: str, outcome: StoredOutcome, ttl_s: float
    ) -> StoredOutcome:
        """Store ``outcome`` unless a live record exists; return the winner."""
        args = insert_args(tenant_id, pcs_id, outcome, self._clock(), ttl_s)

        def work(conn: sqlite3.Connection) -> StoredOutcome:
            if conn.execute(self._sql_put, args).rowcount == 1:
                return outcome
            row = conn.execute(self._sql_winner, (tenant_id, pcs_id)).fetchone()
            if row is None:  # cannot happen under the write lock; fail closed if it does
                raise StoreError("sqlite dedup record vanished during put")
            return outcome_from_row(row)

        return cast(StoredOutcome, await self._submit("put", work, writes=True))

    async def ping(self) -> None:
        """Round trip through the store thread and read the table."""
        sql = f"SELECT 1 FROM {self._table} LIMIT 1"
        await self._submit("ping", lambda conn: conn.execute(sql).fetchone(), writes=False)

    async def purge_expired(self, limit: int | None = None) -> int:
        """Delete expired rows (at most ``limit``, oldest first); return how many."""
        now = self._clock()
        args: tuple[float | int, ...]
        limit = check_limit(limit)
        if limit is None:
            sql, args = self._sql_purge, (now,)
        else:
            sql, args = self._sql_purge_some, (now, limit)
        work: _Work = lambda conn: conn.execute(sql, args).rowcount  # noqa: E731
        return cast(int, await self._submit("purge", work, writes=True))

    async def close(self) -> None:
        """Finish queued operations, close the connection and join the thread. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        await asyncio.to_thread(self._checkpointer.stop)
        self._queue.put(STOP)
        await asyncio.to_thread(thread.join)

    async def _submit(self, name: str, work: _Work, *, writes: bool) -> Any:
        if self._thread is None:
            raise StoreError("sqlite store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Op(name, work, writes, loop, future))
        # A bare timer instead of asyncio.timeout(): same deadline, a fraction of the cost on
        # a path taken twice per request (the store thread skips ops that are already done).
        timer = loop.call_at(loop.time() + self._op_timeout, self._expire, future, name)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, future: asyncio.Future[Any], name: str) -> None:
        if not future.done():
            future.set_exception(
                StoreUnavailable(f"sqlite {name} timed out after {self._op_timeout:g}s")
            )

    # --- everything below runs on the store thread ---

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[_Op]
            batch, stop = take_batch(self._queue, self._max_batch)
            if batch:
                self._run_batch(batch)
        self._disconnect()

    def _run_batch(self, batch: list[_Op]) -> None:
        # An op whose caller already timed out is skipped: nobody waits for its answer.
        live = [op for op in batch if not op.future.done()]
        # Lookups run in their own read transaction, which never waits for the write lock
        # (WAL mode): another worker process committing does not hold them up.
        reads = [op for op in live if not op.writes]
        writes = [op for op in live if op.writes]
        if reads:
            self._run_transaction(reads, write=False)
        if writes:
            self._run_transaction(writes, write=True)

    def _run_transaction(self, live: list[_Op], *, write: bool) -> None:
        """Run ``live`` in one transaction; on SQLITE_BUSY (another process holds the write
        lock) retry the whole transaction after 0.1-1 ms until ``op_timeout``. SQLite's own
        busy handler sleeps 1, 2, 5, 10... ms, which stalled every worker sharing the file."""
        deadline = time.monotonic() + self._op_timeout
        for attempt in itertools.count():
            live = [op for op in live if not op.future.done()]  # skip ops given up meanwhile
            if not live:
                return
            try:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    results = [op.work(conn) for op in live]
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
            except DRIVER_ERRORS as exc:
                if is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(_LOCK_BACKOFF_S[min(attempt, len(_LOCK_BACKOFF_S) - 1)])
                    continue
                error = translate(exc, live[0].name if len(live) == 1 else "batch")
                if not is_busy(exc):
                    self._disconnect()  # reconnect on the next batch
                _resolve_all([(op, None, error) for op in live])
                return
            except StoreError as exc:
                _resolve_all([(op, None, exc) for op in live])
                return
            except Exception as exc:  # a bug must not kill the thread that serves every caller
                self._disconnect()
                bug = StoreError(f"sqlite batch failed: {type(exc).__name__}")
                _resolve_all([(op, None, bug) for op in live])
                return
            if write:
                self._commits += 1
            _resolve_all([(op, result, None) for op, result in zip(live, results, strict=True)])
            return

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        conn = connect(self._path, timeout=self._op_timeout, checkpointer=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
            schema.create(conn, self._namespace, "dedup")
            conn.execute("COMMIT")
            # From here on SQLITE_BUSY comes back at once; _run_transaction waits in fine steps.
            conn.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


_Outcome = tuple[_Op, Any, BaseException | None]


def _resolve_all(outcomes: list[_Outcome]) -> None:
    """Hand a batch's results to their event loops: ONE thread-safe callback per loop (not
    one per op), so a batch of n operations wakes the loop once. A loop that is gone is
    skipped."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for item in outcomes:
        by_loop.setdefault(item[0].loop, []).append(item)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[_Outcome]) -> None:
    """Event-loop side of :func:`_resolve_all` (callers that timed out are skipped)."""
    for op, result, error in items:
        if op.future.done():
            continue
        if error is not None:
            op.future.set_exception(error)
        else:
            op.future.set_result(result)
