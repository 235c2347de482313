"""Checkpoints: C2SP tlog-checkpoint / signed-note format, signature, key hash, tampering."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.checkpoint import (
    Checkpoint,
    key_hash,
    parse_checkpoint,
    sign_checkpoint,
    verifier_key,
    verify_checkpoint,
)
from fractal_lba.audit.errors import CheckpointError
from fractal_lba.audit.proof import parse_vkey

CP = Checkpoint(
    origin="example.org/audit",
    size=3,
    root=hashlib.sha256(b"root").digest(),
    segment="2025/01/01/120000.jsonl",
    time="2025-01-01T13:00:00Z",
    first_prev="0" * 64,
    last="ab" * 32,
    prev="0" * 64,
)


def _raw_pub(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_note_layout_follows_c2sp(key: Ed25519PrivateKey) -> None:
    note = sign_checkpoint(CP, key, CP.origin)
    body, sigline = note.split("\n\n")
    lines = body.split("\n")
    assert lines[0] == "example.org/audit"
    assert lines[1] == "3"
    assert base64.b64decode(lines[2]) == CP.root
    assert lines[3:] == [
        "segment 2025/01/01/120000.jsonl",
        "time 2025-01-01T13:00:00Z",
        "chain " + "0" * 64 + " " + "ab" * 32,
        "prev " + "0" * 64,
    ]
    assert sigline.endswith("\n") and sigline.count("\n") == 1
    dash, name, blob = sigline.rstrip("\n").split(" ")
    assert dash == "\u2014" and name == CP.origin
    raw = base64.b64decode(blob)
    assert len(raw) == 4 + 64
    # key hash computed independently: SHA-256(name || 0x0A || 0x01 || pubkey)[:4]
    assert raw[:4] == hashlib.sha256(b"example.org/audit\n\x01" + _raw_pub(key)).digest()[:4]
    key.public_key().verify(raw[4:], (body + "\n").encode())


def test_verify_roundtrip_and_parse(key: Ed25519PrivateKey) -> None:
    note = sign_checkpoint(CP, key, CP.origin)
    assert verify_checkpoint(note, key.public_key()) == CP
    assert parse_checkpoint(note) == CP


def test_every_changed_byte_fails(key: Ed25519PrivateKey) -> None:
    note = sign_checkpoint(CP, key, CP.origin).encode()
    for i in range(len(note)):
        bad = bytearray(note)
        bad[i] = bad[i] ^ 0x01
        try:
            text = bad.decode("utf-8")
        except UnicodeDecodeError:
            continue
        with pytest.raises(CheckpointError):
            verify_checkpoint(text, key.public_key())


def test_wrong_key_and_unsigned(key: Ed25519PrivateKey) -> None:
    note = sign_checkpoint(CP, key, CP.origin)
    with pytest.raises(CheckpointError):
        verify_checkpoint(note, Ed25519PrivateKey.generate().public_key())
    unsigned = sign_checkpoint(CP, None, CP.origin)
    with pytest.raises(CheckpointError, match="not signed"):
        verify_checkpoint(unsigned, key.public_key())
    assert verify_checkpoint(unsigned, None, allow_unsigned=True) == CP


def test_verifier_key_roundtrip(key: Ed25519PrivateKey) -> None:
    vkey = verifier_key(CP.origin, key.public_key())
    name, kh, blob = vkey.split("+", 2)
    assert name == CP.origin and bytes.fromhex(kh) == key_hash(CP.origin, key.public_key())
    assert base64.b64decode(blob) == b"\x01" + _raw_pub(key)
    assert parse_vkey(vkey)[0] == CP.origin
    with pytest.raises(CheckpointError):
        parse_vkey(vkey.replace(kh, "00000000"))


@pytest.mark.parametrize("name", ["", "has space", "a+b"])
def test_bad_key_names(key: Ed25519PrivateKey, name: str) -> None:
    with pytest.raises(CheckpointError):
        sign_checkpoint(CP, key, name)
