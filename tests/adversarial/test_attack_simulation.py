"""Attack simulation: adversarial PCS over HTTP against a real ``flk serve`` process.

Three tenants with their own HMAC and ECVRF keys (acme and globex enforce, initech
report_only). Every attack asserts the status, the reason and the metric that moved.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from server_helpers import ServerProcess, counts_for, make_pcs
from vrf_helpers import b64, body, metric, vrf_pcs

from fractal_lba.adversarial import vrf
from fractal_lba.signals import budget, d_hat, regime

pytestmark = pytest.mark.slow

ADMIN = "attack-sim-admin-token"
KEYS = {"acme": "acme-hmac-key", "globex": "globex-hmac-key", "initech": "initech-hmac-key"}
VRF_KEYS = {t: vrf.keygen() for t in KEYS}
MODES = {"acme": "enforce", "globex": "enforce", "initech": "report_only"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("attack")
    lines: list[str] = []
    for tid, key in KEYS.items():
        pk = b64(VRF_KEYS[tid][1])
        lines += [
            "[[tenants]]", f'id = "{tid}"',
            f'keys = [{{ id = "k1", alg = "hmac", key = "{key}" }}]',
            f'vrf = {{ public_key = "{pk}", mode = "{MODES[tid]}" }}', "",
        ]  # fmt: skip
    (root / "tenants.toml").write_text("\n".join(lines))
    env = {
        "MULTI_TENANT": "true",
        "TENANTS_FILE": str(root / "tenants.toml"),
        "ADMIN_TOKEN": ADMIN,
    }
    srv = ServerProcess(root / "data", env).start()
    try:
        yield srv
    finally:
        srv.stop()


class Client:
    def __init__(self, server: ServerProcess) -> None:
        self.url = server.url
        self.http = httpx.Client(timeout=30)

    def submit(self, tenant: str, pcs: dict[str, Any]) -> httpx.Response:
        headers = {"content-type": "application/json", "x-tenant-id": tenant}
        return self.http.post(self.url + "/v1/pcs/submit", content=body(pcs), headers=headers)

    def metrics(self) -> str:
        return self.http.get(self.url + "/metrics").text


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    c = Client(server)
    yield c
    c.http.close()


def attack(tenant: str, *, shard: str, epoch: int = 1, **kw: Any) -> dict[str, Any]:
    """A PCS of ``tenant`` with an honest VRF proof, signed with the tenant's key."""
    return vrf_pcs(VRF_KEYS[tenant][0], tenant, key=KEYS[tenant], shard_id=shard, epoch=epoch, **kw)


def delta(client: Client, before: str, name: str, **labels: str) -> float:
    return metric(client.metrics(), name, **labels) - metric(before, name, **labels)


def test_honest_pcs_is_accepted(client: Client) -> None:
    before = client.metrics()
    res = client.submit("acme", attack("acme", shard="honest"))
    assert res.status_code == 200 and res.json()["accepted"] is True
    assert delta(client, before, "flk_vrf_verified_total") == 1
    assert delta(client, before, "flk_accepted_by_tenant_total", tenant_id="acme") == 1


def test_non_monotonic_n_j(client: Client) -> None:
    before = client.metrics()
    n_j = {"2": 4, "4": 16, "8": 9, "16": 256, "32": 1024}  # N_8 < N_4
    res = client.submit("acme", attack("acme", shard="non-monotonic", N_j=n_j))
    assert res.status_code == 202
    assert (res.json()["accepted"], res.json()["reason"]) == (False, "sanity:nj_monotonic")
    assert delta(client, before, "flk_sanity_check_failed_total", check="nj_monotonic") == 1
    assert delta(client, before, "flk_escalated_by_tenant_total", tenant_id="acme") == 1


def test_coh_star_out_of_bounds(client: Client) -> None:
    before = client.metrics()
    res = client.submit("acme", attack("acme", shard="coh-high", coh_star=1.3))
    assert res.status_code == 202
    assert (res.json()["accepted"], res.json()["reason"]) == (False, "coh_out_of_bounds")
    assert delta(client, before, "flk_sanity_check_failed_total", check="coh_star_range") == 1


def test_coh_star_steered_by_a_chosen_seed(client: Client) -> None:
    """The agent re-ran coh_star with seeds of its choosing and kept the best: seed != VRF."""
    before = client.metrics()
    res = client.submit("acme", attack("acme", shard="steered", seed=1234, coh_star=0.99))
    assert res.status_code == 401
    assert res.json() == {
        "error": "vrf_invalid",
        "field": "seed",
        "detail": "seed is not derived from the VRF output",
    }
    assert (
        delta(client, before, "flk_vrf_invalid_total", reason="seed_mismatch", mode="enforce") == 1
    )
    assert delta(client, before, "flk_vrf_invalid_by_tenant_total", tenant_id="acme") == 1
    assert delta(client, before, "flk_signature_errors_total") == 0


