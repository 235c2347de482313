"""PCS contract: signing vectors byte for byte, round9, pcs_id, strict decoding, keyrings."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fractal_lba.contract import (
    PCS,
    HmacSigner,
    KeyFormatError,
    KeyRing,
    Secret,
    SignatureError,
    ValidationError,
    VerificationKey,
    compute_pcs_id,
    decode_pcs,
    decode_signature,
    encode_pcs,
    make_signer,
    parse_hmac_key,
    round9,
    signature_payload,
)
from fractal_lba.contract.keys import generate_key

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "vectors" / "signing.json").read_text())[
    "vectors"
]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["input"]["shard_id"])
def test_signing_vectors(v: dict[str, Any]) -> None:
    inp = v["input"]
    assert compute_pcs_id(inp["merkle_root"], inp["epoch"], inp["shard_id"]) == v["pcs_id"]
    payload = signature_payload(**inp)
    assert payload == v["payload"].encode()
    assert make_signer("hmac", v["hmac_key_utf8"]).sign(payload) == v["hmac_sha256_b64"]
    seed_b64 = base64.b64encode(bytes.fromhex(v["ed25519_seed_hex"])).decode()
    sig = make_signer("ed25519", seed_b64).sign(hashlib.sha256(payload).digest())
    assert sig == v["ed25519_sig_over_sha256_payload_b64"]
    ring = KeyRing([VerificationKey.from_text("k", "ed25519", v["ed25519_public_b64"])])
    assert ring.verify(payload, base64.b64decode(sig), 0).key_id == "k"


def test_round9_tie_goes_up_unlike_round() -> None:
    assert round9(0.1234567885) == 0.123456789
    assert round(0.1234567885, 9) != 0.123456789  # the bug round9 exists for
    assert round9(4e-10) == 0.0
    assert round9(0.99999999951) == 1.0


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_round9_is_idempotent(x: float) -> None:
    assert round9(round9(x)) == round9(x)


def _pcs(**over: Any) -> dict[str, Any]:
    root = "ab" * 32
    base: dict[str, Any] = {
        "pcs_id": compute_pcs_id(root, 3, "s-1"),
        "schema": "fractal-lba-kakeya",
        "version": "0.1",
        "shard_id": "s-1",
        "epoch": 3,
        "attempt": 1,
        "sent_at": "2025-01-01T00:00:00Z",
        "seed": 42,
        "scales": [2, 4, 8],
        "N_j": {"2": 3, "4": 5, "8": 9},
        "coh_star": 0.7,
        "v_star": [1.0, 0.0, 0.0],
        "D_hat": 0.75,
        "r": 0.5,
        "regime": "mixed",
        "budget": 0.4,
        "merkle_root": root,
        "sig": base64.b64encode(b"x" * 32).decode(),
    }
    base.update(over)
    return base


def test_decode_roundtrip() -> None:
    body = json.dumps(_pcs()).encode()
    pcs = decode_pcs(body)
    assert isinstance(pcs, PCS)
    assert decode_pcs(encode_pcs(pcs)) == pcs


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (b"{not json", "body", "malformed_json"),
        (json.dumps(_pcs(epoch="3")).encode(), "epoch", "invalid_field"),
        (json.dumps(_pcs(D_hat=float("nan"))).encode(), "D_hat", "invalid_number"),
        (json.dumps(_pcs(v_star=[1.0, float("inf"), 0.0])).encode(), "v_star[1]", "invalid_number"),
        (json.dumps(_pcs(version="9.9")).encode(), "version", "unsupported_version"),
        (json.dumps(_pcs(schema="other")).encode(), "schema", "unknown_schema"),
        (json.dumps(_pcs(pcs_id="0" * 64)).encode(), "pcs_id", "pcs_id_mismatch"),
        (json.dumps(_pcs(merkle_root="XYZ")).encode(), "merkle_root", "invalid_field"),
        (json.dumps(_pcs(regime="weird")).encode(), "regime", "invalid_field"),
        (json.dumps(_pcs(meta={"a": "b"})).encode(), "meta", "invalid_field"),
        (json.dumps(_pcs(extra=1)).encode(), "extra", "unknown_field"),
        (
            json.dumps({k: v for k, v in _pcs().items() if k != "sig"}).encode(),
            "sig",
            "missing_field",
        ),
    ],
)
def test_decode_errors_name_the_field(body: bytes, field: str, code: str) -> None:
    with pytest.raises(ValidationError) as exc:
        decode_pcs(body)
    assert exc.value.field == field
    assert exc.value.code == code


def test_meta_limits_in_v02() -> None:
    ok = decode_pcs(json.dumps(_pcs(version="0.2", meta={"a": "b"})).encode())
    assert ok.meta == {"a": "b"}
    with pytest.raises(ValidationError) as exc:
        decode_pcs(json.dumps(_pcs(version="0.2", meta={"a": "x" * 257})).encode())
    assert exc.value.field == "meta"  # meta keys are data: never named in an error


def test_error_never_echoes_values() -> None:
    secret_value = "SUPER-SECRET-SHARD-VALUE"
    with pytest.raises(ValidationError) as exc:
        decode_pcs(json.dumps(_pcs(epoch=secret_value)).encode())
    assert secret_value not in str(exc.value)


def test_bad_base64_signature() -> None:
    with pytest.raises(ValidationError) as exc:
        decode_signature("not base64!!")
    assert exc.value.field == "sig"


def test_keyring_rotation_window_and_legacy() -> None:
    payload = b'{"a":1}'
    old = VerificationKey.from_text("old", "hmac", "k-old", not_after=100.0)
    new = VerificationKey.from_text("new", "hmac", "k-new", not_before=50.0)
    ring = KeyRing([old, new])
    sig_old = base64.b64decode(HmacSigner(parse_hmac_key("k-old")).sign(payload))
    sig_new = base64.b64decode(HmacSigner(parse_hmac_key("k-new")).sign(payload))
    assert ring.verify(payload, sig_old, 60.0).key_id == "old"  # overlap
    assert ring.verify(payload, sig_new, 60.0).key_id == "new"
    with pytest.raises(SignatureError):
        ring.verify(payload, sig_old, 100.0)  # retired
    with pytest.raises(SignatureError):
        ring.verify(payload, sig_new, 10.0)  # not yet valid
    import hmac

    legacy = hmac.new(b"k-new", hashlib.sha256(payload).digest(), hashlib.sha256).digest()
    with pytest.raises(SignatureError):
        ring.verify(payload, legacy, 60.0)
    assert KeyRing([new], accept_legacy_digest=True).verify(payload, legacy, 60.0).legacy_digest


def test_key_formats_and_reprs() -> None:
    assert (
        parse_hmac_key("base64:" + base64.b64encode(b"\x00\x01").decode()).reveal() == b"\x00\x01"
    )
    with pytest.raises(KeyFormatError):
        parse_hmac_key("base64:!!!")
    with pytest.raises(KeyFormatError):
        VerificationKey.from_text("k", "ed25519", base64.b64encode(b"short").decode())
    with pytest.raises(KeyFormatError):
        make_signer("rsa", "x")
    assert "k-secret" not in repr(Secret(b"k-secret"))
    key = VerificationKey.from_text("k", "hmac", "k-secret")
    assert "k-secret" not in repr(key)
    gen = generate_key("ed25519")
    assert gen.public is not None and len(base64.b64decode(gen.public)) == 32


def test_ed25519_keyring_goes_through_libsodium_and_fails_closed() -> None:
    from nacl.signing import VerifyKey

    gen = generate_key("ed25519")
    assert gen.public is not None
    ring = KeyRing([VerificationKey.from_text("k", "ed25519", gen.public)])
    assert isinstance(ring.keys[0].ed25519_key, VerifyKey)
    payload = b'{"a":1}'
    sig = base64.b64decode(
        make_signer("ed25519", gen.secret).sign(hashlib.sha256(payload).digest())
    )
    assert ring.verify(payload, sig, 0).key_id == "k"
    for bad in (sig[:-1], sig + b"x", b"", bytes(64), sig[:32] + bytes(32)):
        with pytest.raises(SignatureError):
            ring.verify(payload, bad, 0)
    with pytest.raises(SignatureError):  # 0.3: over the message itself, not its digest
        ring.verify(payload, sig, 0, full_record=True)
