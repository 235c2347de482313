"""Coalescing of concurrent store operations into one round trip per batch.

Under load many requests reach the same step (dedup lookup, dedup write) within a few event
loop iterations; sending them to a networked store one by one costs a round trip, a driver
call, a pool checkout and a timer each. A :class:`Batcher` queues calls and, while fewer than
``max_inflight`` batches are running, sends everything queued as one batch; calls arriving
meanwhile form the next batch (the shape of the WAL's group commit). Under light load a batch
holds one call and adds no waiting: the flush runs on the next loop iteration.

Every call still gets its own result or its own error, and keeps its deadline: a batch is run
with what remains of ``op_timeout`` for its oldest call, so a call never waits longer than
``op_timeout`` (plus scheduling) whether it queued or ran. The batch function bounds itself by
that timeout (some drivers must abandon, not cancel, a stuck attempt) and translates driver
errors; whatever it raises is given to every call of the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from fractal_lba.stores.errors import StoreError

K = TypeVar("K")
R = TypeVar("R")

RunBatch = Callable[[list[K], float], Awaitable[Sequence[R | BaseException]]]
"""``run(items, timeout)``: one result (or exception instance) per item, in order."""


class Batcher(Generic[K, R]):
    """Queue calls of one store operation and run them as batches."""

    def __init__(
        self,
        run: RunBatch[K, R],
        *,
        op_timeout: float,
        expired: Callable[[], BaseException],
        max_batch: int = 256,
        max_inflight: int = 2,
    ) -> None:
        self._run = run
        self._op_timeout = op_timeout
        self._expired = expired
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._queue: list[tuple[K, asyncio.Future[R], float]] = []
        self._inflight = 0
        self._scheduled = False
        self._tasks: dict[asyncio.Task[None], list[tuple[K, asyncio.Future[R], float]]] = {}
        self._closed = False
        self.batches = 0
        """Batches run so far (for tests and benchmarks: calls / batches = mean batch size)."""

    async def call(self, item: K) -> R:
        """Run ``item`` in the next batch and return its result (or raise its error)."""
        if self._closed:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, fut, loop.time()))
        if not self._scheduled and self._inflight < self._max_inflight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._queue and self._inflight < self._max_inflight:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            batch = [entry for entry in batch if not entry[1].done()]  # drop cancelled calls
            if not batch:
                continue
            self._inflight += 1
            self.batches += 1
            task = loop.create_task(self._run_batch(batch))
            self._tasks[task] = batch
            task.add_done_callback(self._forget)

    async def _run_batch(self, batch: list[tuple[K, asyncio.Future[R], float]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            remaining = self._op_timeout - (loop.time() - batch[0][2])
            if remaining <= 0:
                raise self._expired()
            results = await self._run([entry[0] for entry in batch], remaining)
            if len(results) != len(batch):
                raise StoreError("store batch returned a wrong number of results")
        except Exception as exc:  # every call of the batch gets the error
            for _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(exc)
        except BaseException:
            for _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(StoreError("store operation was cancelled"))
            raise
        else:
            for (_, fut, _), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
        finally:
            self._inflight -= 1
            if self._queue and not self._scheduled and not self._closed:
                self._scheduled = True
                loop.call_soon(self._flush)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def close(self) -> None:
        """Fail queued and running calls at once, cancel running batches and wait for them
        (a driver may take a while to give up a call to a hung server). Idempotent."""
        self._closed = True
        queue, self._queue = self._queue, []
        running = [entry for batch in self._tasks.values() for entry in batch]
        for _, fut, _ in queue + running:
            if not fut.done():
                fut.set_exception(StoreError("store is not open"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def reopen(self) -> None:
        """Accept calls again after :meth:`close` (stores may be reopened)."""
        self._closed = False
