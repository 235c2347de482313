"""WAL checkpoints of the SQLite dedup store, off the store thread.

SQLite's automatic checkpoint runs inside the COMMIT of whichever write crosses 1000 WAL
pages: it copies those pages into the database file and fsyncs it, on the store thread, so
every request queued behind that commit waits. Dedup keys are random, so every insert (and
every purged row) dirties another page somewhere in the file; on a store of millions of rows
a checkpoint writes pages all over a multi-GB file and took 50-250 ms, once every dozen
commits (and seconds on a cold cache): p99 grew with the store, not with the load.

So the store connection turns the automatic checkpoint off (``wal_autocheckpoint = 0``) and
a :class:`Checkpointer` thread with its own connection does the work:

* every ``interval`` a ``PASSIVE`` checkpoint: copies every frame no reader still needs and
  fsyncs, without taking the write lock, while the store keeps committing into the WAL;
* once a pass has copied every frame, the next commit starts the WAL file from its beginning
  again, and ``journal_size_limit`` cuts the file back;
* a writer that commits while a pass runs leaves it a few frames short, and the WAL only
  restarts when a pass completes; so when the WAL holds more than ``restart_frames`` frames
  and the pass left at most ``tail_frames`` uncopied, a ``RESTART`` checkpoint copies that
  short tail under the write lock (the store thread retries its lock every 0.1-1 ms
  meanwhile). The WAL stays bounded: about ``restart_frames`` pages plus one interval of
  writes.

Several worker processes on one file each run one; SQLite lets one checkpoint run at a time
and the others just find it busy and try again at their next tick.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("fractal_lba.stores")

WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""``journal_size_limit`` of the store connection: the WAL file is cut back to this."""


class Checkpointer:
    """A daemon thread checkpointing one SQLite database in WAL mode."""

    def __init__(
        self,
        path: Path,
        *,
        interval: float = 0.2,
        restart_frames: int = 4096,
        tail_frames: int = 512,
        restart_wait: float = 0.05,
    ) -> None:
        self._path = path
        self._interval = interval
        self._restart_frames = restart_frames
        self._tail_frames = tail_frames
        self._restart_wait_ms = max(1, int(restart_wait * 1000))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.passes = 0
        """PASSIVE checkpoints run (for tests and benchmarks)."""
        self.restarts = 0
        """RESTART checkpoints that completed."""

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"flk-sqlite-checkpoint-{self._path.name}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop and join the thread; a checkpoint in progress finishes first."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def checkpoint(self) -> tuple[int, int]:
        """One round (PASSIVE, then RESTART when due); return (WAL frames, frames copied).

        Runs on the checkpointer thread, or in tests directly. Raises ``sqlite3.Error``.
        """
        conn = self._connect()
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.passes += 1
        behind = frames - copied
        # Caught up: the next commit restarts the WAL by itself. Far behind: keep copying
        # without the lock. Only a short tail of a long WAL is worth blocking writers for.
        if busy or frames < self._restart_frames or not 0 < behind <= self._tail_frames:
            return frames, copied
        conn.execute(f"PRAGMA busy_timeout = {self._restart_wait_ms}")
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        finally:
            conn.execute("PRAGMA busy_timeout = 0")
        if not busy:
            self.restarts += 1
        return frames, copied

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                try:
                    self.checkpoint()
                except sqlite3.Error as exc:  # the store reports outages; retry next tick
                    log.debug("sqlite checkpoint failed: %s", type(exc).__name__)
                    self._disconnect()
        finally:
            self._disconnect()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 0")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
