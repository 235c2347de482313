"""The SDK alone reproduces the signing vectors of the repository byte for byte.

Runs in a venv where only ``fractal-lba-client`` is installed (``make test-sdk``): nothing
of the verifier is imported.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from fractal_lba_client import (
    compute_pcs_id,
    full_record_message,
    make_signer,
    round9,
    sign_record,
    signature_payload,
    signed_message,
)

VECTORS = Path(__file__).resolve().parents[3] / "tests" / "data" / "vectors"
V1 = json.loads((VECTORS / "signing.json").read_text())["vectors"]


@pytest.mark.parametrize("v", V1, ids=lambda v: v["input"]["shard_id"])
def test_v01_vectors(v: dict[str, Any]) -> None:
    inp = v["input"]
    assert compute_pcs_id(inp["merkle_root"], inp["epoch"], inp["shard_id"]) == v["pcs_id"]
    payload = signature_payload(**inp)
    assert payload == v["payload"].encode()
    record = {**inp, "version": "0.1"}
    assert signed_message(record) == payload
    assert sign_record(record, make_signer("hmac", v["hmac_key_utf8"])) == v["hmac_sha256_b64"]
    seed = bytes.fromhex(v["ed25519_seed_hex"])
    signer = make_signer("ed25519", base64.b64encode(seed).decode())
    assert sign_record(record, signer) == v["ed25519_sig_over_sha256_payload_b64"]
    assert make_signer("ed25519", seed).sign(b"x") == signer.sign(b"x")


def test_round9_tie_goes_up_unlike_round() -> None:
    assert round9(0.1234567885) == 0.123456789
    assert round(0.1234567885, 9) != 0.123456789  # the bug round9 exists for
    assert round9(4e-10) == 0.0
    assert round9(0.99999999951) == 1.0


def test_the_verifier_is_not_importable_here() -> None:
    """Guard of ``make test-sdk``: the fresh venv holds the SDK and nothing of the server."""
    import importlib.util
    import os

    if os.environ.get("FLK_SDK_ALONE") != "1":
        pytest.skip("only meaningful in the SDK-only venv (make test-sdk)")
    assert importlib.util.find_spec("fractal_lba") is None


V3 = json.loads((VECTORS / "signing-v03.json").read_text(encoding="utf-8"))["vectors"]


@pytest.mark.parametrize("v", V3, ids=lambda v: v["name"])
def test_v03_vectors(v: dict[str, Any]) -> None:
    record, tenant = v["record"], v["tenant_id"]
    assert signed_message(record, tenant).hex() == v["message_hex"]
    assert full_record_message({**record, "sig": "ignored"}, tenant).hex() == v["message_hex"]
    if "hmac_key_utf8" in v:
        signer = make_signer("hmac", v["hmac_key_utf8"])
    else:
        signer = make_signer("ed25519", bytes.fromhex(v["ed25519_seed_hex"]))
        assert signer.public_key_b64 == v["ed25519_public_b64"]  # type: ignore[attr-defined]
    assert sign_record(record, signer, tenant) == v["sig_b64"]
    other = "default" if tenant != "default" else "acme"
    assert sign_record(record, signer, other) != v["sig_b64"]  # bound to the tenant