def _edge(offset: float, shard: str) -> dict[str, Any]:
    n_j = counts_for(1.2)
    scales = sorted(int(s) for s in n_j)
    d_re = round(d_hat(scales, [n_j[str(s)] for s in scales]), 9)
    claimed = round(d_re + offset, 9)
    coh, r = 0.5, 0.5
    return attack(
        "acme", shard=shard, N_j=n_j, D_hat=claimed, coh_star=coh, r=r,
        regime=regime(claimed, coh), budget=round(budget(d_re, coh, r), 9),
    )  # fmt: skip


def test_d_hat_at_the_tolerance_edge(client: Client) -> None:
    before = client.metrics()
    inside = client.submit("acme", _edge(0.149, "edge-inside"))
    assert inside.status_code == 200 and inside.json()["reason"] is None
    outside = client.submit("acme", _edge(0.151, "edge-outside"))
    assert outside.status_code == 202
    assert (outside.json()["accepted"], outside.json()["reason"]) == (
        False,
        "dhat_out_of_tolerance",
    )
    assert delta(client, before, "flk_accepted_by_tenant_total", tenant_id="acme") == 1
    assert delta(client, before, "flk_escalated_by_tenant_total", tenant_id="acme") == 1


def _invalid_reason_delta(client: Client, before: str, reason: str) -> float:
    return delta(client, before, "flk_vrf_invalid_total", reason=reason, mode="enforce")


def test_invalid_vrf_proof(client: Client) -> None:
    pcs = attack("acme", shard="tampered")
    pi = bytearray(base64.b64decode(pcs["vrf"]["proof"]))
    pi[40] ^= 0x01  # a challenge byte
    pcs["vrf"]["proof"] = b64(bytes(pi))
    before = client.metrics()
    res = client.submit("acme", pcs)
    assert res.status_code == 401
    assert (res.json()["error"], res.json()["field"]) == ("vrf_invalid", "vrf.proof")
    assert _invalid_reason_delta(client, before, "proof_invalid") == 1
    assert delta(client, before, "flk_signature_errors_total") == 0


def test_vrf_from_another_tenants_key(client: Client) -> None:
    """acme's PCS with a proof made by globex's VRF key (for acme's own alpha)."""
    pcs = attack("acme", shard="foreign-key")
    foreign = vrf_pcs(VRF_KEYS["globex"][0], "acme", key=KEYS["acme"], shard_id="foreign-key")
    pcs.update(seed=foreign["seed"], vrf=foreign["vrf"])
    before = client.metrics()
    res = client.submit("acme", pcs)
    assert res.status_code == 401 and res.json()["field"] == "vrf.proof"
    assert _invalid_reason_delta(client, before, "proof_invalid") == 1
    # The same proof is valid for globex's tenant only under globex's alpha: a globex PCS for
    # the same shard and epoch with globex's proof is accepted.
    assert client.submit("globex", attack("globex", shard="foreign-key")).status_code == 200


def test_vrf_of_another_tenants_alpha(client: Client) -> None:
    """globex's valid proof (its key, its alpha) replayed in an acme PCS signed by acme."""
    stolen = attack("globex", shard="stolen")
    pcs = attack("acme", shard="stolen")
    pcs.update(seed=stolen["seed"], vrf=stolen["vrf"])
    before = client.metrics()
    res = client.submit("acme", pcs)
    assert res.status_code == 401 and res.json()["error"] == "vrf_invalid"
    assert _invalid_reason_delta(client, before, "proof_invalid") == 1


def test_vrf_for_another_epoch(client: Client) -> None:
    old = attack("acme", shard="epochs", epoch=1)
    assert client.submit("acme", old).status_code == 200
    replayed = attack("acme", shard="epochs", epoch=2)
    replayed.update(seed=old["seed"], vrf=old["vrf"])  # epoch 1's proof and seed
    before = client.metrics()
    res = client.submit("acme", replayed)
    assert res.status_code == 401 and res.json()["field"] == "vrf.proof"
    assert _invalid_reason_delta(client, before, "proof_invalid") == 1


def test_missing_vrf_in_enforce_mode(client: Client) -> None:
    pcs = make_pcs(key=KEYS["acme"], shard_id="no-proof")  # version 0.1: no vrf field
    before = client.metrics()
    res = client.submit("acme", pcs)
    assert res.status_code == 401 and res.json()["field"] == "vrf"
    assert _invalid_reason_delta(client, before, "missing") == 1


def test_report_only_tenant_is_counted_not_refused(client: Client) -> None:
    pcs = attack("initech", shard="chosen-seed", seed=77)
    before = client.metrics()
    res = client.submit("initech", pcs)
    assert res.status_code == 200 and res.json()["accepted"] is True
    assert (
        delta(client, before, "flk_vrf_invalid_total", reason="seed_mismatch", mode="report_only")
        == 1
    )
    assert delta(client, before, "flk_vrf_invalid_by_tenant_total", tenant_id="initech") == 1
    lineage = client.http.get(
        f"{client.url}/v1/audit/lineage/{pcs['pcs_id']}",
        params={"tenant_id": "initech"},
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert lineage.status_code == 200
    assert "vrf_invalid:seed_mismatch" in lineage.text
