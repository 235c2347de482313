"""PCS 0.3 over HTTP (SPEC section 2): the whole record is signed and bound to the tenant.

Every field that 0.1/0.2 leave unsigned (``N_j``, ``scales``, ``regime``, ``seed``,
``v_star``, ``vrf``, ``meta``) breaks a 0.3 signature when altered; a record signed for one
tenant does not verify as another with the same key; ``min_pcs_version`` refuses older ones.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from server_helpers import HMAC_KEY, make_pcs

from fractal_lba_client.contract import make_signer, sign_record

pytestmark = pytest.mark.anyio
JSON = {"content-type": "application/json"}
SUBMIT = "/v1/pcs/submit"
PROOF = base64.b64encode(hashlib.sha512(b"p").digest() + bytes(16)).decode()
OTHER_PROOF = base64.b64encode(hashlib.sha512(b"q").digest() + bytes(16)).decode()
OUTPUT = base64.b64encode(hashlib.sha512(b"o").digest()).decode()


def record(version: str = "0.3", tenant: str = "default", key: str = HMAC_KEY) -> dict[str, Any]:
    extra = {} if version == "0.1" else {"vrf": {"proof": PROOF, "output": OUTPUT}}
    if version != "0.1":
        extra["meta"] = {"source": "ingest-eu"}
    pcs = make_pcs(key=None, version=version, **extra)
    pcs.pop("sig")
    pcs["sig"] = sign_record(pcs, make_signer("hmac", key), tenant)
    return pcs


def altered(pcs: dict[str, Any], field: str) -> dict[str, Any]:
    """``pcs`` with ``field`` changed to another value that still parses (sig unchanged)."""
    out = copy.deepcopy(pcs)
    if field == "N_j":
        out["N_j"]["4"] += 1
    elif field == "scales":
        out["scales"] = [4, 2, 8, 16, 32]
    elif field == "regime":
        out["regime"] = "non_sticky" if out["regime"] != "non_sticky" else "mixed"
    elif field == "seed":
        out["seed"] += 1
    elif field == "v_star":
        out["v_star"] = [1.0, 0.0, 0.0]
    elif field == "vrf":
        out["vrf"]["proof"] = OTHER_PROOF
    elif field == "meta":
        out["meta"]["source"] = "ingest-us"
    return out


UNSIGNED_IN_02 = ["N_j", "scales", "regime", "seed", "v_star", "vrf", "meta"]


def raw(pcs: dict[str, Any]) -> bytes:
    return json.dumps(pcs).encode()


async def test_a_03_record_is_accepted(api: Any) -> None:
    async with api() as client:
        resp = await client.post(SUBMIT, content=raw(record()), headers=JSON)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("field", UNSIGNED_IN_02)
async def test_altering_any_field_of_a_03_record_gets_401(api: Any, field: str) -> None:
    async with api() as client:
        resp = await client.post(SUBMIT, content=raw(altered(record(), field)), headers=JSON)
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"] == "signature_invalid"


@pytest.mark.parametrize("field", UNSIGNED_IN_02)
async def test_the_same_alterations_pass_the_02_signature(api: Any, field: str) -> None:
    """Control: in 0.2 these fields are unsigned, which is why 0.3 exists."""
    async with api() as client:
        pcs = record("0.2")
        resp = await client.post(SUBMIT, content=raw(altered(pcs, field)), headers=JSON)
    assert resp.status_code != 401, resp.text


async def test_a_record_signed_for_one_tenant_is_refused_for_another(
    api: Any, tmp_path: Path
) -> None:
    env = {"MULTI_TENANT": "true", "TENANTS": f"alice:hmac:{HMAC_KEY},bob:hmac:{HMAC_KEY}"}
    pcs = record(tenant="alice")
    async with api(**env) as client:
        as_bob = await client.post(SUBMIT, content=raw(pcs), headers={**JSON, "x-tenant-id": "bob"})
        assert as_bob.status_code == 401 and as_bob.json()["error"] == "signature_invalid"
        ok = await client.post(SUBMIT, content=raw(pcs), headers={**JSON, "x-tenant-id": "alice"})
        assert ok.status_code == 200, ok.text
        # the 0.2 form of the same record is not tenant-bound: that is the gap 0.3 closes
        old = record("0.2")
        v02 = await client.post(SUBMIT, content=raw(old), headers={**JSON, "x-tenant-id": "bob"})
        assert v02.status_code == 200


async def test_min_pcs_version_per_tenant(api: Any, tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        '[[tenants]]\nid = "strict"\nmin_pcs_version = "0.3"\n'
        f'[[tenants.keys]]\nid = "k"\nalg = "hmac"\nkey = "{HMAC_KEY}"\n'
        '[[tenants]]\nid = "lax"\n'
        f'[[tenants.keys]]\nid = "k"\nalg = "hmac"\nkey = "{HMAC_KEY}"\n'
    )
    env = {"MULTI_TENANT": "true", "TENANTS_FILE": str(tenants)}
    async with api(**env) as client:
        strict = {**JSON, "x-tenant-id": "strict"}
        old = await client.post(SUBMIT, content=raw(record("0.2")), headers=strict)
        assert old.status_code == 400
        assert old.json() == {
            "error": "version_below_minimum",
            "field": "version",
            "detail": "this tenant accepts version 0.3 or later",
        }
        new = await client.post(SUBMIT, content=raw(record(tenant="strict")), headers=strict)
        assert new.status_code == 200, new.text
        lax = {**JSON, "x-tenant-id": "lax"}
        assert (await client.post(SUBMIT, content=raw(record("0.1")), headers=lax)).is_success


async def test_min_pcs_version_single_tenant(api: Any) -> None:
    async with api(MIN_PCS_VERSION="0.3") as client:
        old = await client.post(SUBMIT, content=raw(record("0.1")), headers=JSON)
        assert old.status_code == 400 and old.json()["error"] == "version_below_minimum"
        assert (await client.post(SUBMIT, content=raw(record()), headers=JSON)).is_success


async def test_a_resent_03_record_with_a_new_attempt_is_a_duplicate(api: Any) -> None:
    first = record()
    retry = {k: v for k, v in first.items() if k != "sig"}
    retry["attempt"] = 2
    retry["sent_at"] = "2025-01-01T00:00:09Z"
    retry["sig"] = sign_record(retry, make_signer("hmac", HMAC_KEY))
    conflict = {k: v for k, v in altered(first, "meta").items() if k != "sig"}
    conflict["sig"] = sign_record(conflict, make_signer("hmac", HMAC_KEY))
    async with api() as client:
        a = await client.post(SUBMIT, content=raw(first), headers=JSON)
        b = await client.post(SUBMIT, content=raw(retry), headers=JSON)
        c = await client.post(SUBMIT, content=raw(conflict), headers=JSON)
    assert a.status_code == 200
    assert b.status_code == 200 and b.headers["idempotent-replayed"] == "true"
    assert c.status_code == 422 and c.json()["error"] == "idempotency_conflict"
