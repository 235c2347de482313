"""Audit queries (Bearer ``ADMIN_TOKEN``, SPEC section 7): ``GET /v1/audit/lineage/{pcs_id}``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fractal_lba.audit import AuditError, lineage_all
from fractal_lba.server.auth import admin_denied, bearer_value
from fractal_lba.tenancy.tenants_file import TENANT_ID

if TYPE_CHECKING:
    from fractal_lba.server.app import VerifierApp

_HEX = frozenset("0123456789abcdef")


def routes(app: VerifierApp) -> list[BaseRoute]:
    """``/v1/audit/lineage/{pcs_id}``."""
    auth = bearer_value(app.settings)

    async def lineage(request: Request) -> Response:
        """Every audit entry of a PCS across this server's audit chains: outcome, policy
        version, params hash, tenant, timestamps, segment and offset. ``?tenant_id=`` scopes
        it to one tenant."""
        denied = admin_denied(request, auth)
        if denied is not None:
            return denied
        pcs_id = request.path_params["pcs_id"]
        if len(pcs_id) != 64 or not _HEX.issuperset(pcs_id):
            return JSONResponse(
                {"error": "invalid_field", "field": "pcs_id", "detail": "64 lowercase hex"},
                status_code=400,
            )
        if set(request.query_params) - {"tenant_id"}:
            return JSONResponse(
                {"error": "unknown_field", "field": "query", "detail": "only tenant_id"},
                status_code=400,
            )
        tenant_id = request.query_params.get("tenant_id")
        if tenant_id is not None and not TENANT_ID.fullmatch(tenant_id):
            return JSONResponse(
                {"error": "invalid_field", "field": "tenant_id", "detail": "not a tenant id"},
                status_code=400,
            )
        try:
            entries = await asyncio.to_thread(
                lineage_all, app.settings.audit_dir, pcs_id, tenant_id
            )
        except AuditError as exc:
            return JSONResponse({"error": "audit_unavailable", "detail": str(exc)}, 503)
        return JSONResponse({"pcs_id": pcs_id, "tenant_id": tenant_id, "entries": entries})

    return [Route("/v1/audit/lineage/{pcs_id}", lineage, methods=["GET"])]
