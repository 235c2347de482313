"""The JSON error shape for answers Starlette makes itself (SPEC section 11): 404, 405, 500.

Every non-2xx answer of every route is ``{"error", "field"?, "detail"?}`` with an
:class:`~fractal_lba_client.ErrorCode`; these handlers cover unknown routes, wrong methods
and unexpected exceptions of the Starlette routes (the submit path builds its own answers).
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba_client import ErrorCode

log = logging.getLogger(LOGGER_NAME)

_CODES = {
    404: (ErrorCode.NOT_FOUND, "no such route"),
    405: (ErrorCode.METHOD_NOT_ALLOWED, "this route does not take that method"),
    408: (ErrorCode.REQUEST_TIMEOUT, "the request was not received in time"),
    413: (ErrorCode.PAYLOAD_TOO_LARGE, "the body is too large"),
    415: (ErrorCode.UNSUPPORTED_MEDIA_TYPE, "unsupported content type"),
}


async def http_error(request: Request, exc: Exception) -> Response:
    """An ``HTTPException`` raised by Starlette's router (404, 405, ...) as a JSON error."""
    assert isinstance(exc, HTTPException)
    code, detail = _CODES.get(exc.status_code, (ErrorCode.INVALID_HEADER, "request refused"))
    return JSONResponse(
        {"error": code, "detail": detail}, status_code=exc.status_code, headers=exc.headers
    )


async def internal_error(request: Request, exc: Exception) -> Response:
    """An unexpected exception: 500 ``internal_error``, never the exception text."""
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": ErrorCode.INTERNAL_ERROR, "detail": "internal error"}, status_code=500
    )


EXCEPTION_HANDLERS = {HTTPException: http_error, Exception: internal_error}
