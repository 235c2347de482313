"""Compatibility (docs/api/compatibility.md): answers name the PCS versions the server accepts."""

from __future__ import annotations

from typing import Any

import pytest
from server_helpers import body, make_pcs

pytestmark = pytest.mark.anyio
JSON = {"content-type": "application/json"}


async def test_submit_answers_and_health_name_the_accepted_versions(api: Any) -> None:
    async with api() as client:
        ok = await client.post("/v1/pcs/submit", content=body(make_pcs()), headers=JSON)
        bad = await client.post("/v1/pcs/submit", content=b"{", headers=JSON)
        health = await client.get("/health")
    for resp in (ok, bad, health):
        assert resp.headers["x-pcs-accepted-versions"] == "0.1, 0.2, 0.3", resp.status_code
