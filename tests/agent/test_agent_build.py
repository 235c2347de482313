"""Building and signing a PCS; key sources."""

from __future__ import annotations

import base64
from pathlib import Path

import msgspec
import numpy as np
import pytest

from fractal_lba.agent import (
    KeySourceError,
    build_pcs,
    load_signer,
    parse_events,
    read_key_text,
    sign_pcs,
    stamp_attempt,
)
from fractal_lba.agent.build import stamp_outbox_seq
from fractal_lba.contract import (
    KeyFormatError,
    KeyRing,
    SignatureError,
    ValidationError,
    VerificationKey,
    compute_pcs_id,
    decode_pcs,
    encode_pcs,
    full_record_message,
    generate_key,
)
from fractal_lba.contract.model import signed_bytes
from fractal_lba.signals import compute_signals

EVENTS = parse_events(
    b"timestamp,x,y,z\n"
    + b"\n".join(f"{i},{(i * 0.37) % 1!r},{(i * 0.71) % 1!r},0.5".encode() for i in range(200)),
    "csv",
)


@pytest.mark.parametrize("alg", ["hmac", "ed25519"])
def test_built_pcs_round_trips_and_verifies(alg: str) -> None:
    key = generate_key(alg)
    pcs = build_pcs(
        EVENTS, shard_id="shard-001", epoch=7, signer=load_signer(alg, key.secret), seed=3
    )
    again = decode_pcs(encode_pcs(pcs))  # strict decoder + validate_pcs
    assert again == pcs
    assert pcs.pcs_id == compute_pcs_id(pcs.merkle_root, 7, "shard-001")
    public = key.public if alg == "ed25519" else key.secret
    assert public is not None
    ring = KeyRing([VerificationKey.from_text("k1", alg, public)])
    ring.verify(
        signed_bytes(pcs, msgspec.to_builtins(pcs), "default"),
        base64.b64decode(pcs.sig),
        0.0,
        full_record=pcs.version == "0.3",
    )
    sig = compute_signals(EVENTS.points, EVENTS.timestamps, [2, 4, 8, 16, 32], 3)
    assert (pcs.D_hat, pcs.coh_star, pcs.r, pcs.budget) == (
        sig.D_hat,
        sig.coh_star,
        sig.r,
        sig.budget,
    )
    assert pcs.N_j == sig.N_j and pcs.regime == sig.regime and pcs.v_star == sig.v_star


def test_build_options() -> None:
    signer = load_signer("hmac", "k")
    pcs = build_pcs(
        EVENTS,
        shard_id="s",
        epoch=1,
        signer=signer,
        scales=[1, 3, 9],
        version="0.1",
        sent_at="2025-01-01T00:00:00Z",
        outbox_seq=12,
    )
    assert pcs.version == "0.1" and pcs.scales == [1, 3, 9] and set(pcs.N_j) == {"1", "3", "9"}
    assert pcs.ft is not None and pcs.ft.outbox_seq == 12
    assert pcs.sent_at == "2025-01-01T00:00:00Z"
    with pytest.raises(ValidationError, match="meta"):
        build_pcs(EVENTS, shard_id="s", epoch=1, signer=signer, version="0.1", meta={"a": "b"})
    meta = build_pcs(EVENTS, shard_id="s", epoch=1, signer=signer, meta={"source": "eu"})
    assert meta.meta == {"source": "eu"}


def test_same_events_same_identity_and_signature() -> None:
    signer = load_signer("hmac", "k")
    a = build_pcs(EVENTS, shard_id="s", epoch=1, signer=signer, sent_at="x")
    b = build_pcs(
        parse_events(b"timestamp,x,y,z\n1,2,3,4\n", "csv"),
        shard_id="s",
        epoch=1,
        signer=signer,
        sent_at="x",
    )
    c = build_pcs(EVENTS, shard_id="s", epoch=1, signer=signer, sent_at="x")
    assert a == c
    assert a.pcs_id != b.pcs_id


