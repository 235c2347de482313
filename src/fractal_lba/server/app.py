"""The verifier's ASGI application (SPEC section 4): a lean raw-ASGI submit path in front of a
Starlette app for the cold endpoints.

:class:`VerifierApp` holds the parts and dispatches: ``POST /v1/pcs/submit`` to
:class:`~fractal_lba.server.submit.SubmitEndpoint` (steps 1-10 as data), the lifespan to
:class:`~fractal_lba.server.lifecycle.Lifecycle`, everything else to the route groups of
:mod:`fractal_lba.server.routes`. No global state: :func:`~fractal_lba.server.factory.create_app`
builds it from a :class:`Settings`, opening nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from fractal_lba import failpoints
from fractal_lba.audit import AuditLog
from fractal_lba.config import Settings
from fractal_lba.server import routes
from fractal_lba.server.admission import MAX_BODY, Admission, ClientGone, read_body
from fractal_lba.server.http_errors import EXCEPTION_HANDLERS
from fractal_lba.server.inbox import Inbox
from fractal_lba.server.lifecycle import Lifecycle, NotStartedAudit
from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba.server.metrics import Metrics
from fractal_lba.server.pipeline import Pipeline
from fractal_lba.server.replay import InboxSink, Replayer
from fractal_lba.server.routes.bench import NULL_BODY
from fractal_lba.server.submission import JSON_HEADERS
from fractal_lba.server.submit import SubmitEndpoint
from fractal_lba.server.tenants import ResolverLoader, Tenants
from fractal_lba.stores import DedupStore, Purger
from fractal_lba.tenancy import RateLimiter

log = logging.getLogger(LOGGER_NAME)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SUBMIT_PATH = "/v1/pcs/submit"
BENCH_NULL_PATH = "/v1/bench/null"
"""Benchmark hook (``FLK_BENCH_NULL_ENDPOINT=1``): reads the body and answers a fixed 200
JSON without any work, so the benchmark can report the submit path as a fraction of this
stack's ceiling (same uvicorn, loop, parser and worker count). Off by default."""
_NULL_HEADERS = (*JSON_HEADERS, (b"content-length", str(len(NULL_BODY)).encode()))

AuditFactory = Callable[[int], AuditLog]
"""Audit log of the worker holding ``inbox-<i>`` (each WORM directory has one writer)."""


@dataclass(frozen=True, slots=True)
class Components:
    """The I/O parts an app is built from (injectable for tests); none is open yet."""

    store: DedupStore
    audit_for: AuditFactory
    inbox: Inbox
    limiter: RateLimiter


class VerifierApp:
    """ASGI callable: the submit hot path, lifespan, and the cold Starlette routes."""

    def __init__(
        self,
        settings: Settings,
        *,
        components: Components,
        load_tenants: ResolverLoader,
        metrics: Metrics,
        metrics_registry: Callable[[], CollectorRegistry],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = components.store
        self.audit_for = components.audit_for
        self.inbox = components.inbox
        self.limiter = components.limiter
        self.audit: AuditLog = NotStartedAudit()
        self.metrics = metrics
        self.registry = metrics.registry
        """This process's own metrics registry."""
        self.metrics_registry = metrics_registry
        """The registry ``/metrics`` exports (all workers' files in multi-worker mode)."""
        self.clock = clock
        self.pipeline = Pipeline(settings, self.store, self.audit, metrics, clock)
        self.tenants = Tenants(
            load_tenants,
            settings,
            metrics,
            self.pipeline.steps_for,
            global_limit=self.limiter.global_limited,
        )
        self.replayer = Replayer(self.pipeline, self.audit, metrics, self.tenants.context)
        self.sink = InboxSink(self.inbox)
        """Outcome markers of this worker's own admits."""
        self.purger = Purger(
            self.store,
            interval=settings.dedup_purge_interval,
            batch=settings.dedup_purge_batch,
            on_batch=metrics.on_purge_batch,
            on_error=metrics.dedup_purge_errors.inc,
        )
        """Removes expired dedup records in bounded batches, off the request path."""
        self.lifecycle = Lifecycle(self)
        self.submit = SubmitEndpoint(
            self,
            Admission(
                self.limiter,
                self.inbox,
                metrics,
                clock,
                failpoints=failpoints.armed(),
                debug=log.isEnabledFor(logging.DEBUG),
            ),
        )
        self._bench_null = settings.bench_null_endpoint
        self.cold = Starlette(routes=routes.mount(self), exception_handlers=EXCEPTION_HANDLERS)

    def use_audit(self, audit: AuditLog) -> None:
        """Startup: the audit log of this worker's inbox directory, for every part."""
        self.audit = self.pipeline.audit = self.replayer.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"] == SUBMIT_PATH:
            await self.submit(scope, receive, send)
        elif kind == "lifespan":
            await self.lifecycle.lifespan(receive, send)
        elif self._bench_null and kind == "http" and scope["path"] == BENCH_NULL_PATH:
            await self._null(receive, send)
        else:
            await self.cold(scope, receive, send)

    async def startup(self) -> None:
        """Open everything and replay (see :class:`~fractal_lba.server.lifecycle.Lifecycle`)."""
        await self.lifecycle.start()

    async def shutdown(self) -> None:
        """Stop background work and close everything. Idempotent."""
        await self.lifecycle.stop()

    async def compact_wal(self) -> int:
        """Remove this worker's finished inbox segments older than WAL_RETENTION."""
        return await self.lifecycle.compact_wal()

    async def reload_tenants(self) -> int:
        """Re-read the tenants configuration and swap it in; return the tenant count."""
        return await self.tenants.reload()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[VerifierApp]:
        """``async with app.running():`` startup/shutdown around in-process use."""
        await self.startup()
        try:
            yield self
        finally:
            await self.shutdown()

    async def _null(self, receive: Receive, send: Send) -> None:
        """``POST /v1/bench/null`` (only with FLK_BENCH_NULL_ENDPOINT=1): the stack's ceiling."""
        with contextlib.suppress(ClientGone):
            await read_body(receive, MAX_BODY)
        await send({"type": "http.response.start", "status": 200, "headers": _NULL_HEADERS})
        await send({"type": "http.response.body", "body": NULL_BODY})
