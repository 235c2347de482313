"""Finishing admitted requests that have no outcome yet (SPEC sections 4 and 5).

Two sources: at startup, the pending admits of this worker's inbox directory and of orphan
directories (dead workers); while running, requests answered 503 because the dedup store or
the audit log was down (deferred). Both run through the same :class:`Pipeline` from step 3.

Before re-running startup records, the audit log is asked which of them were already
audited in the crash window (audit append done, outcome marker not yet on disk): those only
get their marker, so no request is audited twice. The question goes to every audit chain of
the server, not only to the one of the directory's last owner: after a crash during orphan
replay the entries are in the chain of the worker that had adopted the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fractal_lba import failpoints
from fractal_lba.audit import AuditLog
from fractal_lba.server.inbox import Admit, Inbox, OrphanLog, Outcome
from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba.server.metrics import Metrics
from fractal_lba.server.pipeline import Pipeline, Reply, TenantContext, error_body

log = logging.getLogger(LOGGER_NAME)

CHUNK = 64
AUDITED_BEFORE_CRASH = 0
"""Outcome status recorded for a request found already audited (its status is in the audit)."""
CLOCK_SLACK_S = 300.0
"""How far before the oldest pending receive time the audit search starts."""


class OutcomeSink(Protocol):
    """Where the outcome markers of a batch of replayed admits go."""

    async def record(self, outcomes: Sequence[Outcome]) -> None: ...


@dataclass
class InboxSink:
    """Markers of this worker's own admits: piggybacked on the next group commit."""

    inbox: Inbox

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            self.inbox.mark_outcome(o.request_id, o.status, scrub=o.scrub)


@dataclass
class OrphanSink:
    """Markers of an adopted directory go into that directory; released when all are done."""

    orphan: OrphanLog
    remaining: int = 0

    def __post_init__(self) -> None:
        self.remaining = len(self.orphan.pending)

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        await asyncio.to_thread(self.orphan.write_outcomes, outcomes)
        self.remaining -= len(outcomes)
        if self.remaining <= 0:
            self.orphan.log.close()

    def close(self) -> None:
        self.orphan.log.close()


@dataclass
class Replayer:
    """Runs pending admits to completion; keeps the ones that hit an outage for later."""

    pipeline: Pipeline
    audit: AuditLog
    metrics: Metrics
    context_for: Callable[[str], TenantContext | None]
    retry_min_s: float = 0.5
    retry_max_s: float = 5.0
    _deferred: list[tuple[Admit, OutcomeSink]] = field(default_factory=list)
    _orphans: list[OrphanSink] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def deferred(self) -> int:
        """Admitted requests still waiting for an outcome."""
        return len(self._deferred)

    async def replay_startup(
        self,
        own: Sequence[Admit],
        own_sink: OutcomeSink,
        orphans: Sequence[OrphanLog],
    ) -> int:
        """Replay pending admits of this worker and of adopted orphans; return how many.

        Crash-window entries may be in any worker's chain (whoever held the directory when it
        crashed), so ``find_requests`` of the audit log searches all chains of the server.
        """
        sources: list[tuple[Sequence[Admit], OutcomeSink]] = [(own, own_sink)]
        for orphan in orphans:
            orphan_sink = OrphanSink(orphan)
            self._orphans.append(orphan_sink)
            sources.append((orphan.pending, orphan_sink))
        total = 0
        for admits, sink in sources:
            if not admits:
                continue
            since = min(a.received_at for a in admits) - CLOCK_SLACK_S
            ids = {a.request_id for a in admits}
            audited = await asyncio.to_thread(self.audit.find_requests, ids, since)
            done = [
                Outcome(a.request_id, AUDITED_BEFORE_CRASH)
                for a in admits
                if a.request_id in audited
            ]
            if done:
                await sink.record(done)
            todo = [a for a in admits if a.request_id not in audited]
            await self._run(todo, sink)
            total += len(admits)
        log.info("inbox WAL replayed", extra={"count": total})
        return total

    def defer(self, adm: Admit, sink: OutcomeSink) -> None:
        """Keep a request that met an outage; it is retried with backoff."""
        self._deferred.append((adm, sink))
        self._wake.set()

    def start(self) -> None:
        """Start the background retry loop."""
        self._task = asyncio.create_task(self._loop(), name="flk-deferred-retry")

    async def close(self) -> None:
        """Stop retrying; what is still deferred stays pending in the WAL for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sink in self._orphans:
            sink.close()

    async def _loop(self) -> None:
        delay = self.retry_min_s
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._deferred:
                await asyncio.sleep(delay)
                batch, self._deferred = self._deferred, []
                before = len(batch)
                for sink, admits in _group(batch):
                    await self._run(admits, sink)
                delay = (
                    self.retry_min_s
                    if len(self._deferred) < before
                    else min(self.retry_max_s, delay * 2)
                )

    async def _run(self, admits: Sequence[Admit], sink: OutcomeSink) -> None:
        """Process in concurrent chunks (sharing group commits); stop at the first outage."""
        for start in range(0, len(admits), CHUNK):
            chunk = admits[start : start + CHUNK]
            replies = await asyncio.gather(*(self._one(a) for a in chunk))
            finals = [
                Outcome(a.request_id, r.status, r.scrub)
                for a, r in zip(chunk, replies, strict=True)
                if r.final
            ]
            if finals:
                self.metrics.replayed.inc(len(finals))
                await sink.record(finals)
            failed = [a for a, r in zip(chunk, replies, strict=True) if not r.final]
            if failed:
                for a in (*failed, *admits[start + CHUNK :]):
                    self.defer(a, sink)
                return

    async def _one(self, adm: Admit) -> Reply:
        ctx = self.context_for(adm.tenant)
        if ctx is None:
            # The tenant is gone from the configuration: answer as step 1 would have.
            return Reply(401, error_body("unknown_tenant", "X-Tenant-Id"), reason="unknown_tenant")
        reply = await self.pipeline.process(adm, ctx)
        if reply.final:
            failpoints.hit("replay.after_audit")
        return reply


def _group(batch: list[tuple[Admit, OutcomeSink]]) -> list[tuple[OutcomeSink, list[Admit]]]:
    groups: dict[int, tuple[OutcomeSink, list[Admit]]] = {}
    for adm, sink in batch:
        groups.setdefault(id(sink), (sink, []))[1].append(adm)
    return list(groups.values())
