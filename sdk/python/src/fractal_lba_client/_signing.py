"""What a PCS signature covers and how it is made (SPEC section 2): HMAC-SHA256 and Ed25519.

- 0.1 / 0.2: the 8-field payload (:func:`~fractal_lba_client.signature_payload`); HMAC over
  the payload, Ed25519 over ``sha256(payload)``.
- 0.3: the full-record message ``b"fractal-lba/pcs/v0.3\\n" + tenant_id + b"\\n" +
  JCS(record without "sig")``, bound to the tenant the PCS is submitted as; HMAC and Ed25519
  both over the message itself.

Ed25519 goes through libsodium (PyNaCl, the ``ed25519`` extra).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Protocol

from fractal_lba_client._canonical import record_payload
from fractal_lba_client._errors import KeyFormatError, SignatureError
from fractal_lba_client._jcs import jcs
from fractal_lba_client._keys import Secret, parse_ed25519_seed, parse_hmac_key
from fractal_lba_client._versions import FULL_RECORD_VERSIONS

V03_DOMAIN = b"fractal-lba/pcs/v0.3\n"
"""Domain separation prefix of the 0.3 signed message."""
DEFAULT_TENANT = "default"
"""The tenant a single-tenant server serves (the 0.3 message binds it too)."""
SIGNING_ALGS: tuple[str, ...] = ("hmac", "ed25519")


def full_record_message(record: Mapping[str, Any], tenant_id: str) -> bytes:
    """The 0.3 signed message: domain, tenant, then JCS of the record without ``sig``."""
    body = {k: v for k, v in record.items() if k != "sig"}
    return V03_DOMAIN + tenant_id.encode("utf-8") + b"\n" + jcs(body)


def signed_message(record: Mapping[str, Any], tenant_id: str = DEFAULT_TENANT) -> bytes:
    """The bytes the signature of ``record`` covers, for its ``version``."""
    if record.get("version") in FULL_RECORD_VERSIONS:
        return full_record_message(record, tenant_id)
    return record_payload(record)


def signing_input(alg: str, version: str, message: bytes) -> bytes:
    """What the primitive is applied to: 0.1/0.2 Ed25519 signs ``sha256(payload)``."""
    if alg == "ed25519" and version not in FULL_RECORD_VERSIONS:
        return hashlib.sha256(message).digest()
    return message


class Signer(Protocol):
    """Signs bytes; returns the base64 ``sig`` string."""

    @property
    def alg(self) -> str: ...

    def sign(self, data: bytes) -> str: ...


class HmacSigner:
    """``base64(HMAC_SHA256(key, data))``."""

    alg = "hmac"

    def __init__(self, key: Secret) -> None:
        self._key = key

    def sign(self, data: bytes) -> str:
        mac = hmac.new(self._key.reveal(), data, hashlib.sha256).digest()
        return base64.b64encode(mac).decode("ascii")

    def __repr__(self) -> str:
        return "HmacSigner(key=Secret('***'))"


class Ed25519Signer:
    """``base64(Ed25519_sign(sk, data))`` through libsodium; built from the 32-byte seed."""

    alg = "ed25519"

    def __init__(self, seed: Secret) -> None:
        try:
            from nacl.signing import SigningKey
        except ImportError:  # pragma: no cover - exercised without the extra installed
            raise SignatureError(
                "Ed25519 signing needs PyNaCl: pip install 'fractal-lba-client[ed25519]'"
            ) from None
        self._key = SigningKey(seed.reveal())

    @property
    def public_key_b64(self) -> str:
        """Base64 of the 32 raw public-key bytes (what the verifier is configured with)."""
        return base64.b64encode(bytes(self._key.verify_key)).decode("ascii")

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._key.sign(data).signature).decode("ascii")

    def __repr__(self) -> str:
        return "Ed25519Signer(key=***)"


def make_signer(alg: str, key: str | bytes) -> Signer:
    """A signer from key text (HMAC key string or ``base64:...``; base64 Ed25519 seed) or bytes.

    Raw ``bytes`` are the HMAC key itself, or the 32-byte Ed25519 seed.
    """
    if alg == "hmac":
        if isinstance(key, bytes):
            if not key:
                raise KeyFormatError("HMAC key is empty")
            return HmacSigner(Secret(key))
        return HmacSigner(parse_hmac_key(key))
    if alg == "ed25519":
        if isinstance(key, bytes):
            if len(key) != 32:
                raise KeyFormatError("Ed25519 private key must be a 32-byte seed")
            return Ed25519Signer(Secret(key))
        return Ed25519Signer(parse_ed25519_seed(key))
    raise KeyFormatError(
        f"unknown signing algorithm (expected one of {', '.join(SIGNING_ALGS)})",
        field="signing_alg",
    )


def sign_record(record: Mapping[str, Any], signer: Signer, tenant_id: str = DEFAULT_TENANT) -> str:
    """The ``sig`` of ``record`` for its version (0.3: bound to ``tenant_id``)."""
    message = signed_message(record, tenant_id)
    return signer.sign(signing_input(signer.alg, str(record.get("version")), message))
