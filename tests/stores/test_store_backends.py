"""Backend-specific behaviour: factory, memory snapshots, sqlite setup and group commit,
error hygiene, and the skip-or-fail rule of the service fixtures."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from store_helpers import (
    FakeClock,
    assert_no_driver_chain,
    assert_unavailable_within,
    free_port,
    outcome,
)

from fractal_lba.errors import ConfigError
from fractal_lba.stores import (
    BACKENDS,
    MemoryStore,
    PostgresStore,
    RedisStore,
    SqliteStore,
    StoreError,
    StoreUnavailable,
    create_store,
)
from fractal_lba.stores.sqlite.checkpoint import WAL_SIZE_LIMIT

TTL = 1000.0


def build(backend: str, tmp_path: Path, **kwargs: object) -> object:
    return create_store(
        backend,
        data_dir=tmp_path,
        redis_url="redis://127.0.0.1:6379/0",
        postgres_dsn="postgresql://postgres@127.0.0.1:5432/test",
        **kwargs,  # type: ignore[arg-type]
    )


# --- factory ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "cls"),
    [
        ("memory", MemoryStore),
        ("sqlite", SqliteStore),
        ("redis", RedisStore),
        ("postgres", PostgresStore),
    ],
)
def test_factory_builds_each_backend_without_io(
    backend: str, cls: type[object], tmp_path: Path
) -> None:
    store = build(backend, tmp_path)
    assert isinstance(store, cls)
    assert getattr(store, "name") == backend  # noqa: B009
    assert sorted(BACKENDS) == ["memory", "postgres", "redis", "sqlite"]


def test_factory_sqlite_file_lives_in_data_dir(tmp_path: Path) -> None:
    store = build("sqlite", tmp_path)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "dedup.sqlite3"


def test_factory_unknown_backend_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DEDUP_BACKEND"):
        build("mongodb", tmp_path)


@pytest.mark.parametrize("namespace", ["", "has space", "semi;colon", "x" * 49, "1abc", "a:b"])
def test_factory_rejects_unsafe_namespace(namespace: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="namespace"):
        build("postgres", tmp_path, namespace=namespace)


def test_factory_rejects_bad_op_timeout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="op_timeout"):
        build("redis", tmp_path, op_timeout=0)


# --- memory snapshots ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_memory_snapshot_roundtrip_drops_expired(tmp_path: Path) -> None:
    path = tmp_path / "snap" / "dedup.msgpack"
    clock = FakeClock()
    store = MemoryStore(snapshot_path=path, clock=clock)
    await store.open()  # missing file: empty store
    await store.put_if_absent("t", "short", outcome("short"), 10.0)
    await store.put_if_absent("t", "long", outcome("long"), TTL)
    await store.close()
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left

    clock.advance(10.0)
    again = MemoryStore(snapshot_path=path, clock=clock)
    await again.open()
    try:
        assert len(again) == 1
        assert await again.get("t", "long") == outcome("long")
        assert await again.get("t", "short") is None
    finally:
        await again.close()


@pytest.mark.anyio
async def test_memory_snapshot_on_demand(tmp_path: Path) -> None:
    path = tmp_path / "dedup.msgpack"
    store = MemoryStore(snapshot_path=path)
    await store.open()
    try:
        await store.put_if_absent("t", "p", outcome("a"), TTL)
        await store.snapshot()
        reader = MemoryStore(snapshot_path=path)
        await reader.open()
        assert await reader.get("t", "p") == outcome("a")
    finally:
        await store.close()


@pytest.mark.anyio
async def test_memory_corrupt_snapshot_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "dedup.msgpack"
    path.write_bytes(b"\x93not a snapshot")
    store = MemoryStore(snapshot_path=path)
    with pytest.raises(StoreError, match="corrupt") as info:
        await store.open()
    assert_no_driver_chain(info.value)


# --- sqlite ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sqlite_uses_wal_and_survives_a_fresh_process_view(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dedup.sqlite3"
    store = SqliteStore(path, namespace="ns1")
    await store.open()
    try:
        await store.put_if_absent("t", "p", outcome("a"), TTL)
        with sqlite3.connect(path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            rows = other.execute("SELECT tenant_id, pcs_id, request_id FROM ns1_dedup")
            assert rows.fetchall() == [("t", "p", "a")]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_sqlite_group_commit_batches_concurrent_writes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "dedup.sqlite3")
    await store.open()
    try:
        before = store.commit_count
        n = 400
        results = await asyncio.gather(
            *(store.put_if_absent("t", f"p{i}", outcome(f"r{i}"), TTL) for i in range(n))
        )
        assert [r.request_id for r in results] == [f"r{i}" for i in range(n)]
        commits = store.commit_count - before
        assert 1 <= commits < n / 4, f"{commits} commits for {n} concurrent puts"
    finally:
        await store.close()


def wal_frames(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames checkpointed) as another connection sees them."""
    with sqlite3.connect(path) as other:
        _busy, frames, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return frames, copied


