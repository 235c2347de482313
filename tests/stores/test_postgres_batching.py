"""PostgresStore batching: concurrent calls share statements, and every call still gets the
answer (or the error) it would have got alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from psycopg.conninfo import make_conninfo
from store_helpers import BatchProbe, FakeClock, TcpProxy, assert_no_driver_chain, outcome

from fractal_lba.stores import PostgresStore, StoredOutcome, StoreError, StoreUnavailable

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

TTL = 1000.0

MakeStore = Callable[[], Awaitable[PostgresStore]]


@pytest.fixture
async def pg(postgres_dsn: str, namespace: str, clock: FakeClock) -> AsyncIterator[MakeStore]:
    """Open PostgresStores on this test's table (as separate replicas would); closed after."""
    opened: list[PostgresStore] = []

    async def make() -> PostgresStore:
        store = PostgresStore(postgres_dsn, namespace=namespace, clock=clock)
        opened.append(store)
        await store.open()
        return store

    try:
        yield make
    finally:
        for store in opened:
            await store.close()


def batches(*stores: PostgresStore) -> tuple[int, int]:
    """(get batches, put batches) run so far by these stores."""
    return (
        sum(s._gets.batches for s in stores),
        sum(s._puts.batches for s in stores),
    )


async def test_concurrent_puts_from_two_replicas_agree_on_one_winner_per_key(
    pg: MakeStore,
) -> None:
    a, b = await pg(), await pg()
    keys = [f"k{i}" for i in range(20)]
    # 100 calls: each key 5 times, alternating replicas, so each replica's batch holds every
    # key two or three times.
    calls = [(a if n % 2 else b, keys[n % 20], outcome(f"w{n}")) for n in range(100)]
    before = batches(a, b)
    results = await asyncio.gather(*(s.put_if_absent("t", k, o, TTL) for s, k, o in calls))
    _, puts = (x - y for x, y in zip(batches(a, b), before, strict=True))
    assert puts < len(calls) / 5, f"{puts} put batches for {len(calls)} calls"

    by_key: dict[str, list[tuple[StoredOutcome, StoredOutcome]]] = {}
    for (_, key, mine), got in zip(calls, results, strict=True):
        by_key.setdefault(key, []).append((mine, got))
    for key, pairs in by_key.items():
        winner = pairs[0][1]
        assert all(got == winner for _, got in pairs), f"{key}: several winners"
        assert sum(got is mine for mine, got in pairs) == 1, f"{key}: not exactly one winner"
        assert winner in [mine for mine, _ in pairs]
        assert await a.get("t", key) == winner
        assert await b.get("t", key) == winner


async def test_a_key_repeated_in_one_batch_gets_its_first_put(pg: MakeStore) -> None:
    store = await pg()
    mine = [outcome(f"r{i}") for i in range(4)]
    before = batches(store)
    results = await asyncio.gather(*(store.put_if_absent("t", "same", o, TTL) for o in mine))
    assert batches(store)[1] == before[1] + 1  # one batch, one candidate row
    assert results[0] is mine[0]
    assert all(r is mine[0] for r in results)
    assert await store.get("t", "same") == mine[0]


async def test_concurrent_gets_of_present_absent_and_expired_keys(
    pg: MakeStore, clock: FakeClock
) -> None:
    store = await pg()
    live, old = outcome("live"), outcome("old")
    assert await store.put_if_absent("t", "live", live, TTL) is live
    assert await store.put_if_absent("t", "old", old, 10.0) is old
    assert await store.put_if_absent("u", "live", outcome("other-tenant"), 5.0) is not None
    clock.advance(20)  # "old" and the other tenant's row expire
    asked = [("t", "live"), ("t", "absent"), ("t", "old"), ("t", "live"), ("u", "live")] * 3
    before = batches(store)
    got = await asyncio.gather(*(store.get(t, p) for t, p in asked))
    assert batches(store)[0] == before[0] + 1
    assert got == [live, None, None, live, None] * 3


async def test_an_expired_row_in_a_batch_is_overwritten_by_exactly_one_writer(
    pg: MakeStore, clock: FakeClock
) -> None:
    a, b = await pg(), await pg()
    stale = outcome("stale")
    assert await a.put_if_absent("t", "exp", stale, 10.0) is stale
    clock.advance(20)
    writers = [outcome(f"w{i}") for i in range(12)]
    calls = [((a, b)[i % 2], "exp", o) for i, o in enumerate(writers)]
    calls += [((a, b)[i % 2], f"fresh{i % 3}", outcome(f"f{i}")) for i in range(6)]
    results = await asyncio.gather(*(s.put_if_absent("t", k, o, TTL) for s, k, o in calls))
    on_exp = results[: len(writers)]
    assert sum(r is w for r, w in zip(on_exp, writers, strict=True)) == 1
    assert all(r == on_exp[0] for r in on_exp)
    assert on_exp[0] != stale
    assert await b.get("t", "exp") == on_exp[0]
    # Live again: a later batch does not overwrite it.
    late = await asyncio.gather(*(a.put_if_absent("t", "exp", outcome("l"), TTL) for _ in "xyz"))
    assert late == [on_exp[0]] * 3


