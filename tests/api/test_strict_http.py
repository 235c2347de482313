"""Strict parsing over HTTP (issue 17 items 2-3): the issue's attacks get 400s that name the
field and echo nothing; nothing reaches the signature check or the dedup store."""

from __future__ import annotations

import json
from typing import Any

import pytest
from server_helpers import body, make_pcs

pytestmark = pytest.mark.anyio
JSON = {"content-type": "application/json"}


async def test_a_duplicated_signed_field_is_refused(api: Any) -> None:
    pcs = make_pcs()
    signed = body(pcs)
    assert b'"D_hat": 1.0' in signed
    forged = signed.replace(b'"D_hat": 1.0', b'"D_hat": 2.9, "D_hat": 1.0')
    async with api() as client:
        resp = await client.post("/v1/pcs/submit", content=forged, headers=JSON)
        assert resp.status_code == 400
        assert resp.json() == {
            "error": "duplicate_key",
            "field": "D_hat",
            "detail": "key appears more than once",
        }
        ok = await client.post("/v1/pcs/submit", content=signed, headers=JSON)
        assert ok.status_code == 200  # the genuine record was never stored as a duplicate


async def test_a_duplicate_inside_n_j_is_refused(api: Any) -> None:
    forged = body(make_pcs()).replace(b'"4": 4', b'"4": 4, "4": 9')
    async with api() as client:
        resp = await client.post("/v1/pcs/submit", content=forged, headers=JSON)
    assert (resp.status_code, resp.json()["error"], resp.json()["field"]) == (
        400,
        "duplicate_key",
        "N_j",
    )


async def test_an_invalid_regime_is_not_echoed(api: Any) -> None:
    value = "x" * 5000
    async with api() as client:
        resp = await client.post(
            "/v1/pcs/submit", content=body(make_pcs(regime=value)), headers=JSON
        )
    assert resp.status_code == 400 and resp.json()["field"] == "regime"
    assert value[:20] not in resp.text and len(resp.content) < 300


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"epoch": 2**64}, "epoch"),
        ({"shard_id": "evil\u202eshard"}, "shard_id"),
        ({"shard_id": "   "}, "shard_id"),
        ({"version": "0.2", "vrf": {"proof": "!!!", "output": ""}}, "vrf.proof"),
        ({"version": "0.2", "meta": {"k\x00": "v"}}, "meta"),
        ({"N_j": {"2": 2, "4": 4, "8": 8, "16": 16, "32": 32, "64": 64}}, "N_j"),
    ],
)
async def test_the_issues_bad_fields_get_400_naming_them(
    api: Any, change: dict[str, object], field: str
) -> None:
    pcs = make_pcs(**change)
    async with api() as client:
        resp = await client.post("/v1/pcs/submit", content=body(pcs), headers=JSON)
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == field and resp.json()["error"] == "invalid_field"


async def test_a_truncated_body_is_malformed_json(api: Any) -> None:
    raw = json.dumps(make_pcs(), separators=(",", ":")).encode()
    async with api() as client:
        for cut in (1, 20, len(raw) // 2, len(raw) - 1):
            resp = await client.post("/v1/pcs/submit", content=raw[:cut], headers=JSON)
            assert resp.status_code == 400
            assert resp.json()["error"] == "malformed_json", (cut, resp.text)
