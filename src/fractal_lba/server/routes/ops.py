"""Operations endpoints: ``GET /health`` (liveness), ``GET /ready`` (SPEC section 5: the dedup
store answers, the WAL and the audit log can append, startup replay is done) and
``GET /metrics`` (Prometheus text, HTTP Basic auth when configured)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fractal_lba.audit import AuditError
from fractal_lba.server.auth import basic_auth_value, metrics_denied
from fractal_lba.server.submission import ACCEPTED_VERSIONS, ACCEPTED_VERSIONS_HEADER
from fractal_lba.stores import StoreError
from fractal_lba.wal import WalError
from fractal_lba_client import ErrorCode

if TYPE_CHECKING:
    from fractal_lba.server.app import VerifierApp


def routes(app: VerifierApp) -> list[BaseRoute]:
    """``/health``, ``/ready``, ``/metrics``."""
    metrics_auth = basic_auth_value(app.settings)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers={ACCEPTED_VERSIONS_HEADER: ACCEPTED_VERSIONS})

    async def ready(request: Request) -> Response:
        checks: dict[str, str] = {}
        timeout = app.settings.store_op_timeout
        try:
            async with asyncio.timeout(timeout + 0.5):
                await app.store.ping()
            checks["store"] = "ok"
        except (StoreError, TimeoutError) as exc:
            checks["store"] = f"unavailable: {exc}" if str(exc) else "unavailable: timeout"
        try:
            await asyncio.to_thread(app.inbox.check_writable)  # a real write test
            checks["wal"] = "ok"
        except WalError as exc:
            checks["wal"] = f"unavailable: {exc}"
        try:
            await asyncio.to_thread(app.audit.check_writable)  # writes a probe: off the loop
            checks["audit"] = "ok"
        except AuditError as exc:
            checks["audit"] = f"unavailable: {exc}"
        started = app.lifecycle.started
        down = sorted(k for k, v in checks.items() if v != "ok")
        body: dict[str, object] = {
            "ready": not down and started,
            "checks": checks,
            "deferred": app.replayer.deferred,
        }
        recovery = app.inbox.recovery
        if recovery is not None and recovery.truncated_segment is not None:
            body["wal_recovery"] = recovery.as_dict()  # the torn tail cut at startup
        if not started:
            down.append("startup")
        if down:
            body["down"] = down
            body["error"] = ErrorCode.NOT_READY
            body["detail"] = "not ready: " + ", ".join(down)
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse(body)

    async def metrics(request: Request) -> Response:
        denied = metrics_denied(request, metrics_auth)
        if denied is not None:
            return denied
        data = await asyncio.to_thread(generate_latest, app.metrics_registry())
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
