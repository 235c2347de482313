"""Pre-built, valid, signed PCS bodies for load generation.

Every body is distinct (random ``merkle_root``, so distinct ``pcs_id``), signed with the
tenant's HMAC key through :mod:`fractal_lba.contract`, and claims exactly what the verifier
recomputes (``D_hat`` from ``N_j``, ``regime``/``budget`` from :mod:`fractal_lba.signals`), so
a first submission is answered 200. :func:`check_accepted` proves that with the verifier's
own pure ``decide`` before anything is sent.

File format (read by ``bench/rotate.lua`` and the open-loop driver): one request a line,
``<tenant_id>\\t<json body>``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fractal_lba.contract import (
    FT,
    PCS,
    compute_pcs_id,
    decode_pcs,
    encode_pcs,
    make_signer,
    round9,
)
from fractal_lba.policy import default_policy
from fractal_lba.signals import budget, d_hat, regime
from fractal_lba.decision import decide

SCALES = (2, 4, 8, 16, 32)
_DIMS = (0.9, 1.0, 1.1, 1.2, 1.3, 1.4)


@dataclass(frozen=True)
class Tenant:
    """A tenant id and its HMAC key text (as in ``TENANTS=id:hmac:key``)."""

    id: str
    key: str


def default_tenants(n: int) -> list[Tenant]:
    """``bench-0 .. bench-{n-1}`` with distinct keys."""
    return [Tenant(f"bench-{i}", f"bench-key-{i}-0123456789abcdef") for i in range(n)]


def make_pcs(tenant: Tenant, i: int, rng: random.Random) -> PCS:
    """The ``i``-th PCS of ``tenant``: distinct, signed, and accepted (200) by the verifier."""
    dim = _DIMS[i % len(_DIMS)]
    n_j = {str(s): max(1, round(s**dim)) for s in SCALES}
    dh = round9(d_hat(SCALES, [n_j[str(s)] for s in SCALES]))
    coh = round9(rng.uniform(0.72, 0.9))
    r = round9(rng.uniform(0.3, 0.8))
    merkle = rng.randbytes(32).hex()
    shard = f"{tenant.id}-shard-{i % 64:02d}"
    epoch = i
    pcs = PCS(
        pcs_id=compute_pcs_id(merkle, epoch, shard),
        schema="fractal-lba-kakeya",
        version="0.1",
        shard_id=shard,
        epoch=epoch,
        attempt=1,
        sent_at="2025-01-01T00:00:00Z",
        seed=42,
        scales=list(SCALES),
        N_j=n_j,
        coh_star=coh,
        v_star=[0.0, 1.0, 0.0],
        D_hat=dh,
        r=r,
        regime=regime(dh, coh),
        budget=round9(budget(dh, coh, r)),
        merkle_root=merkle,
        ft=FT(outbox_seq=i + 1),
    )
    pcs.sig = make_signer("hmac", tenant.key).sign(pcs.signed_payload())
    return pcs


def generate(tenants: Sequence[Tenant], n: int, *, seed: int = 1) -> Iterator[tuple[str, bytes]]:
    """``n`` distinct (tenant_id, body) pairs, tenants interleaved round-robin."""
    rng = random.Random(seed)
    for i in range(n):
        tenant = tenants[i % len(tenants)]
        yield tenant.id, encode_pcs(make_pcs(tenant, i // len(tenants), rng))


def check_accepted(body: bytes, tenant_id: str) -> None:
    """Raise AssertionError unless the verifier's own pure decision for ``body`` is 200."""
    pcs = decode_pcs(body)
    result = decide(pcs, tenant_id, default_policy(), strict=True)
    if result.status_code != 200:
        raise AssertionError(f"generated PCS would be answered {result.status_code}: {result}")


def write_bodies(path: Path, items: Sequence[tuple[str, bytes]]) -> Path:
    """Write ``tenant\\tbody`` lines (bodies are compact JSON, never containing newlines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for tenant_id, body in items:
            fh.write(tenant_id.encode() + b"\t" + body + b"\n")
    return path


def read_bodies(path: Path) -> list[tuple[str, bytes]]:
    """Inverse of :func:`write_bodies`."""
    out: list[tuple[str, bytes]] = []
    with open(path, "rb") as fh:
        for line in fh:
            tenant, _, body = line.rstrip(b"\n").partition(b"\t")
            out.append((tenant.decode(), body))
    return out
