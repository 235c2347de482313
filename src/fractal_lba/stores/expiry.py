"""Continuous removal of expired dedup records by the running server (SPEC section 5).

:class:`Purger` is a background task of the serving process: it asks the store to delete at
most ``batch`` expired records at a time (:meth:`DedupStore.purge_expired` with a limit), so
no single statement holds a lock or the store thread for long, and rests between batches
for a multiple of the time the batch took (``pause_factor``; at least ``min_pause``), so
purging a large backlog uses a bounded share of the store's time (at most
``1 / (1 + pause_factor)``) and requests keep being served in between. When a batch comes
back short, nothing expired is left: it waits ``interval`` before looking again. A store
error (or a bug) is logged, counted and retried after ``interval``; it never reaches a
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from fractal_lba.stores.base import DedupStore
from fractal_lba.stores.errors import StoreError

log = logging.getLogger("fractal_lba.stores")

DEFAULT_INTERVAL_S = 60.0
DEFAULT_BATCH = 1000


class Purger:
    """Purge ``store`` in bounded batches until :meth:`close`."""

    def __init__(
        self,
        store: DedupStore,
        *,
        interval: float = DEFAULT_INTERVAL_S,
        batch: int = DEFAULT_BATCH,
        pause_factor: float = 4.0,
        min_pause: float = 0.01,
        on_batch: Callable[[int], None] = lambda n: None,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        if not interval > 0 or batch < 1:
            raise ValueError("purge interval must be > 0 and batch >= 1")
        self._store = store
        self._interval = interval
        self._batch = batch
        self._pause_factor = pause_factor
        self._min_pause = min_pause
        self._on_batch = on_batch
        self._on_error = on_error
        self._task: asyncio.Task[None] | None = None
        self.purged = 0
        """Records deleted so far by this purger."""
        self.batches = 0
        """Batches run so far (each deleted at most ``batch`` records; ``on_batch`` gets the
        count of each, also of the empty ones that find nothing to do)."""

    def start(self) -> None:
        """Start the background task on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flk-purge")

    async def run_once(self) -> int:
        """Purge until a batch comes back short (with the pauses); return records deleted."""
        total = 0
        while True:
            t0 = time.monotonic()
            n = await self._store.purge_expired(self._batch)
            self.batches += 1
            self.purged += n
            total += n
            self._on_batch(n)
            if n < self._batch:
                return total
            took = time.monotonic() - t0
            await asyncio.sleep(max(self._min_pause, took * self._pause_factor))

    async def _run(self) -> None:
        while True:
            try:
                n = await self.run_once()
                if n:
                    log.info("expired dedup records purged", extra={"count": n})
            except StoreError as exc:
                self._on_error()
                log.warning("dedup purge failed, retrying later: %s", exc)
            except Exception:  # a bug must not end the purge for the life of the process
                self._on_error()
                log.error("dedup purge failed unexpectedly, retrying later", exc_info=True)
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        """Stop the task (a batch in flight is abandoned; its transaction is atomic)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
