"""ECVRF-EDWARDS25519-SHA512-TAI against RFC 9381 vectors, tampering and edge-point encodings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import bindings as nb

from fractal_lba.adversarial import vrf
from fractal_lba.adversarial.vrf import VrfError, VrfPublicKey

DATA = Path(__file__).resolve().parents[1] / "data" / "vectors"
L = 2**252 + 27742317777372353535851937790883648493


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text("utf-8"))


SHARED = _load("ecvrf.json")["vectors"]
RFC = _load("ecvrf_rfc9381.json")
EDGE = _load("ed25519_edge_points.json")
ALL_VECTORS = [*SHARED, *RFC["vectors"]]
V16 = RFC["vectors"][0]
PK16 = bytes.fromhex(V16["public_key_hex"])
PI16 = bytes.fromhex(V16["pi_hex"])
LOW_ORDER = [bytes.fromhex(p["hex"]) for p in EDGE["low_order"]]
NON_CANONICAL = [bytes.fromhex(p["hex"]) for p in EDGE["low_order"] if not p["canonical"]] + [
    bytes.fromhex(p["hex"]) for p in EDGE["non_canonical_not_low_order"]
]


def _reason(fn: Any, *args: Any) -> str:
    with pytest.raises(VrfError) as info:
        fn(*args)
    assert info.value.code == "vrf_invalid"
    return info.value.reason


@pytest.mark.parametrize("v", ALL_VECTORS, ids=lambda v: v.get("name", "shared"))
def test_rfc9381_vectors(v: dict[str, str]) -> None:
    sk = bytes.fromhex(v["secret_key_seed_hex"])
    pk = bytes.fromhex(v["public_key_hex"])
    alpha = bytes.fromhex(v["alpha_hex"])
    pi = bytes.fromhex(v["pi_hex"])
    beta = bytes.fromhex(v["beta_hex"])
    assert vrf.public_key(sk) == pk
    assert vrf.prove(sk, alpha) == pi  # byte for byte
    assert vrf.verify(pk, alpha, pi) == beta
    assert vrf.proof_to_hash(pi) == beta


def test_draft10_four_point_challenge_is_rejected() -> None:
    d10 = RFC["draft10_four_point_challenge"]
    pi = bytes.fromhex(d10["pi_hex"])
    assert pi[:32] == PI16[:32] and pi != PI16  # same Gamma, other challenge
    assert _reason(vrf.verify, PK16, b"", pi) == "proof_invalid"


def test_every_single_bit_flip_of_pi_fails() -> None:
    key = VrfPublicKey.from_bytes(PK16)
    for i in range(vrf.PROOF_BYTES * 8):
        bad = bytearray(PI16)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(VrfError):
            key.verify(b"", bytes(bad))


def test_tampered_alpha_fails() -> None:
    v = RFC["vectors"][2]
    pk, pi = bytes.fromhex(v["public_key_hex"]), bytes.fromhex(v["pi_hex"])
    alpha = bytes.fromhex(v["alpha_hex"])
    key = VrfPublicKey.from_bytes(pk)
    assert key.verify(alpha, pi) == bytes.fromhex(v["beta_hex"])
    for i in range(len(alpha) * 8):
        bad = bytearray(alpha)
        bad[i // 8] ^= 1 << (i % 8)
        assert _reason(key.verify, bytes(bad), pi) == "proof_invalid"
    for other in (b"", alpha[:1], alpha + b"\x00", b"\x00" + alpha):
        assert _reason(key.verify, other, pi) == "proof_invalid"


def test_every_single_bit_flip_of_the_public_key_fails() -> None:
    for i in range(vrf.PUBLIC_KEY_BYTES * 8):
        bad = bytearray(PK16)
        bad[i // 8] ^= 1 << (i % 8)
        assert _reason(vrf.verify, bytes(bad), b"", PI16) in {
            "public_key_invalid",
            "proof_invalid",
        }


def test_proof_of_another_key_fails() -> None:
    _, other_pk = vrf.keygen()
    assert _reason(vrf.verify, other_pk, b"", PI16) == "proof_invalid"


def test_s_not_reduced_is_rejected() -> None:
    s = int.from_bytes(PI16[48:], "little")
    for bad_s in (s + L, L, 2**256 - 1):
        if bad_s >= 2**256:
            continue
        pi = PI16[:48] + bad_s.to_bytes(32, "little")
        assert _reason(vrf.verify, PK16, b"", pi) == "s_out_of_range"
        assert _reason(vrf.proof_to_hash, pi) == "s_out_of_range"


def test_zero_scalars_are_rejected() -> None:
    assert _reason(vrf.verify, PK16, b"", PI16[:48] + bytes(32)) == "proof_invalid"
    assert _reason(vrf.verify, PK16, b"", PI16[:32] + bytes(16) + PI16[48:]) == "proof_invalid"


@pytest.mark.parametrize("enc", LOW_ORDER, ids=lambda b: b.hex()[:8] + ".." + b.hex()[-4:])
def test_small_order_public_keys_are_rejected(enc: bytes) -> None:
    assert _reason(VrfPublicKey.from_bytes, enc) == "public_key_invalid"
    assert _reason(vrf.verify, enc, b"", PI16) == "public_key_invalid"


@pytest.mark.parametrize("enc", LOW_ORDER, ids=lambda b: b.hex()[:8] + ".." + b.hex()[-4:])
def test_small_order_gamma_is_rejected(enc: bytes) -> None:
    pi = enc + PI16[32:]
    assert _reason(vrf.verify, PK16, b"", pi) == "gamma_invalid"
    assert _reason(vrf.proof_to_hash, pi) == "gamma_invalid"


@pytest.mark.parametrize("enc", NON_CANONICAL, ids=lambda b: b.hex()[:8] + ".." + b.hex()[-4:])
def test_non_canonical_encodings_are_rejected(enc: bytes) -> None:
    assert _reason(VrfPublicKey.from_bytes, enc) == "public_key_invalid"
    assert _reason(vrf.verify, PK16, b"", enc + PI16[32:]) == "gamma_invalid"


def test_points_with_a_torsion_component_are_rejected() -> None:
    t8 = bytes.fromhex(EDGE["low_order"][8]["hex"])  # order 8
    y_plus_t = nb.crypto_core_ed25519_add(PK16, t8)
    assert _reason(VrfPublicKey.from_bytes, y_plus_t) == "public_key_invalid"
    gamma_plus_t = nb.crypto_core_ed25519_add(PI16[:32], t8)
    assert _reason(vrf.verify, PK16, b"", gamma_plus_t + PI16[32:]) == "gamma_invalid"


@pytest.mark.parametrize("n", [0, 32, 79, 81, 160])
def test_proof_length(n: int) -> None:
    assert _reason(vrf.verify, PK16, b"", (PI16 * 2)[:n]) == "proof_length"


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_public_key_length(n: int) -> None:
    assert _reason(VrfPublicKey.from_bytes, (PK16 * 3)[:n]) == "public_key_length"


def test_secret_key_length() -> None:
    assert _reason(vrf.prove, bytes(31), b"") == "secret_key_length"


@settings(max_examples=25, deadline=None)
@given(alpha=st.binary(max_size=96))
def test_prove_verify_roundtrip(alpha: bytes) -> None:
    sk, pk = vrf.keygen()
    pi = vrf.prove(sk, alpha)
    beta = vrf.verify(pk, alpha, pi)
    assert len(pi) == vrf.PROOF_BYTES and len(beta) == vrf.OUTPUT_BYTES
    assert vrf.prove(sk, alpha) == pi  # deterministic
    assert vrf.proof_to_hash(pi) == beta


def test_alpha_and_seed_follow_the_spec() -> None:
    assert vrf.alpha_for("acme", "shard-ü", 7) == "acme|shard-ü|7".encode()
    beta = bytes.fromhex(V16["beta_hex"])
    assert vrf.seed_from_output(beta) == int.from_bytes(beta[:8], "big") & (2**53 - 1)
    assert vrf.seed_from_output(b"\xff" * 64) == 2**53 - 1
    assert vrf.seed_from_output(bytes(64)) == 0


def test_repr_and_errors_never_show_secret_material() -> None:
    sk, pk = vrf.keygen()
    key = VrfPublicKey.from_bytes(pk)
    assert sk.hex() not in repr(key)
    with pytest.raises(VrfError) as info:
        vrf.verify(pk, b"x", PI16)
    assert PI16.hex() not in str(info.value) and pk.hex() not in str(info.value)


def test_unverified_output_is_beta_without_the_proof_check() -> None:
    assert vrf.unverified_output(PI16) == bytes.fromhex(V16["beta_hex"])
    forged = PI16[:32] + bytes(16) + PI16[48:]  # same Gamma, nonsense c: beta is the same
    assert vrf.unverified_output(forged) == bytes.fromhex(V16["beta_hex"])
    assert _reason(VrfPublicKey.from_bytes(PK16).check_proof, b"", forged) == "proof_invalid"
    assert _reason(vrf.unverified_output, LOW_ORDER[4] + PI16[32:]) == "gamma_invalid"
