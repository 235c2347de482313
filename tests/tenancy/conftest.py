"""Fixtures of the tenancy tests: tenants files, fake clocks, in-process multi-tenant apps.

Reuses the verifier test helpers (PCS builders, ListAudit, ServerProcess) from
``tests/server/server_helpers.py``; the service fixtures (``redis_url``, ``postgres_dsn``,
``namespace``: skip when unreachable, fail under ``FLK_REQUIRE_SERVICES=1``) come from
``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import ListAudit
from tenancy_helpers import FakeClock

from fractal_lba.config import Settings
from fractal_lba.server import VerifierApp, create_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class App:
    """A running in-process verifier and an httpx client on it."""

    def __init__(self, app: VerifierApp, audit: ListAudit) -> None:
        self.app = app
        self.audit = audit
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://verifier"
        )

    async def submit(self, content: bytes, tenant: str | None) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if tenant is not None:
            headers["x-tenant-id"] = tenant
        return await self.client.post("/v1/pcs/submit", content=content, headers=headers)


@pytest.fixture
def make_app(tmp_path: Path, namespace: str) -> Callable[..., Any]:
    """``async with make_app(clock=..., **env) as a:`` -> a running :class:`App`."""

    @contextlib.asynccontextmanager
    async def make(clock: Callable[[], float] | None = None, **env: str) -> AsyncIterator[App]:
        base = {
            "DATA_DIR": str(tmp_path / "data"),
            "DEDUP_BACKEND": "memory",
            "DEDUP_NAMESPACE": namespace,
        }
        settings = Settings.from_env({**base, **env})
        audit = ListAudit()
        kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
        app = create_app(settings, audit=audit, **kwargs)
        async with app.running():
            a = App(app, audit)
            try:
                yield a
            finally:
                await a.client.aclose()

    return make
