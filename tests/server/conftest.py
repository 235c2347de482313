"""Fixtures of the verifier tests: settings, in-process apps over httpx, real services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import (
    HMAC_KEY,
    CountingStore,
    ListAudit,
)

from fractal_lba.config import Settings
from fractal_lba.policy import Policy
from fractal_lba.server import VerifierApp, create_app
from fractal_lba.stores import create_store


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from an env dict on top of a temp DATA_DIR and the test HMAC key."""

    def make(**env: str) -> Settings:
        base = {"DATA_DIR": str(tmp_path / "data"), "PCS_HMAC_KEY": HMAC_KEY}
        return Settings.from_env({**base, **env})

    return make


@pytest.fixture
def store_url_for(request: pytest.FixtureRequest) -> Callable[[str], dict[str, str]]:
    """Env for a backend (requests the service fixture so absent services skip/fail)."""

    def make(backend: str) -> dict[str, str]:
        env = {"DEDUP_BACKEND": backend}
        if backend == "redis":
            env["REDIS_URL"] = request.getfixturevalue("redis_url")
        if backend == "postgres":
            env["POSTGRES_DSN"] = request.getfixturevalue("postgres_dsn")
        return env

    return make


class Harness:
    """An in-process app with a counting store and a list audit, driven through httpx."""

    def __init__(self, app: VerifierApp, store: CountingStore, audit: ListAudit) -> None:
        self.app = app
        self.store = store
        self.audit = audit
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://verifier"
        )

    async def submit(self, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        hdrs = {"content-type": "application/json", **(headers or {})}
        return await self.client.post("/v1/pcs/submit", content=content, headers=hdrs)


@pytest.fixture
def make_harness(settings_for: Callable[..., Settings], namespace: str) -> Callable[..., Any]:
    """``async with make_harness(**env) as h:`` -> a running :class:`Harness`."""
    import contextlib

    @contextlib.asynccontextmanager
    async def make(
        audit: ListAudit | None = None, policy: Policy | None = None, **env: str
    ) -> AsyncIterator[Harness]:
        settings = settings_for(**env)
        inner = create_store(
            settings.dedup_backend,
            data_dir=settings.data_dir,
            redis_url=settings.redis_url.reveal().decode(),
            postgres_dsn=settings.postgres_dsn.reveal().decode(),
            namespace=namespace,
            op_timeout=settings.store_op_timeout,
        )
        store = CountingStore(inner)
        audit = audit if audit is not None else ListAudit()
        app = create_app(settings, store=store, audit=audit, policy=policy)
        async with app.running():
            h = Harness(app, store, audit)
            try:
                yield h
            finally:
                await h.client.aclose()

    return make
