"""``POST /v1/pcs/submit``: the raw-ASGI hot path (no router, no request object, one pass
over the headers; raw ASGI was chosen for speed and measured, bench/PROFILE.md).

:data:`SUBMIT_PATH` is the whole submit path of SPEC section 4 as data: the admission steps
1-2 (:mod:`fractal_lba.server.admission`), then the pipeline steps 3-10
(:mod:`fractal_lba.server.pipeline`), each a named :class:`~fractal_lba.server.step.Step`.
After the pipeline answered, the request's WAL record gets its outcome marker, or, after an
outage (a non-final 503), the request is handed to the replayer to be retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from fractal_lba.server.admission import ADMISSION_STEPS, Admission, Arrival, Receive
from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba.server.pipeline import PIPELINE_STEPS
from fractal_lba.server.step import Step
from fractal_lba.server.submission import JSON_HEADERS, Reply, error_body

if TYPE_CHECKING:
    from fractal_lba.server.app import VerifierApp

log = logging.getLogger(LOGGER_NAME)

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SUBMIT_PATH: tuple[Step[Any], ...] = (*ADMISSION_STEPS, *PIPELINE_STEPS)
"""Every step of the submit path in the order it runs (held against SPEC section 4)."""

_ROUTE = "submit"
_R405 = Reply(
    405,
    error_body("method_not_allowed", None, "use POST"),
    (*JSON_HEADERS, (b"allow", b"POST")),
    reason="method_not_allowed",
)


class SubmitEndpoint:
    """The submit path of one app: admission, pipeline, outcome marker, response, metrics."""

    def __init__(self, app: VerifierApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission
        self._steps = tuple(step.run for step in ADMISSION_STEPS)
        self._wal_fsyncs_seen = 0
        self._audit_fsyncs_seen = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        reply, r = await self.handle(scope, receive)
        self._count_fsyncs()
        extra = None if r is None else r.extra_headers
        length = (b"content-length", str(len(reply.body)).encode())
        headers = (*reply.headers, length) if extra is None else (*reply.headers, length, *extra)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        self.app.metrics.duration(_ROUTE, reply.status).observe(time.perf_counter() - t0)
        if self.admission.debug:
            adm = None if r is None else r.admit
            log.debug(
                "submit",
                extra={
                    "status": reply.status,
                    "reason": reply.reason,
                    "pcs_id": reply.pcs_id,
                    "tenant_id": adm.tenant if adm else None,
                    "request_id": adm.request_id if adm else None,
                    "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
                },
            )

    async def handle(self, scope: Scope, receive: Receive) -> tuple[Reply, Arrival | None]:
        """Run steps 1-10 for one request; the answer and what admission found."""
        if scope["method"] != "POST":
            return _R405, None
        app = self.app
        r = Arrival(receive, app.tenants.table, scope["headers"])
        a = self.admission
        for step in self._steps:
            reply = await step(a, r)
            if reply is not None:
                return reply, r
        adm, ctx = r.admit, r.ctx
        assert adm is not None and ctx is not None
        r.extra_headers = ((b"x-request-id", adm.request_id.encode("ascii")),)
        reply = await app.pipeline.process(adm, ctx)
        if reply.final:
            a.inbox.mark_outcome(
                adm.request_id, reply.status, scrub=reply.scrub, received_at=adm.received_at
            )
        else:
            app.replayer.defer(adm, app.sink)
        return reply, r

    def _count_fsyncs(self) -> None:
        """Move the WAL and audit writers' fsync counts into ``flk_{wal,audit}_fsyncs_total``.

        The writers count on their own threads; syncing the delta per request (before the
        answer goes out) keeps the exported counters exact, in multi-worker mode too.
        """
        app = self.app
        n = self.admission.inbox.fsyncs
        if n > self._wal_fsyncs_seen:
            app.metrics.wal_fsyncs.inc(n - self._wal_fsyncs_seen)
            self._wal_fsyncs_seen = n
        audit_n = app.audit.stats.fsyncs
        if audit_n > self._audit_fsyncs_seen:
            app.metrics.audit_fsyncs.inc(audit_n - self._audit_fsyncs_seen)
            self._audit_fsyncs_seen = audit_n
