"""Start, replay, compaction and shutdown of one verifier worker (SPEC section 5).

Startup, in order: open the dedup store and the limiter; load the tenants (this is where the
local key file may be created); open this worker's inbox directory and its audit log; adopt
orphan inbox directories of dead workers; replay every admitted request without an outcome;
then start the deferred-retry loop, hourly WAL compaction, the dedup purge and the SIGHUP
tenant reload.
Anything failing closes what was opened. Shutdown stops the background work and closes
everything (idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, MutableMapping, Set
from typing import TYPE_CHECKING, Any

from fractal_lba.audit import AuditEntry, AuditError
from fractal_lba.errors import FlkError
from fractal_lba.server.inbox import adopt_orphans, compact
from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba.tenancy import LimiterUnavailable

if TYPE_CHECKING:
    from fractal_lba.server.app import VerifierApp

log = logging.getLogger(LOGGER_NAME)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

COMPACT_INTERVAL_S = 3600.0


class Lifecycle:
    """Startup and shutdown of a :class:`~fractal_lba.server.app.VerifierApp`."""

    def __init__(self, app: VerifierApp) -> None:
        self.app = app
        self.started = False
        self._sighup = False
        self._background: set[asyncio.Task[None]] = set()
        self._compactor: asyncio.Task[None] | None = None
        self._scrubber: asyncio.Task[None] | None = None
        self._wal_maintenance = asyncio.Lock()
        """Compaction and PII body removal never touch the same segments at once."""

    async def start(self) -> None:
        """Open store, limiter, tenants, inbox and audit; replay pending admits; start the
        background work."""
        app = self.app
        await app.store.open()
        try:
            await app.limiter.open()
        except LimiterUnavailable:
            await app.store.close()
            raise
        try:
            await app.tenants.load()
            pending = await asyncio.to_thread(app.inbox.open)
            app.use_audit(app.audit_for(app.inbox.index))
            await app.audit.start()
            app.inbox.start()
            orphans = await asyncio.to_thread(
                adopt_orphans,
                app.settings.wal_root,
                own=app.inbox.directory,
                max_segment_bytes=app.settings.wal_segment_size,
            )
            log.info(
                "verifier starting",
                extra={"worker_dir": str(app.inbox.directory), "backend": app.store.name},
            )
            await app.replayer.replay_startup(pending, app.sink, orphans)
            app.replayer.start()
            self._compactor = asyncio.create_task(self._compact_loop(), name="flk-wal-compact")
            self._scrubber = asyncio.create_task(self._pii_scrub_loop(), name="flk-wal-pii")
            app.purger.start()
            self._install_sighup()
        except BaseException:
            await self._close_all()
            raise
        self.started = True

    async def stop(self) -> None:
        """Stop retrying, flush outcome markers, close everything. Idempotent."""
        if not self.started:
            return
        self.started = False
        await self._close_all()

    async def compact_wal(self) -> int:
        """Remove this worker's finished inbox segments older than WAL_RETENTION."""
        app = self.app
        async with self._wal_maintenance:
            report = await asyncio.to_thread(
                compact, app.inbox.log, retention_s=app.settings.wal_retention
            )
        if report.removed:
            app.metrics.wal_compacted.inc(len(report.removed))
            log.info("inbox WAL compacted", extra={"count": len(report.removed)})
        return len(report.removed)

    async def scrub_wal(self) -> int:
        """Remove raw bodies that held PII under block/redact from the inbox WAL now."""
        app = self.app
        if not app.inbox.scrub_pending:
            return 0
        async with self._wal_maintenance:
            n = await asyncio.to_thread(app.inbox.scrub_bodies)
        if n:
            app.metrics.pii_wal_scrubbed.inc(n)
            log.info("PII-bearing request bodies removed from the inbox WAL", extra={"count": n})
        return n

    async def _pii_scrub_loop(self) -> None:
        """Every PII_WAL_RETENTION / 2, so a body is gone within the retention of its outcome
        (also the backlog a restart found in the WAL's outcome markers)."""
        interval = max(0.1, self.app.settings.pii_wal_retention / 2)
        while True:
            try:
                await self.scrub_wal()
            except (FlkError, OSError):
                log.error("removing PII bodies from the inbox WAL failed", exc_info=True)
            await asyncio.sleep(interval)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan protocol: startup (a failure is one logged line), shutdown."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except (FlkError, OSError) as exc:
                    log.critical("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _compact_loop(self) -> None:
        """Compact at startup and then every COMPACT_INTERVAL_S (the CLI cannot touch a live
        directory, so the owner does it)."""
        while True:
            try:
                await self.compact_wal()
            except (FlkError, OSError):
                log.error("inbox WAL compaction failed", exc_info=True)
            await asyncio.sleep(COMPACT_INTERVAL_S)

    def _install_sighup(self) -> None:
        """SIGHUP reloads the tenants (only where the loop owns signals: the main thread)."""
        if self._sighup:
            return
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (RuntimeError, ValueError, NotImplementedError):
            return
        self._sighup = True

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(
            self.app.tenants.reload_quietly(), name="flk-reload"
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _close_all(self) -> None:
        app = self.app
        if self._sighup:
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        for task in (self._compactor, self._scrubber):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._compactor = self._scrubber = None
        if app.inbox.scrub_pending:
            try:  # a restart would finish it (the markers say so); do not leave it for that
                await self.scrub_wal()
            except (FlkError, OSError):
                log.error("removing PII bodies from the inbox WAL failed", exc_info=True)
        await app.purger.close()
        await app.replayer.close()
        app.pipeline.close()
        for closer in (app.inbox.close, app.audit.close, app.limiter.close, app.store.close):
            try:
                await closer()
            except (FlkError, OSError):
                log.error("error while shutting down", exc_info=True)


class _NoWrites:
    fsyncs = 0


class NotStartedAudit:
    """The audit log until startup picked this worker's audit directory; fails closed."""

    stats = _NoWrites()

    async def start(self) -> None:
        raise AuditError("audit log is not started")

    async def append(self, entry: AuditEntry) -> AuditEntry:
        raise AuditError("audit log is not started")

    def find_requests(self, request_ids: Set[str], since: float) -> set[str]:
        raise AuditError("audit log is not started")

    def check_writable(self) -> None:
        raise AuditError("audit log is not started")

    async def close(self) -> None:
        return None
