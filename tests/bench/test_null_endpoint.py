"""The benchmark's null endpoint exists only when FLK_BENCH_NULL_ENDPOINT=1."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fractal_lba.config import Settings
from fractal_lba.server import create_app
from fractal_lba.server.app import BENCH_NULL_PATH
from fractal_lba.server.routes.bench import BENCH_STARLETTE_NULL_PATH

pytestmark = pytest.mark.anyio

BENCH_NULL_ENV = "FLK_BENCH_NULL_ENDPOINT"


@pytest.mark.parametrize("path", [BENCH_NULL_PATH, BENCH_STARLETTE_NULL_PATH])
@pytest.mark.parametrize(("flag", "status"), [(None, 404), ("0", 404), ("1", 200)])
async def test_null_endpoint_is_off_unless_enabled(
    tmp_path: Path, flag: str | None, status: int, path: str
) -> None:
    env = {"DATA_DIR": str(tmp_path / "d"), "PCS_HMAC_KEY": "k", "DEDUP_BACKEND": "memory"}
    if flag is not None:
        env[BENCH_NULL_ENV] = flag
    settings = Settings.from_env(env)
    app = create_app(settings)
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://v") as client:
            r = await client.post(path, content=b"{}",
                                  headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == status
    if status == 200:
        assert r.json() == {"accepted": True, "null": True}
