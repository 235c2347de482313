"""Step 6, the VRF gate: pure checks, then the submit path in-process (enforce, report_only).

The attack simulation against a real server process is in ``test_attack_simulation.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import msgspec
import pytest
from server_helpers import HMAC_KEY, make_pcs
from vrf_helpers import app_metrics, b64, metric, serving, submit, vrf_pcs

from fractal_lba.adversarial import vrf
from fractal_lba.adversarial.vrf_gate import REASONS, VrfGate
from fractal_lba.config import Settings
from fractal_lba.contract import PCS, decode_pcs
from fractal_lba.errors import ConfigError
from fractal_lba.policy import default_policy
from fractal_lba.tenancy.factory import build_resolver

pytestmark = pytest.mark.anyio

SK, PK = vrf.keygen()
OTHER_SK, _ = vrf.keygen()


def _pcs(obj: dict[str, Any]) -> Any:
    return decode_pcs(json.dumps(obj).encode())


def _raw_pcs(obj: dict[str, Any]) -> PCS:
    """Typed but not validated: strict parsing (step 3) would refuse malformed ``vrf`` with a
    400 before the gate; the gate must still not trust it."""
    return msgspec.json.decode(json.dumps(obj).encode(), type=PCS)


# -- the gate as a pure function ----------------------------------------------------------
def test_cheap_checks_come_before_the_proof() -> None:
    """A chosen seed next to a foreign proof is refused for the seed (no verification paid)."""
    pcs = vrf_pcs(SK, "acme")
    pcs["vrf"] = vrf_pcs(OTHER_SK, "acme")["vrf"]
    failure = VrfGate.for_tenant("acme", PK, "enforce").check(_pcs(pcs))
    assert failure is not None and failure.reason == "seed_mismatch"


def test_gate_accepts_a_seed_derived_from_beta() -> None:
    gate = VrfGate.for_tenant("acme", PK, "enforce")
    assert gate.check(_pcs(vrf_pcs(SK, "acme"))) is None


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"version": "0.1", "vrf": None}, "missing", "vrf"),
        ({"vrf": {"proof": "!!!", "output": b64(bytes(64))}}, "malformed", "vrf.proof"),
        ({"vrf": {"proof": b64(bytes(80)), "output": "AAAA"}}, "malformed", "vrf.output"),
        ({"seed": 42}, "seed_mismatch", "seed"),
        ({"vrf": "other-output"}, "output_mismatch", "vrf.output"),
        ({"vrf": "other-key"}, "proof_invalid", "vrf.proof"),
        ({"vrf": "other-tenant"}, "proof_invalid", "vrf.proof"),
        ({"vrf": "other-epoch"}, "proof_invalid", "vrf.proof"),
        ({"vrf": "small-order-gamma"}, "gamma_invalid", "vrf.proof"),
        ({"vrf": "s-not-reduced"}, "s_out_of_range", "vrf.proof"),
    ],
)
def test_gate_failures(change: dict[str, Any], reason: str, field: str) -> None:
    pcs = vrf_pcs(SK, "acme", epoch=7)
    good = pcs["vrf"]
    pi = base64.b64decode(good["proof"])
    special = change.get("vrf")
    if special == "other-output":
        change = {"vrf": {**good, "output": b64(vrf.proof_to_hash(vrf.prove(SK, b"x")))}}
    elif special in ("other-key", "other-tenant", "other-epoch"):
        # A consistent forgery: seed and output match the foreign proof; only the proof fails.
        other = {
            "other-key": vrf_pcs(OTHER_SK, "acme", epoch=7),
            "other-tenant": vrf_pcs(SK, "globex", epoch=7),
            "other-epoch": vrf_pcs(SK, "acme", epoch=6),
        }[special]
        change = {"vrf": other["vrf"], "seed": other["seed"]}
    elif special == "small-order-gamma":
        change = {"vrf": {**good, "proof": b64(b"\x01" + bytes(31) + pi[32:])}}
    elif special == "s-not-reduced":
        s = int.from_bytes(pi[48:], "little") + 2**252 + 27742317777372353535851937790883648493
        change = {"vrf": {**good, "proof": b64(pi[:48] + s.to_bytes(32, "little"))}}
    pcs.update(change)
    if pcs.get("vrf") is None:
        pcs.pop("vrf", None)
    failure = VrfGate.for_tenant("acme", PK, "enforce").check(_raw_pcs(pcs))
    assert failure is not None
    assert (failure.reason, failure.field) == (reason, field)
    assert failure.reason in REASONS and failure.audit_reason == f"vrf_invalid:{reason}"
    assert good["proof"] not in failure.detail


# -- the submit path in-process ------------------------------------------------------------
async def test_enforce_accepts_a_valid_proof_and_refuses_an_agent_chosen_seed(
    tmp_path: Path,
) -> None:
    env = {"VRF_ENABLED": "true", "VRF_PUBLIC_KEY": PK.hex()}
    async with serving(tmp_path, **env) as (app, client, audit):
        ok = await submit(client, vrf_pcs(SK, shard_id="a"))
        assert ok.status_code == 200, ok.text
        chosen = vrf_pcs(SK, shard_id="b", seed=42)  # valid proof, seed picked by the agent
        bad = await submit(client, chosen)
        assert bad.status_code == 401
        assert bad.json() == {
            "error": "vrf_invalid",
            "field": "seed",
            "detail": "seed is not derived from the VRF output",
        }
        text = app_metrics(app)
        assert metric(text, "flk_vrf_verified_total") == 1
        assert metric(text, "flk_vrf_invalid_total", reason="seed_mismatch", mode="enforce") == 1
        assert metric(text, "flk_vrf_invalid_by_tenant_total", tenant_id="default") == 1
        assert metric(text, "flk_signature_errors_total") == 0  # never a signature error
        rejected = [e for e in audit.entries if e.verify_outcome == "rejected"]
        assert [(e.pcs_id, e.status, e.reason) for e in rejected] == [
            (chosen["pcs_id"], 401, "vrf_invalid:seed_mismatch")
        ]
        # Nothing reached the dedup store: the same pcs_id with a correct seed is first-seen.
        fixed = vrf_pcs(SK, shard_id="b")
        assert (await submit(client, fixed)).status_code == 200


async def test_report_only_proceeds_and_counts(tmp_path: Path) -> None:
    env = {"VRF_ENABLED": "true", "VRF_PUBLIC_KEY": b64(PK), "VRF_MODE": "report_only"}
    async with serving(tmp_path, **env) as (app, client, audit):
        chosen = vrf_pcs(SK, seed=42)
        res = await submit(client, chosen)
        assert res.status_code == 200 and res.json()["accepted"] is True
        missing = make_pcs(shard_id="no-vrf")  # version 0.1, no proof at all
        assert (await submit(client, missing)).status_code == 200
        text = app_metrics(app)
        assert (
            metric(text, "flk_vrf_invalid_total", reason="seed_mismatch", mode="report_only") == 1
        )
        assert metric(text, "flk_vrf_invalid_total", reason="missing", mode="report_only") == 1
        assert metric(text, "flk_vrf_invalid_total", reason="seed_mismatch", mode="enforce") == 0
        notes = {e.pcs_id: e.reason for e in audit.entries}
        assert notes[chosen["pcs_id"]] == "vrf_invalid:seed_mismatch"
        assert notes[missing["pcs_id"]] == "vrf_invalid:missing"


async def test_report_only_note_joins_the_decision_reason(tmp_path: Path) -> None:
    env = {"VRF_ENABLED": "true", "VRF_PUBLIC_KEY": b64(PK), "VRF_MODE": "report_only"}
    async with serving(tmp_path, **env) as (_app, client, audit):
        pcs = vrf_pcs(SK, seed=42, regime="non_sticky")  # claimed regime is wrong
        res = await submit(client, pcs)
        assert res.status_code == 202 and res.json()["reason"] == "regime_mismatch"
        assert audit.entries[-1].reason == "regime_mismatch;vrf_invalid:seed_mismatch"


async def test_signature_is_checked_before_the_vrf(tmp_path: Path) -> None:
    env = {"VRF_ENABLED": "true", "VRF_PUBLIC_KEY": PK.hex()}
    async with serving(tmp_path, **env) as (app, client, _audit):
        forged = vrf_pcs(SK, key="not-the-tenant-key", seed=42)
        res = await submit(client, forged)
        assert res.status_code == 401 and res.json()["error"] == "signature_invalid"
        text = app_metrics(app)
        assert metric(text, "flk_signature_errors_total") == 1
        assert metric(text, "flk_vrf_invalid_by_tenant_total", tenant_id="default") == 0


async def test_vrf_disabled_ignores_proofs(tmp_path: Path) -> None:
    async with serving(tmp_path) as (app, client, _audit):
        assert (await submit(client, vrf_pcs(SK, seed=42))).status_code == 200
        assert metric(app_metrics(app), "flk_vrf_verified_total") == 0


async def test_embedded_default_creates_a_local_vrf_key(tmp_path: Path) -> None:
    async with serving(tmp_path, VRF_ENABLED="true") as (_app, client, _audit):
        key_file = tmp_path / "data" / "vrf.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        local_sk = bytes.fromhex(key_file.read_text().strip())
        assert (await submit(client, vrf_pcs(local_sk))).status_code == 200
        assert (await submit(client, vrf_pcs(SK, shard_id="x"))).status_code == 401
    # A restart keeps the same key.
    async with serving(tmp_path, VRF_ENABLED="true") as (_app, client, _audit):
        assert bytes.fromhex(key_file.read_text().strip()) == local_sk
        assert (await submit(client, vrf_pcs(local_sk, shard_id="y"))).status_code == 200


def test_local_vrf_key_with_loose_mode_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "vrf.key").write_text(SK.hex() + "\n")
    os.chmod(data / "vrf.key", 0o644)
    settings = Settings.from_env({"DATA_DIR": str(data), "VRF_ENABLED": "true"})
    with pytest.raises(ConfigError, match=r"vrf.key has mode 0644; it must be 0600"):
        build_resolver(settings, default_policy())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VRF_PUBLIC_KEY": PK.hex()}, "VRF_PUBLIC_KEY is set but VRF_ENABLED is not true"),
        ({"VRF_PUBLIC_KEY": PK.hex(), "VRF_ENABLED": "true", "MULTI_TENANT": "true",
          "TENANTS": f"acme:hmac:{HMAC_KEY}"}, "VRF_PUBLIC_KEY is only used in single-tenant"),
        ({"VRF_PUBLIC_KEY": "c2hvcnQ=", "VRF_ENABLED": "true"}, "VRF_PUBLIC_KEY: public key must"),
    ],
)  # fmt: skip
def test_vrf_configuration_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_vrf_enabled_needs_a_key_for_every_tenant(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"MULTI_TENANT": "true", "TENANTS": f"acme:hmac:{HMAC_KEY}", "VRF_ENABLED": "true",
         "DATA_DIR": str(tmp_path)}
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"tenant 'acme': vrf: VRF_ENABLED=true requires"):
        build_resolver(settings, default_policy())


def test_tenant_vrf_mode_defaults_to_vrf_mode(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(
        f'[[tenants]]\nid = "acme"\nkeys = [{{ id = "k", alg = "hmac", key = "{HMAC_KEY}" }}]\n'
        f'vrf = {{ public_key = "{b64(PK)}" }}\n'
    )
    settings = Settings.from_env(
        {"MULTI_TENANT": "true", "TENANTS_FILE": str(path), "VRF_MODE": "report_only",
         "DATA_DIR": str(tmp_path)}
    )  # fmt: skip
    resolver, _ = build_resolver(settings, default_policy())
    (acme,) = resolver.tenants()
    assert acme.vrf is not None and acme.vrf.mode == "report_only"


async def test_verification_on_worker_threads_gives_the_same_answers(tmp_path: Path) -> None:
    env = {"VRF_ENABLED": "true", "VRF_PUBLIC_KEY": PK.hex(), "VRF_VERIFY_THREADS": "2"}
    async with serving(tmp_path, **env) as (app, client, _audit):
        good = [vrf_pcs(SK, shard_id=f"t{i}") for i in range(6)]
        bad = [vrf_pcs(SK, shard_id=f"u{i}", seed=i) for i in range(6)]
        answers = await asyncio.gather(*(submit(client, p) for p in good + bad))
        assert [a.status_code for a in answers] == [200] * 6 + [401] * 6
        text = app_metrics(app)
        assert metric(text, "flk_vrf_verified_total") == 6
        assert metric(text, "flk_vrf_invalid_total", reason="seed_mismatch", mode="enforce") == 6
