"""The verifier and the agent reproduce the PCS 0.3 vectors (tests/data/vectors/signing-v03.json)
byte for byte: the server from the body as received, the agent from its own PCS model."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fractal_lba.agent import sign_pcs
from fractal_lba.contract import PCS, KeyRing, SignatureError, VerificationKey, make_signer
from fractal_lba.contract.model import decode_record, signed_bytes

V3 = json.loads(
    (Path(__file__).parents[1] / "data" / "vectors" / "signing-v03.json").read_text("utf-8")
)["vectors"]


def _ring(v: dict[str, Any]) -> KeyRing:
    if "hmac_key_utf8" in v:
        return KeyRing([VerificationKey.from_text("k", "hmac", v["hmac_key_utf8"])])
    return KeyRing([VerificationKey.from_text("k", "ed25519", v["ed25519_public_b64"])])


@pytest.mark.parametrize("v", V3, ids=lambda v: v["name"])
def test_the_server_verifies_the_vector_from_the_body(v: dict[str, Any]) -> None:
    body = json.dumps({**v["record"], "sig": v["sig_b64"]}, ensure_ascii=False).encode()
    pcs, record = decode_record(body)
    message = signed_bytes(pcs, record, v["tenant_id"])
    assert message.hex() == v["message_hex"]
    sig = base64.b64decode(v["sig_b64"])
    assert _ring(v).verify(message, sig, 0.0, full_record=True).key_id == "k"
    with pytest.raises(SignatureError):
        _ring(v).verify(signed_bytes(pcs, record, "someone-else"), sig, 0.0, full_record=True)


@pytest.mark.parametrize("v", V3, ids=lambda v: v["name"])
def test_the_agent_signs_the_vector(v: dict[str, Any]) -> None:
    pcs = msgspec.convert(v["record"], PCS)
    if "hmac_key_utf8" in v:
        signer = make_signer("hmac", v["hmac_key_utf8"])
    else:
        seed = base64.b64encode(bytes.fromhex(v["ed25519_seed_hex"])).decode()
        signer = make_signer("ed25519", seed)
    assert msgspec.to_builtins(pcs) == v["record"]  # what the agent sends is the vector
    assert sign_pcs(pcs, signer, tenant_id=v["tenant_id"]).sig == v["sig_b64"]
