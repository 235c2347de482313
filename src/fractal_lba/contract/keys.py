"""Key material formats (SPEC section 2) and a secret wrapper that never prints its value.

HMAC keys are UTF-8 strings, or ``base64:``-prefixed raw bytes. Ed25519 public keys are base64
of the 32 raw bytes; private keys (agent side) are base64 of the 32-byte seed.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fractal_lba.contract.errors import KeyFormatError


class Secret:
    """Holds secret bytes; ``repr``/``str`` show ``Secret('***')`` so it never leaks to logs."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        """The secret bytes. Call only where the key is used, never to log."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


def _b64decode_strict(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not valid base64") from None


def parse_hmac_key(text: str, *, what: str = "HMAC key") -> Secret:
    """Parse an HMAC key: UTF-8 text, or ``base64:<b64>`` for raw bytes. Empty keys refused."""
    if text.startswith("base64:"):
        raw = _b64decode_strict(text[len("base64:") :], what)
    else:
        raw = text.encode("utf-8")
    if not raw:
        raise KeyFormatError(f"{what} is empty")
    return Secret(raw)


def parse_ed25519_public(text: str, *, what: str = "Ed25519 public key") -> Ed25519PublicKey:
    """Parse base64 of the 32 raw public-key bytes."""
    raw = _b64decode_strict(text, what)
    if len(raw) != 32:
        raise KeyFormatError(f"{what} must be 32 bytes (base64), got {len(raw)} bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def parse_ed25519_private(text: str, *, what: str = "Ed25519 private key") -> Ed25519PrivateKey:
    """Parse base64 of the 32-byte seed (as ``flk keygen --alg ed25519`` prints it)."""
    raw = _b64decode_strict(text, what)
    if len(raw) != 32:
        raise KeyFormatError(f"{what} must be a 32-byte seed (base64), got {len(raw)} bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_b64(key: Ed25519PublicKey) -> str:
    """Base64 of the raw 32 public-key bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class GeneratedKey:
    """Output of :func:`generate_key`. ``private``/``secret`` go to the signer only."""

    alg: str
    secret: str  # hmac: the key string; ed25519: base64 seed
    public: str | None  # ed25519 only: base64 public key


def generate_key(alg: str) -> GeneratedKey:
    """New key material: HMAC as ``base64:`` of 32 random bytes; Ed25519 seed + public key."""
    if alg == "hmac":
        return GeneratedKey(
            "hmac", "base64:" + base64.b64encode(secrets.token_bytes(32)).decode(), None
        )
    if alg == "ed25519":
        sk = Ed25519PrivateKey.generate()
        seed = sk.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return GeneratedKey("ed25519", base64.b64encode(seed).decode(), public_b64(sk.public_key()))
    raise KeyFormatError(f"unknown algorithm {alg!r} (expected hmac or ed25519)")
