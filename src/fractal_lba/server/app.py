"""The verifier's ASGI application (SPEC section 4): a lean raw-ASGI submit path in front of a
Starlette app for the cold endpoints.

``POST /v1/pcs/submit`` is dispatched by :class:`VerifierApp` itself (no router, no request
object, one pass over the headers). Steps 1-2 happen here, in this order:

1. tenant resolution (``X-Tenant-Id``; missing in multi-tenant mode -> 400, unknown -> 401);
   daily quota, tenant and global rate -> 429 with ``Retry-After`` and the IETF
   ``RateLimit-Policy``/``RateLimit`` headers (limiter down -> 503); content type -> 415;
   size (Content-Length, then enforced while reading, 64 KiB) -> 413
2. inbox WAL append of the raw body, durable before parsing -> 503 on failure

then :class:`~fractal_lba.server.pipeline.Pipeline` runs steps 3-10. ``GET /health``,
``GET /ready`` and ``GET /metrics`` are ordinary Starlette routes, as are the admin routes
(``Authorization: Bearer <ADMIN_TOKEN>``; 404 when no token is configured):
``POST /v1/admin/reload``, ``GET /v1/tenants/{id}/usage`` and ``GET /v1/audit/lineage/{pcs_id}``.

Tenant reload (admin endpoint or SIGHUP) builds and validates a complete new resolver, then
swaps one reference (:class:`_TenantTable`); a bad file keeps the old configuration.

No global state: everything is built by :func:`create_app` from a :class:`Settings`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import itertools
import logging
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fractal_lba import failpoints
from fractal_lba.audit import AuditEntry, AuditError, AuditLog, lineage_all
from fractal_lba.config import Settings, failpoints_from_env
from fractal_lba.errors import ConfigError, FlkError
from fractal_lba.policy import Policy, default_policy
from fractal_lba.privacy.gate import PiiGate
from fractal_lba.privacy.keys import KeyedHasher, load_or_create_key, local_key_path
from fractal_lba.privacy.policy import PiiSettings
from fractal_lba.server.inbox import Admit, Inbox, adopt_orphans, compact
from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba.server.metrics import Metrics
from fractal_lba.server.pipeline import (
    JSON_HEADERS,
    Pipeline,
    Reply,
    TenantContext,
    error_body,
)
from fractal_lba.server.replay import InboxSink, Replayer
from fractal_lba.stores import DedupStore, Purger, StoreError, create_store
from fractal_lba.tenancy import (
    LimiterUnavailable,
    MissingTenant,
    RateLimiter,
    Tenant,
    TenantResolver,
    UnknownTenant,
    build_resolver,
    create_limiter,
    ratelimit_headers,
)
from fractal_lba.wal import WalError

log = logging.getLogger(LOGGER_NAME)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SUBMIT_PATH = "/v1/pcs/submit"
MAX_BODY = 64 * 1024
BENCH_NULL_PATH = "/v1/bench/null"
BENCH_NULL_ENV = "FLK_BENCH_NULL_ENDPOINT"
"""Benchmark hook: when ``1``, ``POST /v1/bench/null`` reads the body and answers a fixed 200
JSON without any work, so the benchmark can report the submit path as a fraction of this
stack's ceiling (same uvicorn, loop, parser and worker count). Off by default."""
BENCH_STARLETTE_NULL_PATH = "/v1/bench/null-starlette"
"""The same null answer through a Starlette route (with the null endpoint enabled): the
reference stack the performance targets were first set against (Starlette on uvicorn)."""
_NULL_BODY = b'{"accepted":true,"null":true}'
_NULL_HEADERS = (*JSON_HEADERS, (b"content-length", str(len(_NULL_BODY)).encode()))

SUPERVISOR_PID_ENV = "FLK_SUPERVISOR_PID"
"""Set by ``flk serve --workers N`` for its workers: the uvicorn supervisor's PID."""

_ROUTE = "submit"
COMPACT_INTERVAL_S = 3600.0


def _static(status: int, error: str, field: str | None, detail: str) -> Reply:
    return Reply(status, error_body(error, field, detail), reason=error)