def test_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_key_text("plain") == "plain"
    keyfile = tmp_path / "k"
    keyfile.write_text("from-file\n")
    assert read_key_text(f"@{keyfile}") == "from-file"
    monkeypatch.setenv("FLK_TEST_KEY", "from-env")
    assert read_key_text("env:FLK_TEST_KEY") == "from-env"
    with pytest.raises(KeySourceError, match="not found"):
        read_key_text(f"@{tmp_path / 'nope'}")
    with pytest.raises(KeySourceError, match="FLK_TEST_MISSING"):
        read_key_text("env:FLK_TEST_MISSING")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(KeySourceError, match="empty"):
        read_key_text(f"@{tmp_path / 'empty'}")


def test_wrong_key_format_never_shows_the_key() -> None:
    with pytest.raises(KeyFormatError) as info:
        load_signer("ed25519", "sup3r-s3cret!")
    assert "sup3r" not in str(info.value)
    short = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(KeyFormatError, match="32-byte"):
        load_signer("ed25519", short)
    with pytest.raises(KeyFormatError):
        load_signer("hmac", "base64:!!!")


def test_pcs_of_large_input_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    data = "timestamp,x,y,z\n" + "\n".join(
        ",".join(map(repr, row)) for row in rng.random((5000, 4)).tolist()
    )
    ev = parse_events(data.encode(), "csv")
    signer = load_signer("hmac", "k")
    a = build_pcs(ev, shard_id="s", epoch=2, signer=signer, sent_at="t")
    b = build_pcs(ev, shard_id="s", epoch=2, signer=signer, sent_at="t")
    assert encode_pcs(a) == encode_pcs(b)


@pytest.mark.parametrize("alg", ["hmac", "ed25519"])
def test_attempt_and_outbox_seq_are_re_signed_where_the_signature_covers_them(alg: str) -> None:
    """0.3 signs the whole record (bound to the tenant): a new attempt needs a new sig."""
    key = generate_key(alg)
    signer = load_signer(alg, key.secret)
    ring = KeyRing([VerificationKey.from_text("k", alg, key.public or key.secret)])
    v02 = build_pcs(EVENTS, shard_id="s", epoch=1, signer=signer, version="0.2")
    stamped = msgspec.json.decode(stamp_attempt(encode_pcs(v02), 4, signer=None, tenant_id=None))
    assert stamped["attempt"] == 4  # 0.2: attempt is unsigned, no key needed, sig unchanged
    assert stamped["sig"] == v02.sig

    v03 = sign_pcs(msgspec.structs.replace(v02, version="0.3"), signer, tenant_id="acme")
    body = encode_pcs(v03)

    def verifies(raw: bytes, tenant: str) -> bool:
        record = msgspec.json.decode(raw)
        try:
            ring.verify(
                full_record_message(record, tenant),
                base64.b64decode(record["sig"]),
                now=0.0,
                full_record=True,
            )
        except SignatureError:
            return False
        return True

    assert verifies(body, "acme") and not verifies(body, "other")  # the tenant is bound
    again = stamp_attempt(body, 2, signer=signer, tenant_id="acme")
    assert msgspec.json.decode(again)["attempt"] == 2 and verifies(again, "acme")
    tampered = body.replace(b'"version":"0.3"', b'"version":"0.3","attempt":2')
    assert not verifies(tampered, "acme")  # the attempt really is signed
    assert stamp_attempt(body, 2, signer=None, tenant_id="acme") == body  # no key: kept as is
    assert stamp_attempt(body, 1, signer=signer, tenant_id="acme") is body  # first: as queued
    seq = stamp_outbox_seq(v03, 17, signer=signer, tenant_id="acme")
    assert seq.ft is not None and seq.ft.outbox_seq == 17 and verifies(encode_pcs(seq), "acme")
    assert stamp_outbox_seq(v03, 17, signer=None, tenant_id="acme") is v03