async def test_overlapping_batches_in_opposite_key_order_do_not_deadlock(
    pg: MakeStore,
) -> None:
    """Two replicas' batches over the same keys, sent in opposite orders: rows must be
    locked in one order (a deadlock would abort a batch with 40P01 -> StoreUnavailable)."""
    a, b = await pg(), await pg()
    n = 128
    for r in range(10):
        keys = [f"r{r}-{i:03d}" for i in range(n)]
        results = await asyncio.gather(
            *(a.put_if_absent("t", k, outcome(f"a{k}"), TTL) for k in keys),
            *(b.put_if_absent("t", k, outcome(f"b{k}"), TTL) for k in reversed(keys)),
        )
        assert results[:n] == results[n:][::-1]


async def test_a_bad_argument_fails_only_its_own_call(pg: MakeStore) -> None:
    store = await pg()
    good = outcome("good")
    before = batches(store)
    results = await asyncio.gather(
        store.put_if_absent("t", "ok", good, TTL),
        store.put_if_absent("t", "nul\x00", outcome("bad"), TTL),
        store.put_if_absent("t", "surrogate\ud800", outcome("bad"), TTL),
        store.put_if_absent("t", "ok", outcome("second"), TTL),
        store.get("t", "nul\x00"),
        store.get("t", "ok"),
        return_exceptions=True,
    )
    assert batches(store)[1] == before[1] + 1
    assert results[0] is good and results[3] == good
    for bad in (results[1], results[2], results[4]):
        assert isinstance(bad, StoreError) and not isinstance(bad, StoreUnavailable)
        assert "nul" not in str(bad) and "surrogate" not in str(bad)
        assert_no_driver_chain(bad)
    assert results[5] in (None, good)  # ran in the same loop turn as the put
    assert await store.get("t", "ok") == good


async def test_close_fails_calls_and_open_works_again(pg: MakeStore) -> None:
    store = await pg()
    kept = outcome("kept")
    assert await store.put_if_absent("t", "p", kept, TTL) is kept
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.get("t", "p")
    await store.open()
    assert await asyncio.gather(store.get("t", "p"), store.get("t", "q")) == [kept, None]
    assert await store.put_if_absent("t", "p", outcome("late"), TTL) == kept


async def test_batched_calls_fail_within_op_timeout_when_the_server_hangs(
    pg_proxy: TcpProxy, postgres_dsn: str, namespace: str
) -> None:
    """Calls queued behind a stuck batch keep their own deadline: their batch gets only what
    is left of op_timeout (a small pool allows one batch in flight per operation)."""
    op_timeout = 1.2
    dsn = make_conninfo(postgres_dsn, host="127.0.0.1", port=pg_proxy.port)
    store = PostgresStore(dsn, namespace=namespace, op_timeout=op_timeout, max_size=3)
    await store.open()
    try:
        assert await store.get("t", "p") is None  # the pool has a connection
        pg_proxy.blackhole()

        async def timed(call: Awaitable[object]) -> float:
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                await call
            assert_no_driver_chain(info.value)
            return time.monotonic() - t0

        async def wave() -> list[float]:
            return await asyncio.gather(
                *(timed(store.get("t", f"g{i}")) for i in range(20)),
                *(timed(store.put_if_absent("t", f"p{i}", outcome("x"), TTL)) for i in range(20)),
            )

        gets, puts = BatchProbe(store._gets), BatchProbe(store._puts)
        loop = asyncio.get_running_loop()
        t_first = loop.time()
        first = asyncio.ensure_future(wave())
        await gets.wait_running()  # both first batches are stuck on the black hole
        await puts.wait_running()
        # The second wave is queued at half of op_timeout: behind the stuck batches (one in
        # flight per operation), it has only the other half left when its batches run.
        await asyncio.sleep(max(0.0, t_first + op_timeout / 2 - loop.time()))
        second = asyncio.ensure_future(wave())
        elapsed = await second + await first
        for probe in (gets, puts):
            assert len(probe.starts) == 2, probe.starts  # one batch per wave and operation
            assert probe.starts[1] >= probe.ends[0]  # the second waited for the first
        # Given a fresh op_timeout, the second wave would take 1.5 x op_timeout.
        assert max(elapsed) < op_timeout + 0.4, f"slowest call took {max(elapsed):.2f}s"
    finally:
        await pg_proxy.restore()
        await store.close()
