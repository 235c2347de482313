"""Multi-tenant submit path over HTTP (in process): isolation, limits, quotas, rotation,
reload and the usage endpoint. Time is a FakeClock; nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tenancy_helpers import FakeClock, ed25519_pair, hmac_key, pcs_body, write_toml

pytestmark = pytest.mark.anyio

Make = Callable[..., Any]
TOKEN = "admin-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Three:
    """Tenants a (hmac), b (hmac), c (ed25519) with distinct keys."""

    def __init__(self) -> None:
        self.a, self.b = hmac_key(), hmac_key()
        self.c_seed, self.c_pub = ed25519_pair()

    def tenants(self, **limits: dict[str, Any]) -> list[dict[str, Any]]:
        keys = {"a": ("hmac", self.a), "b": ("hmac", self.b), "c": ("ed25519", self.c_pub)}
        return [
            {"id": tid, "keys": [{"id": f"{tid}1", "alg": alg, "key": key}], **limits.get(tid, {})}
            for tid, (alg, key) in keys.items()
        ]

    def env(self, tmp_path: Path, **limits: dict[str, Any]) -> dict[str, str]:
        path = write_toml(tmp_path / "tenants.toml", self.tenants(**limits))
        return {"MULTI_TENANT": "true", "TENANTS_FILE": str(path), "ADMIN_TOKEN": TOKEN}


async def test_three_tenants_are_isolated(make_app: Make, tmp_path: Path) -> None:
    t = Three()
    async with make_app(**t.env(tmp_path)) as app:
        ok_a = await app.submit(pcs_body(t.a, epoch=1), "a")
        ok_b = await app.submit(pcs_body(t.b, epoch=1), "b")
        ok_c = await app.submit(pcs_body(t.c_seed, alg="ed25519", epoch=1), "c")
        assert [r.status_code for r in (ok_a, ok_b, ok_c)] == [200, 200, 200]
        assert [r.json()["tenant_id"] for r in (ok_a, ok_b, ok_c)] == ["a", "b", "c"]
        # A's key cannot sign for B or C, B's not for A.
        for key, alg, tenant in ((t.a, "hmac", "b"), (t.a, "hmac", "c"), (t.b, "hmac", "a"),
                                 (t.c_seed, "ed25519", "a")):  # fmt: skip
            resp = await app.submit(pcs_body(key, alg=alg, epoch=2), tenant)
            assert resp.status_code == 401, (tenant, resp.text)
            assert resp.json()["error"] == "signature_invalid"
        unknown = await app.submit(pcs_body(t.a, epoch=3), "nobody")
        assert unknown.status_code == 401 and unknown.json()["field"] == "X-Tenant-Id"
        missing = await app.submit(pcs_body(t.a, epoch=3), None)
        assert missing.status_code == 400
        assert missing.json() == {
            "error": "missing_tenant",
            "field": "X-Tenant-Id",
            "detail": "the X-Tenant-Id header is required (multi-tenant)",
        }
        text = (await app.client.get("/metrics")).text
        assert 'flk_accepted_by_tenant_total{tenant_id="c"} 1.0' in text
        assert 'flk_signature_errors_by_tenant_total{tenant_id="b"} 1.0' in text
        assert 'flk_signature_errors_by_tenant_total{tenant_id="a"} 2.0' in text


async def test_same_pcs_id_from_two_tenants_is_two_records(make_app: Make, tmp_path: Path) -> None:
    t = Three()
    async with make_app(**t.env(tmp_path)) as app:
        body_a, body_b = pcs_body(t.a, epoch=7), pcs_body(t.b, epoch=7)
        first_a = await app.submit(body_a, "a")
        first_b = await app.submit(body_b, "b")
        assert first_a.status_code == first_b.status_code == 200
        assert first_a.json()["pcs_id"] == first_b.json()["pcs_id"]
        assert "idempotent-replayed" not in first_a.headers
        assert "idempotent-replayed" not in first_b.headers
        again_b = await app.submit(body_b, "b")
        assert again_b.headers["idempotent-replayed"] == "true"
        assert again_b.json()["tenant_id"] == "b"
        outcomes = [(e.tenant_id, e.verify_outcome) for e in app.audit.entries]
        assert outcomes == [("a", "accepted"), ("b", "accepted"), ("b", "duplicate")]


async def test_noisy_neighbour_gets_429_others_keep_full_success(
    make_app: Make, tmp_path: Path
) -> None:
    """A floods at 20x its rate; B sends at half its rate in the same run. The global bucket
    is big enough for A's *allowed* share plus B, not for A's flood, so it also proves that
    A's refused requests take nothing from it."""
    t = Three()
    clock = FakeClock()
    limits = {"a": {"token_rate": 10.0, "burst": 10}, "b": {"token_rate": 20.0, "burst": 20}}
    async with make_app(clock=clock, GLOBAL_TOKEN_RATE="40", **t.env(tmp_path, **limits)) as app:
        a_codes: list[int] = []
        b_codes: list[int] = []
        epoch = 0
        for _tick in range(50):  # 5 virtual seconds in 0.1 s steps
            batch = []
            for _ in range(20):  # A: 200/s
                epoch += 1
                batch.append(app.submit(pcs_body(t.a, epoch=epoch), "a"))
            epoch += 1
            batch.append(app.submit(pcs_body(t.b, epoch=epoch), "b"))  # B: 10/s
            resps = await asyncio.gather(*batch)
            a_codes += [r.status_code for r in resps[:-1]]
            b_codes.append(resps[-1].status_code)
            clock.advance(0.1)
        assert b_codes.count(200) == len(b_codes) == 50
        assert set(a_codes) == {200, 429}
        assert a_codes.count(429) > 0.8 * len(a_codes)
        refused = next(r for r in resps[:-1] if r.status_code == 429)
        assert refused.json()["error"] == "rate_limited"
        assert refused.headers["ratelimit-policy"] == '"rate";q=10;w=1'
        text = (await app.client.get("/metrics")).text
        assert f'flk_rate_limited_by_tenant_total{{tenant_id="a"}} {a_codes.count(429)}.0' in text
        assert 'flk_rate_limited_by_tenant_total{tenant_id="b"} 0.0' in text
        assert "flk_global_rate_limited_total 0.0" in text


