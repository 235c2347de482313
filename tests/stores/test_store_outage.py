"""Outages: a hung or dead backend gives StoreUnavailable within op_timeout, never a hang,
and the same store object works again once the backend is back."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo
from store_helpers import (
    PrivateRedis,
    TcpProxy,
    assert_unavailable_within,
    eventually,
    outcome,
)

from fractal_lba.stores import DedupStore, PostgresStore, RedisStore, SqliteStore

pytestmark = pytest.mark.anyio

OP_TIMEOUT = 0.5
TTL = 3600.0


async def assert_all_unavailable(store: DedupStore) -> None:
    await assert_unavailable_within(lambda: store.get("t", "p"), OP_TIMEOUT)
    await assert_unavailable_within(
        lambda: store.put_if_absent("t", "p2", outcome("during-outage"), TTL), OP_TIMEOUT
    )
    await assert_unavailable_within(store.ping, OP_TIMEOUT)


@pytest.mark.redis
async def test_redis_hang_and_restart(private_redis: PrivateRedis, namespace: str) -> None:
    store = RedisStore(private_redis.url, namespace=namespace, op_timeout=OP_TIMEOUT)
    await store.open()
    try:
        first = outcome("before")
        assert await store.put_if_absent("t", "p", first, TTL) is first

        private_redis.pause()  # SIGSTOP: connections are accepted, nothing answers
        try:
            await assert_all_unavailable(store)
        finally:
            private_redis.resume()
        assert await eventually(lambda: store.get("t", "p")) == first

        private_redis.kill()  # SIGKILL: connection refused / reset
        await assert_all_unavailable(store)

        private_redis.start()  # same port, empty dataset (no persistence)
        await eventually(store.ping)
        again = outcome("after")
        assert await store.put_if_absent("t", "p", again, TTL) is again
        assert await store.get("t", "p") == again
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_open_fails_fast_when_down(private_redis: PrivateRedis) -> None:
    private_redis.kill()
    store = RedisStore(private_redis.url, op_timeout=OP_TIMEOUT)
    try:
        await assert_unavailable_within(store.open, OP_TIMEOUT)
        private_redis.start()
        await eventually(store.open)
        await store.ping()
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_hang_cut_and_recovery(
    pg_proxy: TcpProxy, postgres_dsn: str, namespace: str
) -> None:
    dsn = make_conninfo(postgres_dsn, host="127.0.0.1", port=pg_proxy.port)
    store = PostgresStore(dsn, namespace=namespace, op_timeout=OP_TIMEOUT)
    await store.open()
    try:
        first = outcome("before")
        assert await store.put_if_absent("t", "p", first, TTL) is first

        pg_proxy.blackhole()  # connections stay open, no byte gets through
        await assert_all_unavailable(store)
        await pg_proxy.restore()
        assert await eventually(lambda: store.get("t", "p")) == first

        await pg_proxy.cut()  # port closed, connections reset
        await assert_all_unavailable(store)
        await pg_proxy.restore()
        assert await eventually(lambda: store.get("t", "p")) == first
        second = outcome("after")
        assert await store.put_if_absent("t", "p3", second, TTL) is second
        assert await store.put_if_absent("t", "p", second, TTL) == first
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_open_fails_fast_when_down(
    pg_proxy: TcpProxy, postgres_dsn: str, namespace: str
) -> None:
    await pg_proxy.cut()
    dsn = make_conninfo(postgres_dsn, host="127.0.0.1", port=pg_proxy.port)
    store = PostgresStore(dsn, namespace=namespace, op_timeout=OP_TIMEOUT)
    try:
        await assert_unavailable_within(store.open, OP_TIMEOUT)
        await pg_proxy.restore()
        await eventually(store.open)
        await store.ping()
    finally:
        await store.close()


async def test_sqlite_write_lock_held_elsewhere(tmp_path: Path, namespace: str) -> None:
    """Another process holding the write lock: bounded failure, loop stays responsive."""
    path = tmp_path / "dedup.sqlite3"
    store = SqliteStore(path, namespace=namespace, op_timeout=OP_TIMEOUT)
    await store.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        t0 = time.monotonic()
        await assert_unavailable_within(
            lambda: store.put_if_absent("t", "p", outcome("x"), TTL), OP_TIMEOUT
        )
        task.cancel()
        # The event loop kept running while the store thread waited for the lock.
        assert ticks >= 0.5 * (time.monotonic() - t0) / 0.01
        blocker.execute("ROLLBACK")
        won = outcome("after")
        assert await eventually(lambda: store.put_if_absent("t", "p2", won, TTL)) is won
        # The timed-out put may or may not have been applied late (as with any backend).
        assert await store.get("t", "p") in (None, outcome("x"))
    finally:
        blocker.close()
        await store.close()
