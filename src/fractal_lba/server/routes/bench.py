"""The benchmark's Starlette null endpoint (only with ``FLK_BENCH_NULL_ENDPOINT=1``).

``POST /v1/bench/null-starlette`` answers the same fixed JSON as the raw-ASGI
``POST /v1/bench/null`` (:mod:`fractal_lba.server.app`), through Starlette's routing: the
reference stack the performance targets were first set against (Starlette on uvicorn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from fractal_lba.server.app import VerifierApp

BENCH_STARLETTE_NULL_PATH = "/v1/bench/null-starlette"
NULL_BODY = b'{"accepted":true,"null":true}'


def routes(app: VerifierApp) -> list[BaseRoute]:
    """The Starlette null route when the benchmark hook is on; none otherwise."""
    if not app.settings.bench_null_endpoint:
        return []

    async def null(request: Request) -> Response:
        await request.body()
        return Response(NULL_BODY, media_type="application/json")

    return [Route(BENCH_STARLETTE_NULL_PATH, null, methods=["POST"])]
