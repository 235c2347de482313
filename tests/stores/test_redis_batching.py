"""RedisStore batching: concurrent calls share one MGET / one script call per batch, and every
caller still gets the answer it would get alone (first write wins per key across instances,
logical expiry, per-call errors, deadlines, NOSCRIPT reload, close and reopen)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis
from store_helpers import (
    BatchProbe,
    FakeClock,
    PrivateRedis,
    assert_no_driver_chain,
    eventually,
    outcome,
)

from fractal_lba.stores import RedisStore, StoredOutcome, StoreError, StoreUnavailable

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

TTL = 1000.0
OP_TIMEOUT = 0.5


@pytest.fixture
async def pair(
    anyio_backend: str, redis_url: str, namespace: str, clock: FakeClock
) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores (two client pools, like two replicas) on the same namespace."""
    a = RedisStore(redis_url, namespace=namespace, clock=clock)
    b = RedisStore(redis_url, namespace=namespace, clock=clock)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def batches(store: RedisStore) -> tuple[int, int]:
    """(get batches, put batches) run so far."""
    return store._gets.batches, store._puts.batches


async def test_concurrent_puts_on_repeated_keys_from_two_stores_agree(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    a, b = pair
    n, keys = 100, 20
    calls = [(a if i % 2 else b, f"k{i % keys}", outcome(f"w{i}")) for i in range(n)]
    before = [batches(s) for s in pair]
    results = await asyncio.gather(*(s.put_if_absent("t", k, o, TTL) for s, k, o in calls))

    for k in range(keys):
        mine = [(o, r) for (_, key, o), r in zip(calls, results, strict=True) if key == f"k{k}"]
        winner = mine[0][1]
        assert all(r == winner for _, r in mine), f"k{k}: several winners"
        assert sum(r is o for o, r in mine) == 1, f"k{k}: not exactly one caller won"
        assert winner in [o for o, _ in mine]
        assert await a.get("t", f"k{k}") == winner
        assert await b.get("t", f"k{k}") == winner

    put_batches = sum(batches(s)[1] - before[i][1] for i, s in enumerate(pair))
    assert 2 <= put_batches < n / 10, f"{put_batches} script calls for {n} concurrent puts"


async def test_duplicate_keys_inside_one_batch_get_the_first_callers_value(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    a, _ = pair
    first, second, third = outcome("first"), outcome("second"), outcome("third")
    before = batches(a)[1]
    results = await asyncio.gather(
        a.put_if_absent("t", "p", first, TTL),
        a.put_if_absent("t", "p", second, TTL),
        a.put_if_absent("t", "q", third, TTL),
    )
    assert batches(a)[1] == before + 1  # one script call
    assert results[0] is first and results[1] == first and results[2] is third


async def test_batched_gets_of_present_absent_and_expired_keys(
    pair: tuple[RedisStore, RedisStore], clock: FakeClock, namespace: str, redis_url: str
) -> None:
    a, b = pair
    live, short = outcome("live"), outcome("short")
    await a.put_if_absent("t", "live", live, TTL)
    await a.put_if_absent("t", "short", short, 10.0)
    clock.advance(10.0)  # expires_at == now: expired

    before = batches(b)[0]
    names = ["live", "absent", "short", "live", "short", "absent", "live"]
    got = await asyncio.gather(*(b.get("t", name) for name in names))
    assert batches(b)[0] == before + 1  # one MGET
    expect = {"live": live, "absent": None, "short": None}
    assert got == [expect[name] for name in names]

    # The expired record may be overwritten, once, inside one batch; the key keeps a TTL.
    late, later = outcome("late"), outcome("later")
    won = await asyncio.gather(
        b.put_if_absent("t", "short", late, 5.0),
        a.put_if_absent("t", "short", later, 5.0),
        b.put_if_absent("t", "live", outcome("loser"), TTL),
    )
    assert won[0] is late and won[1] == late and won[2] == live
    with redis.Redis.from_url(redis_url) as r:
        assert 0 < r.pttl(a.key("t", "short")) <= 5000
        assert r.pttl(a.key("t", "live")) > 5000


async def test_a_corrupt_record_fails_only_its_own_calls(
    pair: tuple[RedisStore, RedisStore], redis_url: str
) -> None:
    a, _ = pair
    good = outcome("good")
    await a.put_if_absent("t", "good", good, TTL)
    with redis.Redis.from_url(redis_url) as r:
        r.set(a.key("t", "bad-head"), b"secret-value|x")
        r.set(a.key("t", "bad-body"), repr(time.time() + 1e9).encode() + b"|secret-value")

    got = await asyncio.gather(
        a.get("t", "good"),
        a.get("t", "bad-head"),
        a.get("t", "bad-body"),
        a.put_if_absent("t", "bad-head", outcome("x"), TTL),
        a.put_if_absent("t", "bad-body", outcome("y"), TTL),
        a.put_if_absent("t", "good", outcome("z"), TTL),
        return_exceptions=True,
    )
    assert got[0] == good and got[5] == good
    for err in got[1:5]:
        assert isinstance(err, StoreError), err
        assert "corrupt" in str(err) and "secret" not in str(err)
        assert_no_driver_chain(err)


async def test_put_script_is_reloaded_after_script_flush(private_redis: PrivateRedis) -> None:
    store = RedisStore(private_redis.url, op_timeout=OP_TIMEOUT)
    await store.open()
    try:
        first = outcome("first")
        assert await store.put_if_absent("t", "p", first, TTL) is first
        with redis.Redis(port=private_redis.port) as r:
            r.script_flush()
            assert r.script_exists(store._put_script.sha if store._put_script else "") == [False]
        fresh = [outcome(f"n{i}") for i in range(10)]
        got = await asyncio.gather(
            *(store.put_if_absent("t", f"n{i % 5}", o, TTL) for i, o in enumerate(fresh)),
            store.put_if_absent("t", "p", outcome("loser"), TTL),
        )
        assert got[:5] == fresh[:5] and all(got[i] is fresh[i] for i in range(5))
        assert got[5:10] == fresh[:5] and got[10] == first
    finally:
        await store.close()


async def test_a_hung_server_fails_every_batched_call_within_op_timeout(
    private_redis: PrivateRedis,
) -> None:
    store = RedisStore(private_redis.url, op_timeout=OP_TIMEOUT)
    await store.open()
    try:
        await store.put_if_absent("t", "p", outcome("before"), TTL)
        private_redis.pause()
        try:
            start = time.monotonic()
            got = await asyncio.gather(
                *(store.get("t", f"g{i}") for i in range(30)),
                *(store.put_if_absent("t", f"p{i}", outcome("x"), TTL) for i in range(30)),
                return_exceptions=True,
            )
            elapsed = time.monotonic() - start
        finally:
            private_redis.resume()
        assert all(isinstance(e, StoreUnavailable) for e in got), got
        for e in got:
            assert isinstance(e, BaseException)
            assert_no_driver_chain(e)
        assert elapsed < OP_TIMEOUT + 0.5, elapsed
        assert await eventually(lambda: store.get("t", "p")) == outcome("before")
    finally:
        await store.close()


async def test_close_fails_pending_calls_and_open_works_again(
    private_redis: PrivateRedis,
) -> None:
    op_timeout = 5.0
    store = RedisStore(private_redis.url, op_timeout=op_timeout)
    await store.open()
    try:
        probe = BatchProbe(store._gets)
        private_redis.pause()
        try:
            pending = [asyncio.ensure_future(store.get("t", f"g{i}")) for i in range(5)]
            await probe.wait_running()  # the MGET is on its way to the hung server
            t0 = time.monotonic()
            closing = asyncio.ensure_future(store.close())
            for fut in pending:
                with pytest.raises(StoreError) as info:
                    await fut
                # Failed by close, not by running into op_timeout.
                assert not isinstance(info.value, StoreUnavailable), info.value
                assert_no_driver_chain(info.value)
            assert time.monotonic() - t0 < op_timeout / 2
            await closing  # the pool's own close waits for the hung server (bounded)
            assert len(probe.starts) == 1 and len(probe.ends) == 1
        finally:
            private_redis.resume()
        with pytest.raises(StoreError, match="not open"):
            await store.get("t", "p")
        await store.open()
        mine: StoredOutcome = outcome("again")
        assert await store.put_if_absent("t", "p", mine, TTL) is mine
        assert await store.get("t", "p") == mine
    finally:
        await store.close()
