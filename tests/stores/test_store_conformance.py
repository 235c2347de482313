"""One conformance suite for the DedupStore protocol, run against every backend."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from store_helpers import FakeClock, outcome

from fractal_lba.stores import DedupStore, StoredOutcome, StoreError

pytestmark = pytest.mark.anyio

TTL = 1000.0


async def test_get_missing_is_none(store: DedupStore) -> None:
    assert await store.get("tenant", "missing") is None


async def test_put_then_get_roundtrips_every_field(store: DedupStore) -> None:
    first = StoredOutcome(
        status=202,
        body=b'{"accepted":false,"reason":"anomaly"}\x00\xff',
        payload_hash="0f" * 32,
        request_id="wal-000017-000042",
        created_at=1_700_000_000.123456,
    )
    won = await store.put_if_absent("tenant", "pcs-1", first, TTL)
    assert won is first
    got = await store.get("tenant", "pcs-1")
    assert got == first
    assert type(got) is StoredOutcome


async def test_first_write_wins(store: DedupStore) -> None:
    first, second = outcome("first"), outcome("second", status=202)
    assert await store.put_if_absent("t", "p", first, TTL) is first
    assert await store.put_if_absent("t", "p", second, TTL) == first
    assert await store.get("t", "p") == first


async def test_ttl_expiry_uses_the_store_clock(store: DedupStore, clock: FakeClock) -> None:
    first, second = outcome("first"), outcome("second")
    await store.put_if_absent("t", "p", first, TTL)
    clock.advance(TTL - 0.001)
    assert await store.get("t", "p") == first
    assert await store.put_if_absent("t", "p", second, TTL) == first
    clock.advance(0.001)  # now == expires_at: expired
    assert await store.get("t", "p") is None
    # An expired record may be overwritten, and the new one then wins.
    assert await store.put_if_absent("t", "p", second, TTL) is second
    assert await store.get("t", "p") == second
    assert await store.put_if_absent("t", "p", first, TTL) == second


async def test_purge_expired_deletes_only_expired(store: DedupStore, clock: FakeClock) -> None:
    for i in range(3):
        await store.put_if_absent("t", f"short-{i}", outcome(f"s{i}"), TTL)
    await store.put_if_absent("t", "long", outcome("long"), 100 * TTL)
    assert await store.purge_expired() == 0
    clock.advance(2 * TTL)
    assert await store.purge_expired() == 3
    assert await store.purge_expired() == 0
    assert await store.get("t", "long") == outcome("long")
    assert await store.get("t", "short-0") is None


async def test_purge_expired_with_a_limit_deletes_in_bounded_batches(
    store: DedupStore, clock: FakeClock
) -> None:
    for i in range(25):
        await store.put_if_absent("t", f"short-{i:02d}", outcome(f"s{i}"), TTL)
    await store.put_if_absent("t", "long", outcome("long"), 100 * TTL)
    assert await store.purge_expired(10) == 0
    clock.advance(2 * TTL)
    batches: list[int] = []
    while sum(batches) < 25:
        batches.append(await store.purge_expired(10))
        assert batches[-1] <= 10, batches
        assert len(batches) < 50, f"expired records not all purged: {batches}"
    assert sum(batches) == 25 and len(batches) >= 3
    assert await store.purge_expired(10) == 0
    assert await store.get("t", "long") == outcome("long")
    assert await store.get("t", "short-00") is None
    with pytest.raises(ValueError, match="limit"):
        await store.purge_expired(0)


async def test_a_purged_key_can_be_written_again(store: DedupStore, clock: FakeClock) -> None:
    await store.put_if_absent("t", "p", outcome("old"), TTL)
    clock.advance(TTL)
    while await store.purge_expired(5):
        pass
    fresh = outcome("fresh")
    assert await store.put_if_absent("t", "p", fresh, TTL) is fresh
    assert await store.get("t", "p") == fresh


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("tenant-a", "pcs"), ("tenant-b", "pcs")),
        # Naive "tenant:pcs" keys would collide here.
        (("a:b", "c"), ("a", "b:c")),
        (("", "x:y"), ("x", "y")),
    ],
)
async def test_tenants_are_isolated(
    store: DedupStore, a: tuple[str, str], b: tuple[str, str]
) -> None:
    oa, ob = outcome("for-a"), outcome("for-b")
    assert await store.put_if_absent(*a, oa, TTL) is oa
    assert await store.put_if_absent(*b, ob, TTL) is ob
    assert await store.get(*a) == oa
    assert await store.get(*b) == ob


async def race(store: DedupStore, key: str, candidates: list[StoredOutcome]) -> list[StoredOutcome]:
    """Start one put_if_absent task per candidate on the same key; return what each got."""
    results: list[StoredOutcome] = []

    async def put(candidate: StoredOutcome) -> None:
        results.append(await store.put_if_absent("t", key, candidate, TTL))

    async with anyio.create_task_group() as tg:
        for candidate in candidates:
            tg.start_soon(put, candidate)
    return results


async def test_concurrent_puts_agree_on_one_winner(store: DedupStore) -> None:
    # Several rounds: the first also races connection set-up, later ones use warm pools.
    for r in range(3):
        candidates = [outcome(f"writer-{r}-{i}") for i in range(64)]
        results = await race(store, f"contended-{r}", candidates)
        assert len(results) == len(candidates)
        winner = results[0]
        assert all(x == winner for x in results), f"round {r}: several winners"
        assert winner in candidates
        assert await store.get("t", f"contended-{r}") == winner


async def test_ping_succeeds_when_open(store: DedupStore) -> None:
    await store.ping()


async def test_rejects_non_positive_ttl(store: DedupStore) -> None:
    for ttl in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ttl_s"):
            await store.put_if_absent("t", "p", outcome("x"), ttl)


async def test_use_before_open_and_after_close_is_a_store_error(
    anyio_backend: str, make_store: Callable[..., DedupStore]
) -> None:
    s = make_store()
    with pytest.raises(StoreError):
        await s.get("t", "p")
    await s.open()
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(StoreError):
        await s.put_if_absent("t", "p", outcome("x"), TTL)


async def test_records_survive_reopen(
    anyio_backend: str, backend: str, make_store: Callable[..., DedupStore]
) -> None:
    # memory persists only through its snapshot file.
    first = make_store(snapshot=backend == "memory")
    await first.open()
    try:
        await first.put_if_absent("t", "p", outcome("kept"), TTL)
    finally:
        await first.close()
    second = make_store(snapshot=backend == "memory")
    await second.open()
    try:
        assert await second.get("t", "p") == outcome("kept")
        assert await second.put_if_absent("t", "p", outcome("late"), TTL) == outcome("kept")
    finally:
        await second.close()