_R405 = Reply(
    405,
    error_body("method_not_allowed", None, "use POST"),
    (*JSON_HEADERS, (b"allow", b"POST")),
    reason="method_not_allowed",
)
_R415 = _static(415, "unsupported_media_type", "Content-Type", "must be application/json")
_R413 = _static(413, "payload_too_large", "body", f"at most {MAX_BODY} bytes")
_R400_LENGTH = _static(400, "invalid_header", "Content-Length", "must be a non-negative integer")
_R400_GONE = _static(400, "incomplete_body", "body", "client disconnected before the body ended")
_R401_TENANT = _static(
    401, "unknown_tenant", "X-Tenant-Id", "this server does not serve that tenant"
)
_R400_TENANT = _static(
    400, "missing_tenant", "X-Tenant-Id", "the X-Tenant-Id header is required (multi-tenant)"
)
_R429 = _static(429, "rate_limited", None, "tenant rate limit exceeded")
_R429_QUOTA = _static(429, "quota_exceeded", None, "tenant daily quota exhausted")
_R503_LIMITER = Reply(
    503,
    error_body("limiter_unavailable", None, "rate limiter unavailable; retry later"),
    (*JSON_HEADERS, (b"retry-after", b"1")),
    reason="limiter_unavailable",
)
_R503_WAL = Reply(
    503,
    error_body("wal_unavailable", None, "request could not be made durable; retry later"),
    (*JSON_HEADERS, (b"retry-after", b"1")),
    final=False,
    reason="wal_unavailable",
)


def _is_json(ctype: bytes | None) -> bool:
    if ctype is None:
        return False
    media = ctype.split(b";", 1)[0].strip().lower()
    return media == b"application/json"


AuditFactory = Callable[[int], AuditLog]
"""Audit log of the worker holding ``inbox-<i>`` (each WORM directory has one writer)."""


@dataclass(frozen=True, slots=True)
class _TenantTable:
    """Resolver and per-tenant contexts, swapped together as one reference on reload."""

    resolver: TenantResolver
    contexts: dict[str, TenantContext]


ResolverLoader = Callable[[], TenantResolver]
"""Builds a complete, validated resolver from the configuration (raises ConfigError)."""


@dataclass(frozen=True, slots=True)
class Components:
    """The I/O parts an app is built from (injectable for tests)."""

    store: DedupStore
    audit_for: AuditFactory
    inbox: Inbox


