"""Key material formats (SPEC section 2) and a wrapper that never prints secret bytes.

HMAC keys are UTF-8 strings, or ``base64:``-prefixed raw bytes. Ed25519 public keys are base64
of the 32 raw bytes; private keys are base64 of the 32-byte seed.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from fractal_lba_client._errors import KeyFormatError


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


def b64decode_strict(text: str, what: str) -> bytes:
    """Standard, padded base64 (surrounding whitespace ignored); KeyFormatError otherwise."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not valid base64") from None


def parse_hmac_key(text: str, *, what: str = "HMAC key") -> Secret:
    """Parse an HMAC key: UTF-8 text, or ``base64:<b64>`` for raw bytes. Empty keys refused."""
    if text.startswith("base64:"):
        raw = b64decode_strict(text[len("base64:") :], what)
    else:
        raw = text.encode("utf-8")
    if not raw:
        raise KeyFormatError(f"{what} is empty")
    return Secret(raw)


def parse_ed25519_seed(text: str, *, what: str = "Ed25519 private key") -> Secret:
    """Parse base64 of the 32-byte Ed25519 seed (as ``flk keygen --alg ed25519`` prints it)."""
    raw = b64decode_strict(text, what)
    if len(raw) != 32:
        raise KeyFormatError(f"{what} must be a 32-byte seed (base64), got {len(raw)} bytes")
    return Secret(raw)


def parse_ed25519_public_raw(text: str, *, what: str = "Ed25519 public key") -> bytes:
    """Parse base64 of the 32 raw public-key bytes."""
    raw = b64decode_strict(text, what)
    if len(raw) != 32:
        raise KeyFormatError(f"{what} must be 32 bytes (base64), got {len(raw)} bytes")
    return raw
