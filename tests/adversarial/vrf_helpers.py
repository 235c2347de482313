"""Helpers of the adversarial tests: PCS with ECVRF proofs, metric readers."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from server_helpers import HMAC_KEY, make_pcs

from fractal_lba.adversarial import vrf


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
