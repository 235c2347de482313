"""The submit path in process: ordering claims of SPEC section 4, errors, dedup, decisions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from server_helpers import HMAC_KEY, body, make_pcs, resign

from fractal_lba.policy import default_policy
from fractal_lba.server.inbox import Admit, Outcome, decode_record
from fractal_lba.wal import scan

pytestmark = pytest.mark.anyio

Make = Callable[..., Any]


def wal_records(h: Any) -> list[Admit | Outcome]:
    out: list[Admit | Outcome] = []
    for seg in sorted(h.app.inbox.directory.glob("*.wal")):
        out.extend(decode_record(p) for p in scan(seg.read_bytes())[0])
    return out


async def test_accepted_pcs_gets_200_stored_and_audited(make_harness: Make) -> None:
    async with make_harness() as h:
        pcs = make_pcs()
        resp = await h.submit(body(pcs))
        assert resp.status_code == 200, resp.text
        data = resp.json()
        assert data["accepted"] is True and data["escalated"] is False
        assert data["pcs_id"] == pcs["pcs_id"] and data["tenant_id"] == "default"
        assert data["policy_version"] == "1.0.0"
        rid = resp.headers["x-request-id"]
        assert "idempotent-replayed" not in resp.headers
        [entry] = h.audit.by_request(rid)
        assert entry.verify_outcome == "accepted" and entry.status == 200
        assert entry.pcs_id == pcs["pcs_id"] and entry.verify_params_hash
        assert (h.store.gets, h.store.puts) == (1, 1)


async def test_duplicate_returns_identical_body_and_status(make_harness: Make) -> None:
    async with make_harness() as h:
        pcs = make_pcs(coh_star=0.9, regime="mixed")
        pcs = resign(pcs)
        first = await h.submit(body(pcs))
        second = await h.submit(body(pcs))
        assert first.status_code == 202
        assert second.status_code == first.status_code
        assert second.content == first.content
        assert second.headers["idempotent-replayed"] == "true"
        [dup] = h.audit.by_request(second.headers["x-request-id"])
        assert dup.verify_outcome == "duplicate"
        assert h.store.puts == 1


async def test_same_pcs_id_other_payload_is_422_and_outcome_untouched(
    make_harness: Make,
) -> None:
    async with make_harness() as h:
        pcs = make_pcs()
        first = await h.submit(body(pcs))
        other = resign(pcs, budget=pcs["budget"] + 0.2)
        conflict = await h.submit(body(other))
        assert conflict.status_code == 422
        assert conflict.json()["error"] == "idempotency_conflict"
        assert conflict.json()["field"] == "pcs_id"
        [entry] = h.audit.by_request(conflict.headers["x-request-id"])
        assert entry.verify_outcome == "conflict" and entry.status == 422
        again = await h.submit(body(pcs))
        assert again.content == first.content and again.status_code == 200


async def test_invalid_signature_is_401_and_never_reaches_the_store(make_harness: Make) -> None:
    async with make_harness() as h:
        forged = make_pcs(key="not-the-key")
        resp = await h.submit(body(forged))
        assert resp.status_code == 401
        assert resp.json() == {
            "error": "signature_invalid",
            "field": "sig",
            "detail": "signature does not verify with any active key",
        }
        assert (h.store.gets, h.store.puts) == (0, 0)
        [entry] = h.audit.by_request(resp.headers["x-request-id"])
        assert entry.verify_outcome == "rejected" and entry.reason == "signature_invalid"
        # The genuine PCS with the same id is then accepted: the forgery stored nothing.
        ok = await h.submit(body(make_pcs()))
        assert ok.status_code == 200


async def test_rotation_overlap_accepts_old_and_new_key(make_harness: Make) -> None:
    async with make_harness(PCS_HMAC_KEYS="new-key,old-key") as h:
        assert (await h.submit(body(make_pcs(key="old-key")))).status_code == 200
        assert (await h.submit(body(make_pcs(key="new-key", epoch=2)))).status_code == 200
        assert (await h.submit(body(make_pcs(key="retired", epoch=3)))).status_code == 401


async def test_malformed_body_is_in_the_wal_before_parsing(make_harness: Make) -> None:
    async with make_harness() as h:
        garbage = b'not json at all {"pcs_id"'
        resp = await h.submit(garbage)
        assert resp.status_code == 400
        assert resp.json()["field"] == "body" and resp.json()["error"] == "malformed_json"
        rid = resp.headers["x-request-id"]
        admits = [r for r in wal_records(h) if isinstance(r, Admit) and r.request_id == rid]
        assert [a.body for a in admits] == [garbage]
        [entry] = h.audit.by_request(rid)
        assert entry.verify_outcome == "rejected" and entry.pcs_id is None


def _bad(pcs: dict[str, Any], **changes: Any) -> bytes:
    out = dict(pcs)
    out.update(changes)
    return json.dumps(out).encode()


BAD_INPUTS: list[tuple[str, Callable[[dict[str, Any]], bytes], dict[str, str], str]] = [
    ("malformed", lambda p: b"{not json", {}, "body"),
    ("wrong-type", lambda p: _bad(p, epoch="one"), {}, "epoch"),
    ("nan", lambda p: json.dumps({**p, "D_hat": float("nan")}).encode(), {}, "D_hat"),
    ("infinity-in-list", lambda p: json.dumps({**p, "v_star": [0, float("inf"), 0]}).encode(),
     {}, "v_star[1]"),
    ("bad-base64-sig", lambda p: _bad(p, sig="***not base64***"), {}, "sig"),
    ("unknown-version", lambda p: _bad(p, version="9.9"), {}, "version"),
    ("pcs-id-mismatch", lambda p: _bad(p, pcs_id="0" * 64), {}, "pcs_id"),
    ("schema-header-mismatch", lambda p: _bad(p), {"x-pcs-schema-version": "0.2"},
     "X-PCS-Schema-Version"),
    ("unknown-field", lambda p: _bad(p, extra=1), {}, "extra"),
    ("missing-field", lambda p: json.dumps({k: v for k, v in p.items() if k != "seed"}).encode(),
     {}, "seed"),
    ("not-an-object", lambda p: b"[1, 2]", {}, "body"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make_body", "headers", "field"),
    [pytest.param(b, hd, f, id=name) for name, b, hd, f in BAD_INPUTS],
)
async def test_bad_input_is_400_naming_the_field(
    make_harness: Make, make_body: Callable[[dict[str, Any]], bytes], headers: dict[str, str],
    field: str,
) -> None:  # fmt: skip
    async with make_harness() as h:
        secret_marker = "SECRET-VALUE-123"
        pcs = make_pcs(shard_id=secret_marker)
        resp = await h.submit(make_body(pcs), headers)
        assert resp.status_code == 400, resp.text
        err = resp.json()
        assert set(err) == {"error", "field", "detail"}
        assert err["field"] == field
        assert secret_marker not in resp.text and HMAC_KEY not in resp.text
        assert (h.store.gets, h.store.puts) == (0, 0)
        assert len(h.audit.by_request(resp.headers["x-request-id"])) == 1


async def test_schema_header_equal_to_body_version_is_fine(make_harness: Make) -> None:
    async with make_harness() as h:
        resp = await h.submit(body(make_pcs()), {"x-pcs-schema-version": "0.1"})
        assert resp.status_code == 200


async def test_wrong_content_type_is_415_before_the_wal(make_harness: Make) -> None:
    async with make_harness() as h:
        for ctype in ("text/plain", "application/x-www-form-urlencoded"):
            resp = await h.client.post(
                "/v1/pcs/submit", content=body(make_pcs()), headers={"content-type": ctype}
            )
            assert resp.status_code == 415
            assert resp.json()["field"] == "Content-Type"
        resp = await h.client.post("/v1/pcs/submit", content=body(make_pcs()))
        assert resp.status_code == 415
        ok = await h.submit(body(make_pcs()), {"content-type": "application/json; charset=utf-8"})
        assert ok.status_code == 200
        assert len([r for r in wal_records(h) if isinstance(r, Admit)]) == 1
        assert len(h.audit.entries) == 1


async def test_oversized_body_is_413_before_the_wal(make_harness: Make) -> None:
    async with make_harness() as h:
        big = b"{" + b" " * (64 * 1024) + b"}"
        resp = await h.submit(big)
        assert resp.status_code == 413 and resp.json()["error"] == "payload_too_large"

        async def stream() -> Any:  # no Content-Length: enforced while reading
            for _ in range(80):
                yield b" " * 1024

        resp = await h.client.post(
            "/v1/pcs/submit", content=stream(), headers={"content-type": "application/json"}
        )
        assert resp.status_code == 413
        assert wal_records(h) == [] and h.audit.entries == []


async def test_get_on_submit_is_405(make_harness: Make) -> None:
    async with make_harness() as h:
        resp = await h.client.get("/v1/pcs/submit")
        assert resp.status_code == 405 and resp.headers["allow"] == "POST"


async def test_unknown_tenant_is_401_before_the_wal(make_harness: Make) -> None:
    async with make_harness() as h:
        resp = await h.submit(body(make_pcs()), {"x-tenant-id": "someone-else"})
        assert resp.status_code == 401 and resp.json()["field"] == "X-Tenant-Id"
        assert wal_records(h) == []
        ok = await h.submit(body(make_pcs()), {"x-tenant-id": "default"})
        assert ok.status_code == 200


async def test_rate_limit_429_with_ietf_headers_before_the_wal(make_harness: Make) -> None:
    async with make_harness(TOKEN_RATE="2") as h:
        codes = [(await h.submit(body(make_pcs(epoch=i)))).status_code for i in range(2)]
        assert codes == [200, 200]
        resp = await h.submit(body(make_pcs(epoch=9)))
        assert resp.status_code == 429
        assert int(resp.headers["retry-after"]) >= 1
        assert resp.headers["ratelimit-policy"] == '"rate";q=2;w=1'
        assert resp.headers["ratelimit"].startswith('"rate";r=0;t=')
        assert len([r for r in wal_records(h) if isinstance(r, Admit)]) == 2


# SPEC section 4 decision table: (claims, status, accepted, escalated, reason)
DECISIONS: list[tuple[str, dict[str, Any], int, bool, bool, str | None]] = [
    ("all-pass", {}, 200, True, False, None),
    ("dhat-out-of-tolerance", {"D_hat": 1.3}, 202, False, True, "dhat_out_of_tolerance"),
    ("coh-out-of-bounds", {"coh_star": 1.2}, 202, False, True, "coh_out_of_bounds"),
    ("sanity", {"r": 1.5}, 202, False, True, "sanity:r_range"),
    ("sanity-structural", {"N_j": {"2": 9, "4": 5, "8": 9, "16": 17, "32": 31}}, 202, False,
     True, "sanity:nj_monotonic"),
    ("regime-mismatch", {"regime": "non_sticky"}, 202, True, True, "regime_mismatch"),
    ("budget-deviation", {"budget": 0.9}, 202, True, True, "budget_deviation"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("claims", "status", "accepted", "escalated", "reason"),
    [pytest.param(c, s, a, e, r, id=name) for name, c, s, a, e, r in DECISIONS],
)
async def test_decision_table(
    make_harness: Make, claims: dict[str, Any], status: int, accepted: bool, escalated: bool,
    reason: str | None,
) -> None:  # fmt: skip
    async with make_harness() as h:
        resp = await h.submit(body(make_pcs(**claims)))
        assert resp.status_code == status, resp.text
        data = resp.json()
        assert (data["accepted"], data["escalated"], data["reason"]) == (
            accepted, escalated, reason,
        )  # fmt: skip
        [entry] = h.audit.by_request(resp.headers["x-request-id"])
        assert entry.verify_outcome == ("accepted" if status == 200 else "escalated")
        assert entry.reason == reason
        if reason is not None and reason.startswith("sanity:"):
            check = reason.split(":", 1)[1]
            metrics = (await h.client.get("/metrics")).text
            assert f'flk_sanity_check_failed_total{{check="{check}"}} 1.0' in metrics


async def test_decision_table_anomaly(make_harness: Make) -> None:
    async with make_harness() as h:
        resp = await h.submit(body(make_pcs(dim=3.4, coh_star=1.0, r=0.99)))
        assert resp.status_code == 202, resp.text
        data = resp.json()
        assert data["reason"] == "anomaly" and data["accepted"] is True
        assert data["anomaly_score"] >= 0.8


async def test_concurrent_identical_submissions_store_one_outcome(
    make_harness: Make, store_url_for: Callable[[str], dict[str, str]], backend: str
) -> None:
    async with make_harness(**store_url_for(backend)) as h:
        pcs = body(make_pcs())
        responses = await asyncio.gather(*(h.submit(pcs) for _ in range(8)))
        assert {r.status_code for r in responses} == {200}
        assert len({r.content for r in responses}) == 1
        fresh = [r for r in responses if "idempotent-replayed" not in r.headers]
        assert len(fresh) == 1
        outcomes = [e.verify_outcome for e in h.audit.entries]
        assert sorted(outcomes) == ["accepted"] + ["duplicate"] * 7
        stored = await h.store.get("default", make_pcs()["pcs_id"])
        assert stored is not None and stored.request_id == fresh[0].headers["x-request-id"]


async def test_sanity_reject_policy_answers_400_and_replays_it(make_harness: Make) -> None:
    base = default_policy()
    policy = msgspec.structs.replace(
        base, sanity=msgspec.structs.replace(base.sanity, action="reject")
    )
    async with make_harness(policy=policy) as h:
        resp = await h.submit(body(make_pcs(r=1.5)))
        assert resp.status_code == 400
        assert resp.json()["error"] == "sanity:r_range"
        [entry] = h.audit.by_request(resp.headers["x-request-id"])
        assert entry.verify_outcome == "rejected"
        again = await h.submit(body(make_pcs(r=1.5)))
        assert again.status_code == 400 and again.headers["idempotent-replayed"] == "true"


async def test_huge_claimed_values_are_verified_not_crashed_on(make_harness: Make) -> None:
    """round9 once raised decimal.InvalidOperation from 1e19 up: the signature step crashed
    (500, request stuck pending) instead of the decision table answering."""
    async with make_harness() as h:
        pcs = resign(make_pcs(), D_hat=1e19, budget=-1.7976931348623157e308)
        resp = await h.submit(body(pcs))
        assert resp.status_code == 202, resp.text
        assert resp.json()["accepted"] is False
        assert resp.json()["reason"] == "dhat_out_of_tolerance"
        [entry] = h.audit.by_request(resp.headers["x-request-id"])
        assert entry.status == resp.status_code
