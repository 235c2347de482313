"""Steps 1-2 of the submit path (SPEC section 4): everything before the body is looked at.

:data:`ADMISSION_STEPS`, in order (live requests only; a replayed request was admitted):

1. ``tenant_resolution`` (``X-Tenant-Id``; missing in multi-tenant mode -> 400, unknown ->
   401); ``tenant_rate_limit``: daily quota, tenant and global rate -> 429 with
   ``Retry-After`` and the IETF ``RateLimit-Policy``/``RateLimit`` headers (limiter down ->
   503) — charged here, before the signature, until issue 17 moves it to step 5b;
   ``content_type`` -> 415; ``body``: size (Content-Length, then enforced while reading,
   64 KiB) -> 413
2. ``inbox_wal_append`` of the raw body, durable before parsing -> 503 on failure

A step function takes the :class:`Admission` (what the steps use) and the request's
:class:`Arrival`, and returns None to go on or the :class:`Reply` that ends the request.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from fractal_lba import failpoints
from fractal_lba.server.inbox import Admit, Inbox
from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba.server.metrics import Metrics
from fractal_lba.server.step import Step
from fractal_lba.server.submission import (
    JSON_HEADERS,
    Headers,
    Reply,
    TenantContext,
    error_body,
    static_reply,
)
from fractal_lba.server.tenants import TenantTable
from fractal_lba.tenancy import (
    LimiterUnavailable,
    MissingTenant,
    RateLimiter,
    UnknownTenant,
    ratelimit_headers,
)
from fractal_lba.wal import WalError

log = logging.getLogger(LOGGER_NAME)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

MAX_BODY = 64 * 1024

R415 = static_reply(415, "unsupported_media_type", "Content-Type", "must be application/json")
R413 = static_reply(413, "payload_too_large", "body", f"at most {MAX_BODY} bytes")
R400_LENGTH = static_reply(
    400, "invalid_header", "Content-Length", "must be a non-negative integer"
)
R400_GONE = static_reply(
    400, "incomplete_body", "body", "client disconnected before the body ended"
)
R401_TENANT = static_reply(
    401, "unknown_tenant", "X-Tenant-Id", "this server does not serve that tenant"
)
R400_TENANT = static_reply(
    400, "missing_tenant", "X-Tenant-Id", "the X-Tenant-Id header is required (multi-tenant)"
)
R429 = static_reply(429, "rate_limited", None, "tenant rate limit exceeded")
R429_QUOTA = static_reply(429, "quota_exceeded", None, "tenant daily quota exhausted")
R503_LIMITER = Reply(
    503,
    error_body("limiter_unavailable", None, "rate limiter unavailable; retry later"),
    (*JSON_HEADERS, (b"retry-after", b"1")),
    reason="limiter_unavailable",
)
R503_WAL = Reply(
    503,
    error_body("wal_unavailable", None, "request could not be made durable; retry later"),
    (*JSON_HEADERS, (b"retry-after", b"1")),
    final=False,
    reason="wal_unavailable",
)


class Arrival:
    """One request on its way through steps 1-2: the headers the steps read (from one pass
    over the ASGI headers), then what the steps found."""

    __slots__ = (
        "admit",
        "body",
        "content_length",
        "content_type",
        "ctx",
        "extra_headers",
        "receive",
        "schema_header",
        "table",
        "tenant_header",
    )  # fmt: skip

    def __init__(self, receive: Receive, table: TenantTable, headers: list[tuple[bytes, bytes]]):
        self.receive = receive
        self.table = table
        """Read once: a concurrent reload cannot mix two configurations in one request."""
        tenant = ctype = clen = schema = None
        for name, value in headers:
            if name == b"content-type":
                ctype = value
            elif name == b"content-length":
                clen = value
            elif name == b"x-tenant-id":
                tenant = value
            elif name == b"x-pcs-schema-version":
                schema = value
        self.tenant_header: bytes | None = tenant
        self.content_type: bytes | None = ctype
        self.content_length: bytes | None = clen
        self.schema_header: bytes | None = schema
        self.ctx: TenantContext | None = None
        self.body = b""
        self.admit: Admit | None = None
        self.extra_headers: Headers | None = None
        """Headers added to the answer (the RateLimit headers of a 429)."""


@dataclass
class Admission:
    """What steps 1-2 use: the limiter, this worker's inbox, metrics, clock, request ids."""

    limiter: RateLimiter
    inbox: Inbox
    metrics: Metrics
    clock: Callable[[], float]
    failpoints: bool = False
    """Whether fault injection is armed (read once at construction; tests only)."""
    debug: bool = False
    _rid_prefix: str = field(default_factory=lambda: secrets.token_hex(6) + "-")
    _rid: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def request_id(self) -> str:
        """A process-unique request id (random worker prefix + counter)."""
        return self._rid_prefix + format(next(self._rid), "x")