@pytest.mark.anyio
async def test_sqlite_commits_never_checkpoint_and_the_checkpointer_keeps_the_wal_bounded(
    tmp_path: Path,
) -> None:
    """Checkpoints (page copies + fsync of the database) stalled the store thread on large
    stores; commits must leave them to the Checkpointer thread, which resets the WAL."""
    path = tmp_path / "dedup.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        await asyncio.to_thread(store._checkpointer.stop)  # driven by hand below
        with sqlite3.connect(path) as other:
            other.execute("PRAGMA wal_autocheckpoint = 0")  # this probe must not checkpoint
        big = outcome("x")
        big = type(big)(big.status, big.body * 40, big.payload_hash, "x", big.created_at)
        for r in range(30):
            await asyncio.gather(
                *(store.put_if_absent("t", f"p{r}-{i}", big, TTL) for i in range(100))
            )
        wal_bytes = path.with_name(path.name + "-wal").stat().st_size
        # SQLite's automatic checkpoint would have reset the WAL at 1000 pages.
        assert wal_bytes > 2000 * 4096, wal_bytes
        frames, copied = await asyncio.to_thread(store._checkpointer.checkpoint)
        assert frames > 2000 and copied == frames
        await store.put_if_absent("t", "next", outcome("n"), TTL)  # restarts the WAL
        assert wal_frames(path)[0] < 100
        assert path.with_name(path.name + "-wal").stat().st_size <= WAL_SIZE_LIMIT
        assert await store.get("t", "p29-99") == big
    finally:
        await store.close()


@pytest.mark.anyio
async def test_sqlite_checkpointer_thread_runs_while_the_store_is_open(tmp_path: Path) -> None:
    path = tmp_path / "dedup.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        await asyncio.gather(
            *(store.put_if_absent("t", f"p{i}", outcome("a"), TTL) for i in range(50))
        )
        deadline = asyncio.get_running_loop().time() + 20
        while store._checkpointer.passes == 0:
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint ran"
            await asyncio.sleep(0.02)
    finally:
        await store.close()
    assert store._checkpointer.passes > 0


@pytest.mark.anyio
async def test_sqlite_lookups_do_not_wait_for_a_write_lock_held_elsewhere(tmp_path: Path) -> None:
    """A lookup batched with a write that waits for another process's write lock is answered
    at once (read transaction); the write completes once the lock is released."""
    store = SqliteStore(tmp_path / "dedup.sqlite3", op_timeout=10.0)
    await store.open()
    await store.put_if_absent("t", "present", outcome("first"), TTL)
    blocker = sqlite3.connect(tmp_path / "dedup.sqlite3", isolation_level=None)
    gate = threading.Event()
    try:
        # Hold the store thread so that the next operations queue up as one batch.
        held = asyncio.ensure_future(store._submit("hold", lambda conn: gate.wait(), writes=False))
        blocker.execute("BEGIN IMMEDIATE")
        put = asyncio.ensure_future(store.put_if_absent("t", "new", outcome("w"), TTL))
        get = asyncio.ensure_future(store.get("t", "present"))
        await asyncio.sleep(0)
        gate.set()
        await held
        assert await asyncio.wait_for(get, 5.0) == outcome("first")
        assert not put.done()  # still waiting for the lock the blocker holds
        blocker.execute("ROLLBACK")
        assert (await asyncio.wait_for(put, 5.0)).request_id == "w"
    finally:
        gate.set()
        blocker.close()
        await store.close()


@pytest.mark.anyio
async def test_sqlite_unwritable_location_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SqliteStore(blocker / "dedup.sqlite3", op_timeout=0.5)
    with pytest.raises(StoreUnavailable) as info:
        await store.open()
    assert_no_driver_chain(info.value)
    await store.close()


# --- error hygiene: no secrets, no driver types ----------------------------------------------


@pytest.mark.anyio
async def test_redis_errors_hide_the_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    store = RedisStore(f"redis://:s3cret-pw@127.0.0.1:{port}/0", op_timeout=0.5)
    try:
        await assert_unavailable_within(store.open, 0.5)
        with pytest.raises(StoreUnavailable) as info:
            await store.put_if_absent("tenant-x", "pcs-y", outcome("z"), TTL)
        text = str(info.value)
        assert "s3cret" not in text and "tenant-x" not in text and "pcs-y" not in text
        assert_no_driver_chain(info.value)
    finally:
        await store.close()


