"""Fixtures of the API contract tests: an in-process verifier (real SQLite store, real WORM
audit log under a temp DATA_DIR) driven through httpx, and PCS builders from the server tests.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import HMAC_KEY

from fractal_lba.config import Settings
from fractal_lba.server import create_app

ApiFactory = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def api(tmp_path: Path) -> ApiFactory:
    """``async with api(**env) as client:`` -> an httpx client on a running verifier."""

    @contextlib.asynccontextmanager
    async def make(**env: str) -> AsyncIterator[httpx.AsyncClient]:
        base = {"DATA_DIR": str(tmp_path / "data"), "PCS_HMAC_KEY": HMAC_KEY}
        app = create_app(Settings.from_env({**base, **env}))
        async with (
            app.running(),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://verifier"
            ) as client,
        ):
            yield client

    return make
