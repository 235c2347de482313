"""Key material formats (SPEC section 2) and a secret wrapper that never prints its value.

The formats and :class:`Secret` are the SDK's (``fractal_lba_client``); this module turns its
``KeyFormatError`` into the verifier's (a :class:`~fractal_lba.errors.FlkError`) and adds the
``cryptography`` key objects the audit log signs checkpoints with. HMAC keys are UTF-8
strings, or ``base64:``-prefixed raw bytes. Ed25519 public keys are base64
of the 32 raw bytes; private keys (agent side) are base64 of the 32-byte seed.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fractal_lba.contract.errors import KeyFormatError
from fractal_lba_client import KeyFormatError as SdkKeyFormatError
from fractal_lba_client import contract as sdk
from fractal_lba_client.contract import Secret

T = TypeVar("T")

__all__ = [
    "GeneratedKey",
    "Secret",
    "generate_key",
    "parse_ed25519_private",
    "parse_ed25519_public",
    "parse_hmac_key",
    "public_b64",
]


def _translated(fn: Callable[[str, str], T], text: str, what: str) -> T:
    try:
        return fn(text, what)
    except SdkKeyFormatError as exc:
        raise KeyFormatError(exc.detail) from None


def _b64decode_strict(text: str, what: str) -> bytes:
    return _translated(sdk.b64decode_strict, text, what)


def parse_hmac_key(text: str, *, what: str = "HMAC key") -> Secret:
    """Parse an HMAC key: UTF-8 text, or ``base64:<b64>`` for raw bytes. Empty keys refused."""
    return _translated(lambda t, w: sdk.parse_hmac_key(t, what=w), text, what)


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
