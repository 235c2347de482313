"""Tenant administration (Bearer ``ADMIN_TOKEN``): ``POST /v1/admin/reload`` re-reads
TENANTS_FILE, ``GET /v1/tenants/{tenant_id}/usage`` reports limits left and outcomes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fractal_lba.errors import ConfigError
from fractal_lba.server.auth import admin_denied, bearer_value
from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba.tenancy import LimiterUnavailable

if TYPE_CHECKING:
    from fractal_lba.server.app import VerifierApp

log = logging.getLogger(LOGGER_NAME)

_OUTCOME_COUNTERS = {
    "flk_accepted_by_tenant_total": "accepted",
    "flk_escalated_by_tenant_total": "escalated",
    "flk_rejected_by_tenant_total": "rejected",
    "flk_dedup_hits_by_tenant_total": "duplicate",
    "flk_rate_limited_by_tenant_total": "rate_limited",
}


def routes(app: VerifierApp) -> list[BaseRoute]:
    """``/v1/admin/reload`` and ``/v1/tenants/{tenant_id}/usage``."""
    auth = bearer_value(app.settings)

    async def reload(request: Request) -> Response:
        denied = admin_denied(request, auth)
        if denied is not None:
            return denied
        try:
            count = await app.tenants.reload()
        except ConfigError as exc:
            return JSONResponse(
                {"error": "invalid_tenants_config", "detail": str(exc), "reloaded": False},
                status_code=400,
            )
        body: dict[str, object] = {"reloaded": True, "tenants": count}
        if restart_workers(app.settings.supervisor_pid):
            body["workers"] = "rolling restart"
        return JSONResponse(body)

    async def usage(request: Request) -> Response:
        denied = admin_denied(request, auth)
        if denied is not None:
            return denied
        tenant_id = request.path_params["tenant_id"]
        ctx = app.tenants.context(tenant_id)
        if ctx is None:
            return JSONResponse({"error": "unknown_tenant", "field": "tenant_id"}, status_code=404)
        try:
            use = await app.limiter.usage(ctx.tenant)
        except LimiterUnavailable:
            return JSONResponse(
                {"error": "limiter_unavailable"}, status_code=503, headers={"Retry-After": "1"}
            )
        outcomes = await asyncio.to_thread(outcome_counts, app.metrics_registry(), tenant_id)
        return JSONResponse(
            {
                "tenant_id": tenant_id,
                "rate": {
                    "token_rate": use.token_rate,
                    "burst": use.bucket_size if use.token_rate > 0 else None,
                    "tokens_left": None if use.tokens_left is None else round(use.tokens_left, 3),
                    "limiter": app.limiter.name,
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

    return [
        Route("/v1/admin/reload", reload, methods=["POST"]),
        Route("/v1/tenants/{tenant_id}/usage", usage, methods=["GET"]),
    ]


def restart_workers(supervisor_pid: int | None) -> bool:
    """With ``--workers N`` this worker reloaded alone: ask the uvicorn supervisor (our
    parent, which handles SIGHUP) for a rolling restart so all workers load the file
    this one has just validated. New workers come up before old ones stop."""
    pid = supervisor_pid
    if pid is None or pid <= 1 or os.getppid() != pid:
        return False
    os.kill(pid, signal.SIGHUP)
    log.info("asked the supervisor for a rolling restart of the workers")
    return True


def outcome_counts(registry: CollectorRegistry, tenant_id: str) -> dict[str, int]:
    """Counts by outcome from this server's per-tenant counters (all its workers)."""
    out = dict.fromkeys(_OUTCOME_COUNTERS.values(), 0)
    for family in registry.collect():
        for sample in family.samples:
            key = _OUTCOME_COUNTERS.get(sample.name)
            if key is not None and sample.labels.get("tenant_id") == tenant_id:
                out[key] += int(sample.value)
    return out