@pytest.mark.anyio
async def test_postgres_errors_hide_the_password(tmp_path: Path) -> None:
    port = free_port()
    store = PostgresStore(f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/x", op_timeout=0.5)
    try:
        await assert_unavailable_within(store.open, 0.5)
        with pytest.raises(StoreUnavailable) as info:
            await store.get("tenant-x", "pcs-y")
        text = str(info.value)
        assert "s3cret" not in text and "tenant-x" not in text and "pcs-y" not in text
        assert_no_driver_chain(info.value)
    finally:
        await store.close()


# --- FLK_REQUIRE_SERVICES ----------------------------------------------------------------


@pytest.mark.parametrize("require", [False, True])
def test_missing_service_skips_unless_required(require: bool) -> None:
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "FLK_REQUIRE_SERVICES": "1" if require else "0",
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(Path(__file__).with_name("test_store_conformance.py")),
         "-k", "test_get_missing_is_none and redis"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if require:
        assert run.returncode != 0, run.stdout
        assert "FLK_REQUIRE_SERVICES=1" in run.stdout
    else:
        assert run.returncode == 0, run.stdout
        assert "1 skipped" in run.stdout


# --- one package per backend ---------------------------------------------------------------


def test_every_backend_name_has_a_dedup_and_a_quota_store() -> None:
    from fractal_lba import config
    from fractal_lba.stores.factory import QUOTA_BACKENDS

    assert set(BACKENDS) == set(QUOTA_BACKENDS) == set(config.BACKENDS)


@pytest.mark.anyio
async def test_a_bad_redis_url_is_a_config_error_everywhere(tmp_path: Path) -> None:
    from fractal_lba.tenancy import RedisLimiter
    from fractal_lba.tenancy.quota import create_quota_store

    bad = "nosuchscheme://secret-password@host/0"
    store = RedisStore(bad)
    with pytest.raises(ConfigError, match="REDIS_URL") as info:
        await store.open()
    assert "secret" not in str(info.value)
    with pytest.raises(ConfigError, match="REDIS_URL"):
        create_quota_store("redis", data_dir=tmp_path, redis_url=bad, postgres_dsn="")
    with pytest.raises(ConfigError, match="REDIS_URL"):
        RedisLimiter(bad)


def test_driver_errors_map_in_one_table_per_backend() -> None:
    import psycopg
    import redis.exceptions as rex

    from fractal_lba.stores.postgres.errors import StatementError
    from fractal_lba.stores.postgres.errors import translate as pg
    from fractal_lba.stores.redis.errors import translate as rd
    from fractal_lba.stores.sqlite.errors import translate as sq

    assert type(sq(sqlite3.OperationalError("disk I/O error"), "put")) is StoreUnavailable
    assert type(sq(sqlite3.IntegrityError("x"), "put")) is StoreError
    assert type(rd(rex.ConnectionError("x"), "get", 1.0)) is StoreUnavailable
    assert type(rd(rex.ResponseError("LOADING wait"), "get", 1.0)) is StoreUnavailable
    assert type(rd(rex.ResponseError("WRONGTYPE key 'secret'"), "get", 1.0)) is StoreError
    assert "timed out after 1s" in str(rd(rex.TimeoutError(), "get", 1.0))
    assert type(pg(psycopg.OperationalError("x"), "get", 1.0)) is StoreUnavailable
    assert type(pg(psycopg.DataError("row 'secret'"), "put", 1.0)) is StatementError
    assert type(pg(psycopg.ProgrammingError("x"), "put", 1.0)) is StoreError
    for err in (rd(rex.ResponseError("WRONGTYPE key 'secret'"), "get", 1.0),
                pg(psycopg.DataError("row 'secret'"), "put", 1.0)):  # fmt: skip
        assert "secret" not in str(err)


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_quota_store_creates_its_table_under_the_advisory_lock(
    postgres_dsn: str, namespace: str, tmp_path: Path
) -> None:
    """Replicas starting together: every one opens (no UniqueViolation race on CREATE)."""
    from fractal_lba.tenancy.quota import create_quota_store

    stores = [
        create_quota_store(
            "postgres",
            data_dir=tmp_path,
            redis_url="",
            postgres_dsn=postgres_dsn,
            namespace=namespace,
        )
        for _ in range(6)
    ]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        assert await stores[0].add("2026-01-01", {"t": 2}) == {"t": 2}
        assert await stores[5].add("2026-01-01", {"t": 3}) == {"t": 5}
    finally:
        for s in stores:
            await s.close()