async def test_daily_quota_resets_at_utc_midnight(make_app: Make, tmp_path: Path) -> None:
    t = Three()
    clock = FakeClock()
    clock.set(datetime(2026, 3, 1, 23, 59, 50, tzinfo=UTC))
    limits = {"a": {"daily_quota": 3, "token_rate": 100.0}}
    async with make_app(clock=clock, **t.env(tmp_path, **limits)) as app:
        codes = [(await app.submit(pcs_body(t.a, epoch=i), "a")).status_code for i in range(3)]
        assert codes == [200, 200, 200]
        refused = await app.submit(pcs_body(t.a, epoch=10), "a")
        assert refused.status_code == 429 and refused.json()["error"] == "quota_exceeded"
        assert refused.headers["retry-after"] == "10"
        assert refused.headers["ratelimit-policy"] == '"rate";q=100;w=1, "daily";q=3;w=86400'
        assert refused.headers["ratelimit"].endswith('"daily";r=0;t=10')
        assert (await app.submit(pcs_body(t.b, epoch=10), "b")).status_code == 200  # b: no quota
        clock.set(datetime(2026, 3, 1, 23, 59, 59, 500000, tzinfo=UTC))
        late = await app.submit(pcs_body(t.a, epoch=11), "a")
        assert late.status_code == 429 and late.headers["retry-after"] == "1"
        clock.set(datetime(2026, 3, 2, 0, 0, 0, tzinfo=UTC))  # the new UTC day
        codes = [(await app.submit(pcs_body(t.a, epoch=20 + i), "a")).status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]
        text = (await app.client.get("/metrics")).text
        assert 'flk_quota_exceeded_by_tenant_total{tenant_id="a"} 3.0' in text
        usage = (await app.client.get("/v1/tenants/a/usage", headers=AUTH)).json()
        assert usage["daily_quota"] == {
            "limit": 3, "used": 3, "remaining": 0, "day": "2026-03-02", "resets_in_s": 86400,
        }  # fmt: skip


async def test_key_rotation_overlap_and_retirement(make_app: Make, tmp_path: Path) -> None:
    clock = FakeClock()
    t0 = clock.now
    old, new = hmac_key(), hmac_key()
    keys = [
        {"id": "old", "alg": "hmac", "key": old, "not_after": iso(t0 + 3600)},
        {"id": "new", "alg": "hmac", "key": new, "not_before": iso(t0 + 1800)},
    ]
    path = write_toml(tmp_path / "t.toml", [{"id": "acme", "keys": keys}])
    async with make_app(clock=clock, MULTI_TENANT="true", TENANTS_FILE=str(path)) as app:

        async def codes(epoch: int) -> tuple[int, int]:
            r_old = await app.submit(pcs_body(old, epoch=epoch), "acme")
            r_new = await app.submit(pcs_body(new, epoch=epoch + 1000), "acme")
            return r_old.status_code, r_new.status_code

        assert await codes(1) == (200, 401)  # new key not valid yet
        clock.now = t0 + 1800
        assert await codes(2) == (200, 200)  # overlap: both verify
        clock.now = t0 + 3600
        assert await codes(3) == (401, 200)  # old key retired


