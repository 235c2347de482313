"""Usage examples of fractal-lba-client, type-checked by mypy --strict (make test).

Run against a local verifier (``make run``; it signs with ``data/hmac.key``)::

    python sdk/python/examples/quickstart.py http://127.0.0.1:8080 "$(cat data/hmac.key)"
"""

from __future__ import annotations

import asyncio
import sys

from fractal_lba_client import (
    AsyncFractalLBAClient,
    FractalLBAClient,
    RateLimitError,
    TLSConfig,
    ValidationError,
    VerifyResult,
)

RECORD: dict[str, object] = {
    "shard_id": "shard-001",
    "epoch": 1,
    "seed": 42,
    "scales": [2, 4, 8, 16, 32],
    "N_j": {"2": 2, "4": 4, "8": 8, "16": 16, "32": 32},
    "coh_star": 0.75,
    "v_star": [0.0, 1.0, 0.0],
    "D_hat": 1.0,
    "r": 0.5,
    "regime": "sticky",
    "budget": 0.4,
    "merkle_root": "ab" * 32,
}


def submit(url: str, key: str) -> VerifyResult:
    """Sync: sign as 0.3 (the default) and submit; typed result or a typed exception."""
    with FractalLBAClient(url, signing_key=key) as client:
        try:
            return client.submit_pcs(RECORD)
        except RateLimitError as exc:
            print(f"rate limited, retry after {exc.retry_after} s")
            raise
        except ValidationError as exc:
            print(f"not sent: {exc.field}: {exc.detail}")
            raise


async def submit_async(url: str, key: str, tenant: str | None = None) -> VerifyResult:
    """Async: the same surface; ``tenant_id`` binds the 0.3 signature to that tenant."""
    async with AsyncFractalLBAClient(url, tenant_id=tenant, signing_key=key) as client:
        return await client.submit_pcs({**RECORD, "epoch": 2})


def tls_client(url: str, key: str, ca: str) -> FractalLBAClient:
    """Verify the server against a private CA and present a client certificate (mTLS)."""
    return FractalLBAClient(
        url,
        signing_key=key,
        tls=TLSConfig(ca_file=ca, client_cert="client.pem", client_key="client.key"),
    )


if __name__ == "__main__":
    base, secret = sys.argv[1], sys.argv[2]
    print(submit(base, secret))
    print(asyncio.run(submit_async(base, secret)))