class VerifierApp:
    """ASGI callable: the submit hot path, lifespan, and the cold Starlette routes."""

    def __init__(
        self,
        settings: Settings,
        *,
        components: Components,
        resolver: TenantResolver,
        limiter: RateLimiter,
        registry: CollectorRegistry,
        metrics: Metrics,
        metrics_registry: Callable[[], CollectorRegistry] | None = None,
        clock: Callable[[], float] = time.time,
        bench_null: bool = False,
        reload_resolver: ResolverLoader | None = None,
        supervisor_pid: int | None = None,
    ) -> None:
        self.settings = settings
        self.store = components.store
        self.audit_for = components.audit_for
        self.audit: AuditLog = _NotStartedAudit()
        self.inbox = components.inbox
        self.limiter = limiter
        self.registry = registry
        self.metrics = metrics
        self._metrics_registry = metrics_registry or (lambda: registry)
        self.clock = clock
        # Read once: failpoints are armed at process start (app_from_env), so the hot path
        # pays one attribute test when none is armed.
        self._failpoints = failpoints.armed()
        self._bench_null = bench_null
        self._wal_fsyncs_seen = 0
        self._audit_fsyncs_seen = 0
        self._pii_hasher = KeyedHasher()
        self._pii_default = PiiSettings(
            mode=settings.pii_scan_mode,
            report_only=settings.pii_report_only,
            phone_regions=settings.pii_phone_regions,
        )
        self._table = self._build_table(resolver)
        self._reload_resolver = reload_resolver
        self._supervisor_pid = supervisor_pid
        self._reload_lock = asyncio.Lock()
        self._admin_auth = (
            None if settings.admin_token is None else b"Bearer " + settings.admin_token.reveal()
        )
        self.pipeline = Pipeline(settings, self.store, self.audit, self.metrics, clock)
        self.replayer = Replayer(
            self.pipeline, self.audit, self.metrics, lambda tid: self._table.contexts.get(tid)
        )
        self._sink = InboxSink(self.inbox)
        self._rid_prefix = secrets.token_hex(6) + "-"
        self._rid = itertools.count(1)
        self._started = False
        self._sighup = False
        self._background: set[asyncio.Task[None]] = set()
        self._compactor: asyncio.Task[None] | None = None
        self.purger = Purger(
            self.store,
            interval=settings.dedup_purge_interval,
            batch=settings.dedup_purge_batch,
            on_batch=metrics.on_purge_batch,
            on_error=metrics.dedup_purge_errors.inc,
        )
        self._debug = log.isEnabledFor(logging.DEBUG)
        self._metrics_auth = _basic_auth_value(settings)
        self.cold = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route("/ready", self._ready, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/v1/admin/reload", self._admin_reload, methods=["POST"]),
                Route("/v1/tenants/{tenant_id}/usage", self._tenant_usage, methods=["GET"]),
                Route("/v1/audit/lineage/{pcs_id}", self._audit_lineage, methods=["GET"]),
                *(
                    [Route(BENCH_STARLETTE_NULL_PATH, self._starlette_null, methods=["POST"])]
                    if bench_null
                    else []
                ),
            ]
        )

    # -- tenants ---------------------------------------------------------------------------
    @property
    def resolver(self) -> TenantResolver:
        """The tenant resolver in service (replaced as a whole on reload)."""
        return self._table.resolver

    @property
    def contexts(self) -> dict[str, TenantContext]:
        """Per-tenant hot-path contexts of the resolver in service."""
        return self._table.contexts

    def _build_table(self, resolver: TenantResolver) -> _TenantTable:
        global_limit = self.limiter.global_limited
        contexts = {
            t.id: TenantContext.build(
                t, self.metrics, global_limit=global_limit, pii=self._pii_gate(t)
            )
            for t in resolver.tenants()
        }
        return _TenantTable(resolver, contexts)

    def _pii_gate(self, tenant: Tenant) -> PiiGate | None:
        """The tenant's PII gate: its own ``pii`` table, else the PII_SCAN_MODE default."""
        pii = tenant.pii if tenant.pii is not None else self._pii_default
        return PiiGate.build(tenant.id, pii, self._pii_hasher)

    def _load_pii_key(self, table: _TenantTable) -> None:
        """Load the keyed-hash key once some tenant scans (PII_HASH_KEY, else the local key
        file, created on first use; see :mod:`fractal_lba.privacy.keys`)."""
        if self._pii_hasher.ready or all(c.pii is None for c in table.contexts.values()):
            return
        key = self.settings.pii_hash_key
        self._pii_hasher.set_key(
            key.reveal() if key is not None else load_or_create_key(
                local_key_path(self.settings.data_dir)
            )
        )  # fmt: skip

    async def reload_tenants(self) -> int:
        """Rebuild the tenants from the configuration and swap them in; return their count.

        Everything is built and validated first (file parsing off the event loop); requests
        keep using the old table until the single assignment. Raises ConfigError (old table
        kept) or FlkError when this app has no loader.
        """
        if self._reload_resolver is None:
            raise ConfigError("tenant reload is not available for this app")
        async with self._reload_lock:
            try:
                resolver = await asyncio.to_thread(self._reload_resolver)
                table = self._build_table(resolver)
                await asyncio.to_thread(self._load_pii_key, table)
            except ConfigError as exc:
                self.metrics.tenant_reloads.labels(result="error").inc()
                log.error("tenant reload failed, keeping the previous configuration: %s", exc)
                raise
            self._table = table
        self.metrics.tenant_reloads.labels(result="ok").inc()
        log.info("tenants reloaded", extra={"count": len(table.contexts)})
        return len(table.contexts)

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reload_quietly(), name="flk-reload")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ConfigError):
            await self.reload_tenants()

    # -- ASGI entry ------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"] == SUBMIT_PATH:
            await self._submit(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif self._bench_null and kind == "http" and scope["path"] == BENCH_NULL_PATH:
            await self._null(receive, send)
        else:
            await self.cold(scope, receive, send)

    # -- lifecycle -------------------------------------------------------------------------
    async def startup(self) -> None:
        """Open store, audit and inbox; replay pending admits; start background work."""
        await asyncio.to_thread(self._load_pii_key, self._table)
        await self.store.open()
        try:
            await self.limiter.open()
        except LimiterUnavailable:
            await self.store.close()
            raise
        try:
            pending = await asyncio.to_thread(self.inbox.open)
            self.audit = self.audit_for(self.inbox.index)
            self.pipeline.audit = self.replayer.audit = self.audit
            await self.audit.start()
            self.inbox.start()
            orphans = await asyncio.to_thread(
                adopt_orphans,
                self.settings.wal_root,
                own=self.inbox.directory,
                max_segment_bytes=self.settings.wal_segment_size,
            )
            log.info(
                "verifier starting",
                extra={"worker_dir": str(self.inbox.directory), "backend": self.store.name},
            )
            await self.replayer.replay_startup(pending, self._sink, orphans)
            self.replayer.start()
            self._compactor = asyncio.create_task(self._compact_loop(), name="flk-wal-compact")
            self.purger.start()
            self._install_sighup()
        except BaseException:
            await self._close_all()
            raise
        self._started = True

    async def shutdown(self) -> None:
        """Stop retrying, flush outcome markers, close everything. Idempotent."""
        if not self._started:
            return
        self._started = False
        await self._close_all()

    async def compact_wal(self) -> int:
        """Remove this worker's finished inbox segments older than WAL_RETENTION."""
        report = await asyncio.to_thread(
            compact, self.inbox.log, retention_s=self.settings.wal_retention
        )
        if report.removed:
            self.metrics.wal_compacted.inc(len(report.removed))
            log.info("inbox WAL compacted", extra={"count": len(report.removed)})
        return len(report.removed)

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
        if self._reload_resolver is None or self._sighup:
            return
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (RuntimeError, ValueError, NotImplementedError):
            return
        self._sighup = True

    async def _close_all(self) -> None:
        if self._sighup:
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
            self._compactor = None
        await self.purger.close()
        await self.replayer.close()
        for closer in (self.inbox.close, self.audit.close, self.limiter.close, self.store.close):
            try:
                await closer()
            except (FlkError, OSError):
                log.error("error while shutting down", exc_info=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[VerifierApp]:
        """``async with app.running():`` startup/shutdown around in-process use."""
        await self.startup()
        try:
            yield self
        finally:
            await self.shutdown()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except (FlkError, OSError) as exc:
                    log.critical("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- submit (hot path) -----------------------------------------------------------------
    async def _submit(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        reply, extra, adm = await self._handle(scope, receive)
        self._count_fsyncs()
        length = (b"content-length", str(len(reply.body)).encode())
        headers = (*reply.headers, length) if extra is None else (*reply.headers, length, *extra)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        self.metrics.duration(_ROUTE, reply.status).observe(time.perf_counter() - t0)
        if self._debug:
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

    async def _handle(
        self, scope: Scope, receive: Receive
    ) -> tuple[Reply, tuple[tuple[bytes, bytes], ...] | None, Admit | None]:
        if scope["method"] != "POST":
            return _R405, None, None
        tenant_h = ctype = clen = schema_h = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value
            elif name == b"content-length":
                clen = value
            elif name == b"x-tenant-id":
                tenant_h = value
            elif name == b"x-pcs-schema-version":
                schema_h = value
        # 1. tenant + rate limit, then content type and size: all before the WAL
        table = self._table  # one read: a concurrent reload cannot mix two configurations
        try:
            tenant = table.resolver.resolve(
                None if tenant_h is None else tenant_h.decode("latin-1")
            )
        except UnknownTenant:
            return _R401_TENANT, None, None
        except MissingTenant:
            return _R400_TENANT, None, None
        ctx = table.contexts[tenant.id]
        if ctx.limited:
            try:
                decision = await self.limiter.acquire(tenant)
            except LimiterUnavailable:
                self.metrics.limiter_errors.inc()
                log.error("rate limiter unavailable", extra={"tenant_id": tenant.id})
                return _R503_LIMITER, None, None
            if not decision.allowed:
                ctx.counters.rate_limited.inc()
                if decision.cause == "quota":
                    ctx.counters.quota_exceeded.inc()
                elif decision.cause == "global":
                    self.metrics.global_rate_limited.inc()
                if self._debug:
                    log.debug(
                        "submit refused",
                        extra={"status": 429, "reason": decision.cause, "tenant_id": tenant.id},
                    )
                reply = _R429_QUOTA if decision.cause == "quota" else _R429
                return reply, tuple(ratelimit_headers(decision)), None
        if not _is_json(ctype):
            return _R415, None, None
        if clen is not None:
            if not clen.isdigit():
                return _R400_LENGTH, None, None
            if int(clen) > MAX_BODY:
                return _R413, None, None
        try:
            body = await _read_body(receive, MAX_BODY)
        except _ClientGone:
            return _R400_GONE, None, None
        if body is None:
            return _R413, None, None
        # 2. inbox WAL: durable before anything looks at the body
        adm = Admit(
            self._rid_prefix + format(next(self._rid), "x"),
            tenant.id,
            self.clock(),
            body,
            None if schema_h is None else schema_h.decode("latin-1"),
        )
        try:
            await self.inbox.admit(adm)
        except WalError:
            ctx.counters.wal_errors.inc()
            self.metrics.wal_errors.inc()
            log.error("inbox WAL append failed", extra={"tenant_id": tenant.id}, exc_info=True)
            return _R503_WAL, None, adm
        if self._failpoints:
            failpoints.hit("inbox.after_admit")
        ctx.counters.ingest.inc()
        self.metrics.ingest.inc()
        # 3-10.
        reply = await self.pipeline.process(adm, ctx)
        if reply.final:
            self.inbox.mark_outcome(adm.request_id, reply.status)
        else:
            self.replayer.defer(adm, self._sink)
        return reply, ((b"x-request-id", adm.request_id.encode("ascii")),), adm

    def _count_fsyncs(self) -> None:
        """Move the WAL and audit writers' fsync counts into ``flk_{wal,audit}_fsyncs_total``.

        The writers count on their own threads; syncing the delta per request (before the
        answer goes out) keeps the exported counters exact, in multi-worker mode too.
        """
        n = self.inbox.fsyncs
        if n > self._wal_fsyncs_seen:
            self.metrics.wal_fsyncs.inc(n - self._wal_fsyncs_seen)
            self._wal_fsyncs_seen = n
        audit_n = getattr(getattr(self.audit, "stats", None), "fsyncs", None)
        if isinstance(audit_n, int) and audit_n > self._audit_fsyncs_seen:
            self.metrics.audit_fsyncs.inc(audit_n - self._audit_fsyncs_seen)
            self._audit_fsyncs_seen = audit_n

    async def _null(self, receive: Receive, send: Send) -> None:
        """``POST /v1/bench/null`` (only with FLK_BENCH_NULL_ENDPOINT=1): the stack's ceiling."""
        with contextlib.suppress(_ClientGone):
            await _read_body(receive, MAX_BODY)
        await send({"type": "http.response.start", "status": 200, "headers": _NULL_HEADERS})
        await send({"type": "http.response.body", "body": _NULL_BODY})

    async def _starlette_null(self, request: Request) -> Response:
        """``POST /v1/bench/null-starlette``: the null answer through Starlette's routing."""
        await request.body()
        return Response(_NULL_BODY, media_type="application/json")

    # -- cold endpoints --------------------------------------------------------------------
    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _ready(self, request: Request) -> Response:
        checks: dict[str, str] = {}
        timeout = self.settings.store_op_timeout
        try:
            async with asyncio.timeout(timeout + 0.5):
                await self.store.ping()
            checks["store"] = "ok"
        except (StoreError, TimeoutError) as exc:
            checks["store"] = f"unavailable: {exc}" if str(exc) else "unavailable: timeout"
        try:
            await asyncio.to_thread(self.inbox.check_writable)  # a real write test
            checks["wal"] = "ok"
        except WalError as exc:
            checks["wal"] = f"unavailable: {exc}"
        try:
            await asyncio.to_thread(self.audit.check_writable)  # writes a probe: off the loop
            checks["audit"] = "ok"
        except AuditError as exc:
            checks["audit"] = f"unavailable: {exc}"
        down = sorted(k for k, v in checks.items() if v != "ok")
        body: dict[str, object] = {
            "ready": not down and self._started,
            "checks": checks,
            "deferred": self.replayer.deferred,
        }
        recovery = self.inbox.recovery
        if recovery is not None and recovery.truncated_segment is not None:
            body["wal_recovery"] = recovery.as_dict()  # the torn tail cut at startup
        if not self._started:
            down.append("startup")
        if down:
            body["down"] = down
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse(body)

    async def _metrics(self, request: Request) -> Response:
        expected = self._metrics_auth
        if expected is not None:
            given = request.headers.get("authorization", "").encode("latin-1")
            if not secrets.compare_digest(given, expected):
                return JSONResponse(
                    {"error": "unauthorized", "detail": "metrics need HTTP Basic auth"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="metrics"'},
                )
        data = await asyncio.to_thread(generate_latest, self._metrics_registry())
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    # -- admin endpoints -------------------------------------------------------------------
    def _admin_denied(self, request: Request) -> Response | None:
        """None when the request carries the admin token; else the refusal to send.

        Without ADMIN_TOKEN the admin endpoints do not exist (404), they are never open.
        """
        if self._admin_auth is None:
            return JSONResponse(
                {"error": "not_found", "detail": "admin endpoints are disabled (no ADMIN_TOKEN)"},
                status_code=404,
            )
        given = request.headers.get("authorization", "").encode("latin-1")
        if not secrets.compare_digest(given, self._admin_auth):
            return JSONResponse(
                {"error": "unauthorized", "detail": "admin endpoints need the Bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="admin"'},
            )
        return None

    async def _admin_reload(self, request: Request) -> Response:
        denied = self._admin_denied(request)
        if denied is not None:
            return denied
        try:
            count = await self.reload_tenants()
        except ConfigError as exc:
            return JSONResponse(
                {"error": "invalid_tenants_config", "detail": str(exc), "reloaded": False},
                status_code=400,
            )
        body: dict[str, object] = {"reloaded": True, "tenants": count}
        if self._restart_workers():
            body["workers"] = "rolling restart"
        return JSONResponse(body)

    def _restart_workers(self) -> bool:
        """With ``--workers N`` this worker reloaded alone: ask the uvicorn supervisor (our
        parent, which handles SIGHUP) for a rolling restart so all workers load the file
        this one has just validated. New workers come up before old ones stop."""
        pid = self._supervisor_pid
        if pid is None or pid <= 1 or os.getppid() != pid:
            return False
        os.kill(pid, signal.SIGHUP)
        log.info("asked the supervisor for a rolling restart of the workers")
        return True

    async def _audit_lineage(self, request: Request) -> Response:
        """Every audit entry of a PCS across this server's audit chains (SPEC section 7):
        outcome, policy version, params hash, tenant, timestamps, segment and offset.
        ``?tenant_id=`` scopes it to one tenant."""
        denied = self._admin_denied(request)
        if denied is not None:
            return denied
        pcs_id = request.path_params["pcs_id"]
        if len(pcs_id) != 64 or any(c not in "0123456789abcdef" for c in pcs_id):
            return JSONResponse(
                {"error": "invalid_field", "field": "pcs_id", "detail": "64 lowercase hex"},
                status_code=400,
            )
        tenant_id = request.query_params.get("tenant_id")
        try:
            entries = await asyncio.to_thread(
                lineage_all, self.settings.audit_dir, pcs_id, tenant_id
            )
        except AuditError as exc:
            return JSONResponse({"error": "audit_unavailable", "detail": str(exc)}, 503)
        return JSONResponse({"pcs_id": pcs_id, "tenant_id": tenant_id, "entries": entries})

    async def _tenant_usage(self, request: Request) -> Response:
        denied = self._admin_denied(request)
        if denied is not None:
            return denied
        tenant_id = request.path_params["tenant_id"]
        ctx = self._table.contexts.get(tenant_id)
        if ctx is None:
            return JSONResponse({"error": "unknown_tenant", "field": "tenant_id"}, status_code=404)
        tenant = ctx.tenant
        try:
            use = await self.limiter.usage(tenant)
        except LimiterUnavailable:
            return JSONResponse(
                {"error": "limiter_unavailable"}, status_code=503, headers={"Retry-After": "1"}
            )
        outcomes = await asyncio.to_thread(self._outcomes, tenant_id)
        return JSONResponse(
            {
                "tenant_id": tenant_id,
                "rate": {
                    "token_rate": use.token_rate,
                    "burst": use.bucket_size if use.token_rate > 0 else None,
                    "tokens_left": None if use.tokens_left is None else round(use.tokens_left, 3),
                    "limiter": self.limiter.name,
                },
                "daily_quota": {
                    "limit": use.daily_quota or None,
                    "used": use.quota_used,
                    "remaining": max(0, use.daily_quota - use.quota_used)
                    if use.daily_quota
                    else None,
                    "day": use.day,
                    "resets_in_s": use.quota_resets_in_s,
                },
                "outcomes": outcomes,
                "outcomes_since": "process start (all workers of this server)",
            }
        )

    def _outcomes(self, tenant_id: str) -> dict[str, int]:
        """Counts by outcome from this server's per-tenant counters (all its workers)."""
        names = {
            "flk_accepted_by_tenant_total": "accepted",
            "flk_escalated_by_tenant_total": "escalated",
            "flk_rejected_by_tenant_total": "rejected",
            "flk_dedup_hits_by_tenant_total": "duplicate",
            "flk_rate_limited_by_tenant_total": "rate_limited",
        }
        out = dict.fromkeys(names.values(), 0)
        for family in self._metrics_registry().collect():
            for sample in family.samples:
                key = names.get(sample.name)
                if key is not None and sample.labels.get("tenant_id") == tenant_id:
                    out[key] += int(sample.value)
        return out


def _basic_auth_value(settings: Settings) -> bytes | None:
    if settings.metrics_user is None or settings.metrics_pass is None:
        return None
    raw = settings.metrics_user.encode("utf-8") + b":" + settings.metrics_pass.reveal()
    return b"Basic " + base64.b64encode(raw)


class _ClientGone(Exception):
    """The client disconnected before the whole body arrived."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None as soon as it exceeds ``limit`` bytes.

    Raises :class:`_ClientGone` on a disconnect, so a truncated body is never admitted.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _NotStartedAudit:
    """Placeholder until startup picked this worker's audit directory; fails closed."""

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


def audit_dir_for(settings: Settings, index: int) -> Path:
    """``WORM_BASE_DIR`` for worker 0; ``<WORM_BASE_DIR>-<i>`` for the worker of ``inbox-<i>``.

    Each directory is one hash chain with one writer; ``flk worm verify`` checks each.
    """
    base = settings.audit_dir
    return base if index == 0 else base.with_name(f"{base.name}-{index}")


def worm_audit_factory(settings: Settings) -> AuditFactory:
    """WORM audit logs (SPEC section 7) per worker index, signing key under DATA_DIR/audit."""
    from fractal_lba.audit.worm import open_worm_from_settings

    def make(index: int) -> AuditLog:
        return open_worm_from_settings(
            data_dir=settings.data_dir,
            base_dir=audit_dir_for(settings, index),
            max_segment_bytes=settings.worm_max_segment_size,
            key_path=settings.audit.key_path,
            region_id=settings.region_id,
            chain_root=settings.audit_dir,
        )

    return make


def create_app(
    settings: Settings,
    *,
    store: DedupStore | None = None,
    audit: AuditLog | None = None,
    registry: CollectorRegistry | None = None,
    policy: Policy | None = None,
    limiter: RateLimiter | None = None,
    clock: Callable[[], float] = time.time,
) -> VerifierApp:
    """Build the verifier from ``settings``; I/O parts can be injected (tests wrap them).

    Nothing is opened here: the ASGI lifespan (or :meth:`VerifierApp.running`) does that.
    """
    policy = policy or default_policy()
    resolver, local_key = build_resolver(settings, policy)
    if local_key is not None:
        log.warning(
            "no PCS_HMAC_KEY configured: verifying with the local key file; sign with it or "
            "set PCS_HMAC_KEY",
            extra={"path": str(local_key)},
        )
    if any(t.unsafe_unsigned for t in resolver.tenants()):
        log.warning(
            "UNSAFE: PCS_SIGN_ALG=none, signatures are NOT verified; never use in production"
        )
    if store is None:
        store = create_store(
            settings.dedup_backend,
            data_dir=settings.data_dir,
            redis_url=settings.redis_url.reveal().decode("utf-8"),
            postgres_dsn=settings.postgres_dsn.reveal().decode("utf-8"),
            namespace=settings.dedup_namespace,
            op_timeout=settings.store_op_timeout,
            memory_max_entries=settings.dedup_memory_max_entries,
        )
    if registry is None:
        registry = CollectorRegistry()
    metrics_registry = (
        _multiprocess_registry() if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else None
    )
    metrics = Metrics(registry)
    inbox = Inbox(
        settings.wal_root,
        max_segment_bytes=settings.wal_segment_size,
        on_batch=metrics.on_wal_batch,
    )
    app = VerifierApp(
        settings,
        components=Components(
            store,
            (lambda _i: audit) if audit is not None else worm_audit_factory(settings),
            inbox,
        ),
        resolver=resolver,
        limiter=limiter or create_limiter(settings, clock=clock),
        registry=registry,
        metrics=metrics,
        metrics_registry=metrics_registry,
        clock=clock,
        bench_null=os.environ.get(BENCH_NULL_ENV) == "1",
        # A reload re-reads TENANTS_FILE; the process environment (TENANTS, TOKEN_RATE, ...)
        # cannot change under a running process, so it stays as at startup.
        reload_resolver=lambda: build_resolver(settings, policy)[0],
        supervisor_pid=_supervisor_pid(),
    )
    return app


def _supervisor_pid() -> int | None:
    """PID of the ``flk serve --workers N`` supervisor (set by the CLI), if any."""
    value = os.environ.get(SUPERVISOR_PID_ENV, "")
    return int(value) if value.isdigit() else None


def _multiprocess_registry() -> Callable[[], CollectorRegistry]:
    """With several workers, /metrics aggregates every worker's files (prometheus mmap mode)."""
    from prometheus_client import multiprocess

    def build() -> CollectorRegistry:
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
        return reg

    return build


def app_from_env(settings: Settings | None = None) -> VerifierApp:
    """Factory for ``flk serve`` (and each uvicorn worker): Settings from the environment,
    JSON logging at ``LOG_LEVEL``, then :func:`create_app`."""
    from fractal_lba.server.logs import configure_logging

    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.log_level)
    failpoints.configure(failpoints_from_env())
    app = create_app(settings)
    tune_gc()
    return app


GC_THRESHOLDS = (20_000, 50, 100)
"""Young-generation threshold of a serving process (CPython's default is 700)."""


def tune_gc() -> None:
    """Make the cyclic GC cheaper for a serving process (not for library users or tests).

    Every request allocates a few dozen short-lived containers (futures, dicts, structs) that
    reference counting frees; with the default threshold the collector still ran a young
    collection every ~700 allocations and scanned long-lived objects in the older ones. Objects
    alive after setup are frozen out of collection, and the young threshold is raised.
    Measured: 5-8% less CPU per request (bench/PROFILE.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