async def test_reload_endpoint_swaps_tenants_and_keeps_old_on_error(
    make_app: Make, tmp_path: Path
) -> None:
    t = Three()
    env = t.env(tmp_path)
    path = Path(env["TENANTS_FILE"])
    async with make_app(**env) as app:
        assert (await app.client.post("/v1/admin/reload")).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert (await app.client.post("/v1/admin/reload", headers=wrong)).status_code == 401
        d = hmac_key()
        tenants = [x for x in t.tenants() if x["id"] != "b"]
        tenants.append({"id": "d", "keys": [{"id": "d1", "alg": "hmac", "key": d}]})
        write_toml(path, tenants)
        resp = await app.client.post("/v1/admin/reload", headers=AUTH)
        assert resp.status_code == 200 and resp.json() == {"reloaded": True, "tenants": 3}
        assert (await app.submit(pcs_body(d, epoch=1), "d")).status_code == 200
        assert (await app.submit(pcs_body(t.b, epoch=1), "b")).status_code == 401
        path.write_text(path.read_text() + '\n[[tenants]]\nid = "d"\nkeys = []\n')
        bad = await app.client.post("/v1/admin/reload", headers=AUTH)
        assert bad.status_code == 400 and bad.json()["reloaded"] is False
        assert "tenant 'd'" in bad.json()["detail"] and d not in bad.text
        assert (await app.submit(pcs_body(d, epoch=2), "d")).status_code == 200  # old config
        text = (await app.client.get("/metrics")).text
        assert 'flk_tenant_reloads_total{result="ok"} 1.0' in text
        assert 'flk_tenant_reloads_total{result="error"} 1.0' in text


async def test_reload_under_load_drops_no_request(make_app: Make, tmp_path: Path) -> None:
    t = Three()
    env = t.env(tmp_path)
    async with make_app(**env) as app:

        async def reloads() -> list[int]:
            out = []
            for _ in range(20):
                out.append((await app.client.post("/v1/admin/reload", headers=AUTH)).status_code)
            return out

        submits = [app.submit(pcs_body(t.a, epoch=i), "a") for i in range(200)]
        results = await asyncio.gather(reloads(), *submits)
        assert results[0] == [200] * 20
        assert [r.status_code for r in results[1:]] == [200] * 200


async def test_admin_endpoints_disabled_without_token(make_app: Make, tmp_path: Path) -> None:
    t = Three()
    env = t.env(tmp_path)
    del env["ADMIN_TOKEN"]
    async with make_app(**env) as app:
        for method, url in (("POST", "/v1/admin/reload"), ("GET", "/v1/tenants/a/usage")):
            resp = await app.client.request(method, url, headers={"authorization": "Bearer "})
            assert resp.status_code == 404, url


async def test_usage_reports_tokens_quota_and_outcomes(make_app: Make, tmp_path: Path) -> None:
    t = Three()
    clock = FakeClock()
    limits = {"a": {"token_rate": 1.0, "burst": 4, "daily_quota": 100}}
    async with make_app(clock=clock, **t.env(tmp_path, **limits)) as app:
        await app.submit(pcs_body(t.a, epoch=1), "a")  # accepted
        await app.submit(pcs_body(t.a, epoch=1), "a")  # duplicate
        await app.submit(pcs_body(t.a, epoch=2, D_hat=1.3), "a")  # escalated (202)
        await app.submit(pcs_body(t.b, epoch=3), "a")  # rejected (401, wrong key)
        assert (await app.submit(pcs_body(t.a, epoch=4), "a")).status_code == 429
        resp = await app.client.get("/v1/tenants/a/usage", headers=AUTH)
        assert resp.status_code == 200
        body = resp.json()
        assert body["rate"] == {"token_rate": 1.0, "burst": 4.0, "tokens_left": 0.0,
                                "limiter": "memory"}  # fmt: skip
        assert body["daily_quota"]["used"] == 4 and body["daily_quota"]["remaining"] == 96
        assert body["outcomes"] == {
            "accepted": 1, "escalated": 1, "rejected": 1, "duplicate": 1, "rate_limited": 1,
        }  # fmt: skip
        clock.advance(2.5)
        again = (await app.client.get("/v1/tenants/a/usage", headers=AUTH)).json()
        assert again["rate"]["tokens_left"] == 2.5
        assert (await app.client.get("/v1/tenants/zz/usage", headers=AUTH)).status_code == 404


async def test_single_tenant_mode_is_unchanged(make_app: Make) -> None:
    key = hmac_key()
    async with make_app(PCS_HMAC_KEY=key) as app:
        assert (await app.submit(pcs_body(key, epoch=1), None)).status_code == 200
        assert (await app.submit(pcs_body(key, epoch=2), "default")).status_code == 200
        assert (await app.submit(pcs_body(key, epoch=3), "acme")).status_code == 401
