"""Helpers of the adversarial tests: PCS with ECVRF proofs, an in-process verifier, metrics."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import generate_latest
from server_helpers import HMAC_KEY, ListAudit, make_pcs

from fractal_lba.adversarial import vrf
from fractal_lba.config import Settings
from fractal_lba.policy import Policy
from fractal_lba.server import VerifierApp, create_app


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def vrf_pcs(
    sk: bytes,
    tenant_id: str = "default",
    *,
    key: str = HMAC_KEY,
    shard_id: str = "shard-001",
    epoch: int = 1,
    proof_alpha: bytes | None = None,
    **claims: Any,
) -> dict[str, Any]:
    """A version 0.2 PCS whose seed and ``vrf`` come from ``sk``'s proof for the tenant's
    alpha (or ``proof_alpha``), signed with ``key``; ``claims`` override anything."""
    alpha = proof_alpha if proof_alpha is not None else vrf.alpha_for(tenant_id, shard_id, epoch)
    pi = vrf.prove(sk, alpha)
    beta = vrf.proof_to_hash(pi)
    fields: dict[str, Any] = {
        "seed": vrf.seed_from_output(beta),
        "vrf": {"proof": b64(pi), "output": b64(beta)},
    }
    fields.update(claims)
    return make_pcs(key=key, shard_id=shard_id, epoch=epoch, version="0.2", **fields)


def body(pcs: dict[str, Any]) -> bytes:
    return json.dumps(pcs).encode()


def metric(text: str, name: str, **labels: str) -> float:
    """Value of one sample in Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
        if got == want:
            return float(m.group(3))
    return 0.0


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, policy: Policy | None = None, **env: str
) -> AsyncIterator[tuple[VerifierApp, httpx.AsyncClient, ListAudit]]:
    """A running in-process verifier (memory store, list audit) and an httpx client on it."""
    base = {"DATA_DIR": str(tmp_path / "data"), "PCS_HMAC_KEY": HMAC_KEY, "DEDUP_BACKEND": "memory"}
    audit = ListAudit()
    app = create_app(Settings.from_env({**base, **env}), audit=audit, policy=policy)
    async with app.running():
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://v")
        try:
            yield app, client, audit
        finally:
            await client.aclose()


async def submit(client: httpx.AsyncClient, pcs: dict[str, Any]) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return await client.post("/v1/pcs/submit", content=body(pcs), headers=headers)


def app_metrics(app: VerifierApp) -> str:
    return generate_latest(app.registry).decode()