AdmissionStepFn: TypeAlias = Callable[[Admission, Arrival], Awaitable[Reply | None]]


async def tenant_resolution(a: Admission, r: Arrival) -> Reply | None:
    """Step 1: the tenant of ``X-Tenant-Id`` (400 missing in multi-tenant mode, 401 unknown)."""
    header = r.tenant_header
    try:
        tenant = r.table.resolver.resolve(None if header is None else header.decode("latin-1"))
    except UnknownTenant:
        return R401_TENANT
    except MissingTenant:
        return R400_TENANT
    r.ctx = r.table.contexts[tenant.id]
    return None


async def tenant_rate_limit(a: Admission, r: Arrival) -> Reply | None:
    """Daily quota, tenant and global rate (429 with RateLimit headers; limiter down: 503)."""
    ctx = r.ctx
    assert ctx is not None
    if not ctx.limited:
        return None
    tenant = ctx.tenant
    try:
        decision = await a.limiter.acquire(tenant)
    except LimiterUnavailable:
        a.metrics.limiter_errors.inc()
        log.error("rate limiter unavailable", extra={"tenant_id": tenant.id})
        return R503_LIMITER
    if decision.allowed:
        return None
    ctx.counters.rate_limited.inc()
    if decision.cause == "quota":
        ctx.counters.quota_exceeded.inc()
    elif decision.cause == "global":
        a.metrics.global_rate_limited.inc()
    if a.debug:
        log.debug(
            "submit refused",
            extra={"status": 429, "reason": decision.cause, "tenant_id": tenant.id},
        )
    r.extra_headers = tuple(ratelimit_headers(decision))
    return R429_QUOTA if decision.cause == "quota" else R429


async def content_type(a: Admission, r: Arrival) -> Reply | None:
    """``application/json`` (any parameters) or 415."""
    ctype = r.content_type
    if ctype is None or ctype.split(b";", 1)[0].strip().lower() != b"application/json":
        return R415
    return None


async def body(a: Admission, r: Arrival) -> Reply | None:
    """The body, at most 64 KiB (Content-Length checked first, then counted while reading)."""
    clen = r.content_length
    if clen is not None:
        if not clen.isdigit():
            return R400_LENGTH
        if int(clen) > MAX_BODY:
            return R413
    try:
        data = await read_body(r.receive, MAX_BODY)
    except ClientGone:
        return R400_GONE
    if data is None:
        return R413
    r.body = data
    return None


async def inbox_wal_append(a: Admission, r: Arrival) -> Reply | None:
    """Step 2: the raw body, tenant and receive time durable (fsync) before parsing; or 503."""
    ctx = r.ctx
    assert ctx is not None
    schema = r.schema_header
    adm = Admit(
        a.request_id(),
        ctx.tenant.id,
        a.clock(),
        r.body,
        None if schema is None else schema.decode("latin-1"),
    )
    r.admit = adm
    try:
        await a.inbox.admit(adm)
    except WalError:
        ctx.counters.wal_errors.inc()
        a.metrics.wal_errors.inc()
        log.error("inbox WAL append failed", extra={"tenant_id": ctx.tenant.id}, exc_info=True)
        return R503_WAL
    if a.failpoints:
        failpoints.hit("inbox.after_admit")
    ctx.counters.ingest.inc()
    a.metrics.ingest.inc()
    return None


ADMISSION_STEPS: tuple[Step[AdmissionStepFn], ...] = (
    Step("1", "tenant_resolution", tenant_resolution),
    # SPEC: step 5b (after the signature); here until issue 17 adds the per-address
    # admission limit of step 1 and moves the tenant's own limits after authentication.
    Step("5b", "tenant_rate_limit", tenant_rate_limit),
    Step("1", "content_type", content_type),
    Step("1", "body", body),
    Step("2", "inbox_wal_append", inbox_wal_append),
)
"""Steps 1-2 in the order they run."""


class ClientGone(Exception):
    """The client disconnected before the whole body arrived."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None as soon as it exceeds ``limit`` bytes.

    Raises :class:`ClientGone` on a disconnect, so a truncated body is never admitted.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
