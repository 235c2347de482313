"""Credentials of the cold endpoints: HTTP Basic for ``/metrics`` (when METRICS_USER/
METRICS_PASS are set) and ``Authorization: Bearer <ADMIN_TOKEN>`` for the admin endpoints.

The expected header values are built once from Settings and compared in constant time.
Without ADMIN_TOKEN the admin endpoints do not exist (404); they are never open.
"""

from __future__ import annotations

import base64
import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fractal_lba.config import Settings


def basic_auth_value(settings: Settings) -> bytes | None:
    """``Basic base64(user:pass)`` of the metrics credentials, or None (no auth)."""
    if settings.metrics_user is None or settings.metrics_pass is None:
        return None
    raw = settings.metrics_user.encode("utf-8") + b":" + settings.metrics_pass.reveal()
    return b"Basic " + base64.b64encode(raw)


def bearer_value(settings: Settings) -> bytes | None:
    """``Bearer <ADMIN_TOKEN>``, or None when no admin token is configured."""
    token = settings.admin_token
    return None if token is None else b"Bearer " + token.reveal()


def _given(request: Request) -> bytes:
    return request.headers.get("authorization", "").encode("latin-1")


def metrics_denied(request: Request, expected: bytes | None) -> Response | None:
    """None when ``/metrics`` may answer; else the 401 to send."""
    if expected is None or secrets.compare_digest(_given(request), expected):
        return None
    return JSONResponse(
        {"error": "unauthorized", "detail": "metrics need HTTP Basic auth"},
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="metrics"'},
    )


def admin_denied(request: Request, expected: bytes | None) -> Response | None:
    """None when the request carries the admin token; else the refusal to send (404 when
    admin endpoints are disabled, 401 otherwise)."""
    if expected is None:
        return JSONResponse(
            {"error": "not_found", "detail": "admin endpoints are disabled (no ADMIN_TOKEN)"},
            status_code=404,
        )
    if not secrets.compare_digest(_given(request), expected):
        return JSONResponse(
            {"error": "unauthorized", "detail": "admin endpoints need the Bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="admin"'},
        )
    return None
