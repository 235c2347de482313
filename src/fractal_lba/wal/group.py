"""Group commit: many concurrent async submitters share one durable write + fsync.

A dedicated writer thread drains everything queued since its last commit, hands the batch to
``commit`` (e.g. :meth:`WalLog.append`, or the audit writer), and resolves every submitter's
future in one event-loop callback. While one fsync runs, the next batch accumulates, so under
load the number of fsyncs per request falls well below one without adding latency at low
load. No submitter is resolved before ``commit`` returned, i.e. before its record is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

from fractal_lba.wal.errors import WalError

I = TypeVar("I")  # noqa: E741 -- item type, reads like the math
R = TypeVar("R")

T = TypeVar("T")

STOP = object()
"""Put on a batch queue to stop the thread that consumes it (see :func:`take_batch`)."""
NUDGE = object()
"""Put on a group committer's queue to have ``commit`` run even with no item queued."""
NUDGE_DELAY_S = 0.005
"""How long a nudged writer waits for submitters before it runs ``commit([])``."""


def take_batch(
    q: queue.SimpleQueue[T | object], max_batch: int, *, block: bool = True
) -> tuple[list[T], bool]:
    """Everything queued on ``q`` (at most ``max_batch`` items), waiting for the first one
    when ``block``; and whether :data:`STOP` was taken. The one draining loop of the
    project's writer threads (group commit, SQLite store): one batch per wake-up."""
    batch: list[T] = []
    stop = False
    while len(batch) < max_batch:
        try:
            entry = q.get() if block and not batch and not stop else q.get_nowait()
        except queue.Empty:
            break
        if entry is STOP:
            stop = True
        else:
            batch.append(cast(T, entry))
    return batch, stop


class GroupCommitter(Generic[I, R]):
    """Async front of a batch ``commit(items) -> results`` function run on its own thread."""

    def __init__(
        self,
        commit: Callable[[Sequence[I]], Sequence[R]],
        *,
        name: str = "group-commit",
        max_batch: int = 4096,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._commit = commit
        self._name = name
        self._max_batch = max_batch
        self._on_batch = on_batch
        # A C-level queue: ``put`` never blocks the event loop on a lock the writer holds, and
        # wakes the writer only when it waits (a Condition cost a Python-level notify each time).
        self._queue: queue.SimpleQueue[tuple[I, asyncio.Future[R]] | object] = queue.SimpleQueue()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the writer thread; call from the event loop that will submit."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    async def submit(self, item: I) -> R:
        """Queue ``item``; return its commit result once it is durable."""
        loop = self._loop
        if loop is None or self._closing:
            raise WalError(f"{self._name} is not running")
        fut: asyncio.Future[R] = loop.create_future()
        self._queue.put((item, fut))
        return await fut

    def nudge(self) -> None:
        """Wake the writer for one ``commit([])`` unless items are queued anyway.

        For work the commit function picks up on its own (the inbox's outcome markers),
        which should not wait for the next submitter. Safe from any thread.
        """
        if not self._closing:
            self._queue.put(NUDGE)

    def _await_items(self) -> tuple[list[object], bool]:
        """Items queued within ``NUDGE_DELAY_S`` (nudges dropped), and whether STOP came."""
        try:
            first = self._queue.get(timeout=NUDGE_DELAY_S)
        except queue.Empty:
            return [], False
        more: list[object]
        more, stop = take_batch(self._queue, self._max_batch - 1, block=False)
        items = [e for e in (first, *more) if e is not NUDGE and e is not STOP]
        return items, stop or first is STOP

    async def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        self._closing = True
        self._queue.put(STOP)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        # A submit that passed its check just before close() and queued after the writer
        # left: fail it rather than leave its caller waiting forever.
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(entry, tuple) and not entry[1].done():
                entry[1].set_exception(WalError(f"{self._name} is not running"))

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        stopping = False
        while True:
            raw: list[tuple[I, asyncio.Future[R]] | object]
            raw, stop = take_batch(self._queue, self._max_batch, block=not stopping)
            stopping = stopping or stop
            batch = cast(list[tuple[I, asyncio.Future[R]]], [e for e in raw if e is not NUDGE])
            if not batch and raw and not stopping:
                # Only nudges: give submitters a moment, so that what the nudge is for rides
                # along with their batch (no extra write) whenever there is traffic.
                more, stop = self._await_items()
                stopping = stopping or stop
                batch = cast(list[tuple[I, asyncio.Future[R]]], more)
            if not batch:
                if raw:  # only nudges
                    # Nobody waits on a nudge; the commit function keeps its own state (the
                    # inbox queues its markers again and the log records the error).
                    with contextlib.suppress(Exception):
                        self._commit([])
                if stopping:
                    return
                continue
            items = [item for item, _ in batch]
            t0 = time.perf_counter()
            try:
                results: Sequence[R] | None = self._commit(items)
                error: BaseException | None = None
            except BaseException as exc:  # delivered to every submitter of the batch
                results, error = None, exc
            if self._on_batch is not None:
                self._on_batch(len(items), time.perf_counter() - t0)
            try:
                loop.call_soon_threadsafe(_resolve, batch, results, error)
            except RuntimeError:  # loop closed during shutdown
                return


def _resolve(
    batch: list[tuple[I, asyncio.Future[R]]],
    results: Sequence[R] | None,
    error: BaseException | None,
) -> None:
    for i, (_, fut) in enumerate(batch):
        if fut.done():
            continue
        if error is not None or results is None:
            fut.set_exception(error if error is not None else WalError("commit failed"))
        else:
            fut.set_result(results[i])
