"""The store call coalescer: batching, per-call results and errors, deadlines, close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from fractal_lba.stores.batching import Batcher
from fractal_lba.stores.errors import StoreError, StoreUnavailable

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _expired() -> BaseException:
    return StoreUnavailable("expired")


class Recorder:
    """A batch function that records its batches and can be held on a gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.timeouts: list[float] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, items: list[int], timeout: float) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        self.timeouts.append(timeout)
        if self.gate is not None:
            try:
                await asyncio.wait_for(self.gate.wait(), timeout)
            except TimeoutError:
                raise StoreUnavailable("timed out") from None
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def _one_slot_held(
    op_timeout: float = 5.0,
) -> tuple[Recorder, asyncio.Event, Batcher[int, int], asyncio.Future[int]]:
    """A one-slot batcher whose first call (1) is running and held on the recorder's gate."""
    rec = Recorder()
    gate = rec.gate = asyncio.Event()
    b: Batcher[int, int] = Batcher(rec, op_timeout=op_timeout, expired=_expired, max_inflight=1)
    first = asyncio.ensure_future(b.call(1))
    while not rec.batches:
        await asyncio.sleep(0)
    return rec, gate, b, first


async def test_concurrent_calls_share_one_batch_and_get_their_own_results() -> None:
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec, op_timeout=2.0, expired=_expired)
    results = await asyncio.gather(*(b.call(i) for i in range(50)))
    assert results == [i * 10 for i in range(50)]
    assert rec.batches == [list(range(50))]
    assert 0 < rec.timeouts[0] <= 2.0


async def test_calls_arriving_while_batches_run_form_the_next_batch() -> None:
    rec, gate, b, first = await _one_slot_held()
    later = [asyncio.ensure_future(b.call(i)) for i in range(2, 12)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert rec.batches == [[1]]  # the slot is taken: the others wait
    gate.set()
    assert await first == 10
    assert [await f for f in later] == [i * 10 for i in range(2, 12)]
    assert rec.batches == [[1], list(range(2, 12))]
    assert b.batches == 2


async def test_max_batch_splits_a_long_queue() -> None:
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec, op_timeout=2.0, expired=_expired, max_batch=4)
    assert await asyncio.gather(*(b.call(i) for i in range(10))) == [i * 10 for i in range(10)]
    assert [len(x) for x in rec.batches] == [4, 4, 2]


async def test_a_per_item_error_reaches_only_its_caller() -> None:
    b: Batcher[int, int] = Batcher(Recorder(), op_timeout=2.0, expired=_expired)
    results = await asyncio.gather(b.call(1), b.call(-1), b.call(2), return_exceptions=True)
    assert results[0] == 10 and results[2] == 20
    assert isinstance(results[1], ValueError)


async def test_a_batch_error_reaches_every_caller() -> None:
    async def broken(items: list[int], timeout: float) -> Sequence[int]:
        raise StoreUnavailable("down")

    b: Batcher[int, int] = Batcher(broken, op_timeout=2.0, expired=_expired)
    results = await asyncio.gather(*(b.call(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)


async def test_a_wrong_result_count_is_an_error_not_a_misdelivery() -> None:
    async def short(items: list[int], timeout: float) -> Sequence[int]:
        return items[:-1]

    b: Batcher[int, int] = Batcher(short, op_timeout=2.0, expired=_expired)
    results = await asyncio.gather(b.call(1), b.call(2), return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results)


async def test_queued_calls_keep_their_deadline() -> None:
    """A call queued behind a stuck batch fails when its own op_timeout is used up, without
    its batch ever being sent."""
    rec, _, b, first = await _one_slot_held(op_timeout=0.05)  # the gate is never set
    second = asyncio.ensure_future(b.call(2))
    with pytest.raises(StoreUnavailable, match="timed out"):
        await first
    with pytest.raises(StoreUnavailable, match="expired"):
        await second
    assert rec.batches == [[1]]


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    rec, gate, b, first = await _one_slot_held()
    gone = asyncio.ensure_future(b.call(2))
    kept = asyncio.ensure_future(b.call(3))
    await asyncio.sleep(0)
    gone.cancel()
    gate.set()
    assert await first == 10 and await kept == 30
    assert rec.batches == [[1], [3]]  # the cancelled call was never sent


async def test_close_fails_queued_calls_and_refuses_new_ones() -> None:
    _, gate, b, running = await _one_slot_held()
    queued = asyncio.ensure_future(b.call(2))
    await asyncio.sleep(0)
    await b.close()
    for fut in (running, queued):
        with pytest.raises(StoreError):
            await fut
    with pytest.raises(StoreError, match="not open"):
        await b.call(3)
    b.reopen()
    gate.set()
    assert await b.call(4) == 40
