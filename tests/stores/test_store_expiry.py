"""Expiry at run time (SPEC section 5): the background purge on every backend, the bound of the
memory store, and Redis holding nothing that outlives its TTL.

The end-to-end tests run the real ``flk serve`` over HTTP: the store is prefilled through its
own API with a clock 30 days in the past, so those records are expired in real time when the
server starts, without waiting for a TTL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from psycopg import sql
from store_helpers import FakeClock, outcome

from fractal_lba.stores import (
    DedupStore,
    MemoryStore,
    Purger,
    StoreFull,
    StoreUnavailable,
    create_store,
)
from testkit import SHARED_BACKENDS, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import JSON, SUBMIT, ServerProcess, body, make_pcs

TTL = 1000.0
DAY = 86400.0


# --- the memory store's bound ------------------------------------------------------------


@pytest.mark.anyio
async def test_memory_store_full_of_live_records_refuses_new_ones_and_keeps_every_outcome(
    anyio_backend: str,
) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock, max_entries=3)
    await store.open()
    kept = [outcome(f"k{i}") for i in range(3)]
    for i, o in enumerate(kept):
        assert await store.put_if_absent("t", f"p{i}", o, TTL) is o
    with pytest.raises(StoreFull) as info:
        await store.put_if_absent("t", "new", outcome("new"), TTL)
    assert isinstance(info.value, StoreUnavailable)  # answered 503 + Retry-After upstream
    assert store.refused == 1 and len(store) == 3
    # Duplicates of stored records are still answered, and nothing live was evicted.
    assert await store.put_if_absent("t", "p0", outcome("dup"), TTL) == kept[0]
    assert [await store.get("t", f"p{i}") for i in range(3)] == kept


@pytest.mark.anyio
async def test_memory_store_at_its_bound_makes_room_from_expired_records_oldest_first(
    anyio_backend: str,
) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock, max_entries=3)
    await store.open()
    await store.put_if_absent("t", "a", outcome("a"), 10)
    await store.put_if_absent("t", "b", outcome("b"), 20)
    await store.put_if_absent("t", "c", outcome("c"), 1000)
    clock.advance(25)  # a and b expired
    for name in ("d", "e"):
        assert await store.put_if_absent("t", name, outcome(name), TTL) == outcome(name)
        assert len(store) == 3
    with pytest.raises(StoreFull):
        await store.put_if_absent("t", "f", outcome("f"), TTL)
    assert await store.get("t", "c") == outcome("c")
    # An expired record rewritten in place leaves a stale heap item that must not delete it.
    clock.advance(TTL + 1000)
    assert await store.put_if_absent("t", "c", outcome("c2"), TTL) == outcome("c2")
    assert await store.purge_expired() == 2  # d and e; c was renewed
    assert await store.get("t", "c") == outcome("c2")


def test_memory_bound_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(max_entries=0)


# --- the purger --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_purger_runs_bounded_batches_until_none_is_left(
    store: DedupStore, clock: FakeClock
) -> None:
    for i in range(23):
        await store.put_if_absent("t", f"e{i:02d}", outcome(f"e{i}"), TTL)
    await store.put_if_absent("t", "live", outcome("live"), 100 * TTL)
    clock.advance(2 * TTL)
    seen: list[int] = []
    purger = Purger(store, batch=5, min_pause=0.001, on_batch=seen.append)
    total = 0
    for _ in range(20):  # redis: one call is one step of a scan; it may take a few passes
        total += await purger.run_once()
        if total == 23:
            break
    assert total == 23 and purger.purged == 23
    assert all(n <= 5 for n in seen) and len([n for n in seen if n]) >= 5, seen
    assert await store.get("t", "live") == outcome("live")


@pytest.mark.anyio
async def test_purger_survives_store_errors_and_stops_on_close(anyio_backend: str) -> None:
    class Failing:
        calls = 0

        async def purge_expired(self, limit: int | None = None) -> int:
            self.calls += 1
            raise StoreUnavailable("down")

    failing = Failing()
    errors: list[int] = []
    purger = Purger(failing, interval=0.01, on_error=lambda: errors.append(1))  # type: ignore[arg-type]
    purger.start()
    deadline = time.monotonic() + 10
    while len(errors) < 3:
        assert time.monotonic() < deadline, "purger did not retry after errors"
        await asyncio.sleep(0.01)
    await purger.close()
    calls = failing.calls
    await asyncio.sleep(0.05)  # closed: no further calls (checking an absence)
    assert failing.calls == calls


# --- the running server ------------------------------------------------------------------

EXPIRED, LIVE = 1200, 4
BATCH = 100


def prefill(backend: str, env: dict[str, str], data_dir: Path, namespace: str) -> None:
    """``EXPIRED`` records that expired 29 days ago and ``LIVE`` that expire in 30 days."""
    past = time.time() - 30 * DAY
    store = create_store(
        backend,
        data_dir=data_dir,
        redis_url=env.get("REDIS_URL", "redis://unused"),
        postgres_dsn=env.get("POSTGRES_DSN", "unused"),
        namespace=namespace,
        clock=lambda: past,
    )

    async def fill() -> None:
        await store.open()
        try:
            for i in range(EXPIRED):
                await store.put_if_absent("default", f"old-{i:05d}", outcome(f"o{i}"), DAY)
            for i in range(LIVE):
                await store.put_if_absent("default", f"live-{i}", outcome(f"l{i}"), 60 * DAY)
        finally:
            await store.close()

    asyncio.run(fill())


def stored_ids(backend: str, env: dict[str, str], data_dir: Path, namespace: str) -> set[str]:
    """pcs_ids physically present in the backend (live or not)."""
    if backend == "sqlite":
        with sqlite3.connect(data_dir / "dedup.sqlite3") as conn:
            return {r[0] for r in conn.execute(f"SELECT pcs_id FROM {namespace}_dedup")}
    if backend == "postgres":
        with psycopg.connect(env["POSTGRES_DSN"]) as conn:
            table = sql.Identifier(f"{namespace}_dedup")
            rows = conn.execute(sql.SQL("SELECT pcs_id FROM {}").format(table)).fetchall()
            return {r[0] for r in rows}
    with redis.Redis.from_url(env["REDIS_URL"]) as r:
        keys = r.scan_iter(match=f"{namespace}:dedup:*", count=1000)
        return {k.decode().rsplit(":", 1)[1] for k in keys}


@pytest.fixture
def server_for() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(data_dir: Path, env: dict[str, str]) -> ServerProcess:
        server = ServerProcess(data_dir, env)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def submit(server: ServerProcess, pcs: dict[str, object]) -> httpx.Response:
    return httpx.post(server.url + SUBMIT, content=body(pcs), headers=JSON, timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_running_server_purges_expired_records_in_batches_and_keeps_live_ones(
    backend: str,
    tmp_path: Path,
    namespace: str,
    request: pytest.FixtureRequest,
    server_for: Callable[..., ServerProcess],
) -> None:
    env = {
        "DEDUP_BACKEND": backend,
        "DEDUP_NAMESPACE": namespace,
        "DEDUP_PURGE_INTERVAL": "0.2",
        "DEDUP_PURGE_BATCH": str(BATCH),
    }
    if backend == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
        # The shared limiter's keys too: nothing the server writes may outlive its TTL.
        env |= {"RATE_LIMIT_BACKEND": "redis", "TOKEN_RATE": "1000", "DAILY_QUOTA": "100000"}
    if backend == "postgres":
        env["POSTGRES_DSN"] = request.getfixturevalue("postgres_dsn")
    data_dir = tmp_path / "data"
    prefill(backend, env, data_dir, namespace)
    assert len(stored_ids(backend, env, data_dir, namespace)) == EXPIRED + LIVE

    server = server_for(data_dir, env)
    fresh = [make_pcs(merkle_root=f"{i:02x}" * 32, epoch=i + 1) for i in range(3)]
    for pcs in fresh:
        assert submit(server, pcs).status_code == 200

    wait_until(
        lambda: metric(server, "flk_dedup_purged_total") >= EXPIRED,
        timeout=60,
        what="every expired record purged",
    )
    assert metric(server, "flk_dedup_purged_total") == EXPIRED
    assert metric(server, "flk_dedup_purge_batches_total") >= EXPIRED / BATCH
    left = stored_ids(backend, env, data_dir, namespace)
    assert not any(p.startswith("old-") for p in left)
    assert {f"live-{i}" for i in range(LIVE)} | {str(p["pcs_id"]) for p in fresh} == left

    for pcs in fresh:  # unexpired outcomes still replay
        again = submit(server, pcs)
        assert again.status_code == 200
        assert again.headers.get("idempotent-replayed") == "true"

    if backend == "redis":
        with redis.Redis.from_url(env["REDIS_URL"]) as r:
            keys = list(r.scan_iter(match=f"{namespace}:*", count=1000))
            kinds = {k.decode().split(":")[1] for k in keys}
            assert {"dedup", "rl", "quota"} <= kinds, kinds
            forever = [k for k in keys if r.pttl(k) < 0]
            assert not forever, f"keys without a TTL: {forever[:5]}"


@pytest.mark.slow
def test_memory_server_at_its_bound_answers_503_and_still_replays(
    tmp_path: Path, server_for: Callable[..., ServerProcess]
) -> None:
    env = {"DEDUP_BACKEND": "memory", "DEDUP_MEMORY_MAX_ENTRIES": "3"}
    server = server_for(tmp_path / "data", env)
    kept = [make_pcs(merkle_root=f"{i:02x}" * 32, epoch=i + 1) for i in range(3)]
    for pcs in kept:
        assert submit(server, pcs).status_code == 200
    refused = submit(server, make_pcs(merkle_root="ee" * 32, epoch=9))
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    for pcs in kept:
        again = submit(server, pcs)
        assert again.status_code == 200
        assert again.headers.get("idempotent-replayed") == "true"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("DEDUP_PURGE_INTERVAL", "0"),
        ("DEDUP_PURGE_INTERVAL", "soon"),
        ("DEDUP_PURGE_BATCH", "0"),
        ("DEDUP_MEMORY_MAX_ENTRIES", "-1"),
    ],
)
def test_bad_purge_and_bound_settings_name_the_variable(var: str, value: str) -> None:
    from fractal_lba.config import Settings
    from fractal_lba.errors import ConfigError

    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})


def test_purge_and_bound_settings_are_read() -> None:
    from fractal_lba.config import Settings

    s = Settings.from_env(
        {"DEDUP_PURGE_INTERVAL": "5m", "DEDUP_PURGE_BATCH": "250", "DEDUP_MEMORY_MAX_ENTRIES": "7"}
    )
    assert (s.dedup_purge_interval, s.dedup_purge_batch, s.dedup_memory_max_entries) == (
        300.0,
        250,
        7,
    )
