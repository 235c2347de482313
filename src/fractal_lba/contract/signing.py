"""HMAC-SHA256 and Ed25519 verification of PCS signatures (SPEC section 2).

Signing (and what a signature covers) is the SDK's: :func:`make_signer`, ``sign_record``,
``signed_message`` come from ``fractal_lba_client``; this module holds the verifier's keys.

Verification fails closed: :meth:`KeyRing.verify` returns which key verified or raises
:class:`SignatureError`; there is no boolean to forget to check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from fractal_lba.contract.errors import KeyFormatError, SignatureError, ValidationError
from fractal_lba.contract.keys import Secret, parse_hmac_key
from fractal_lba_client import KeyFormatError as SdkKeyFormatError
from fractal_lba_client import contract as sdk
from fractal_lba_client.contract import Ed25519Signer, HmacSigner, Signer, sign_record

__all__ = [
    "ALGS",
    "Alg",
    "Ed25519Signer",
    "HmacSigner",
    "KeyRing",
    "Signer",
    "VerificationKey",
    "Verified",
    "decode_signature",
    "make_signer",
    "sign_record",
]

Alg = Literal["hmac", "ed25519"]
ALGS: tuple[str, ...] = ("hmac", "ed25519")


def make_signer(alg: str, key_text: str) -> Signer:
    """Signer from CLI/config key text (HMAC key string or base64 Ed25519 seed)."""
    try:
        return sdk.make_signer(alg, key_text)
    except SdkKeyFormatError as exc:
        raise KeyFormatError(exc.detail) from None


def _public_raw(text: str) -> bytes:
    try:
        return sdk.parse_ed25519_public_raw(text)
    except SdkKeyFormatError as exc:
        raise KeyFormatError(exc.detail) from None


def decode_signature(sig: str) -> bytes:
    """Strict base64 decode of the ``sig`` field; raises ValidationError naming ``sig``."""
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("sig", "not valid base64") from None
    if not raw:
        raise ValidationError("sig", "empty signature")
    return raw


@dataclass(frozen=True)
class VerificationKey:
    """One key a tenant may sign with, valid in ``[not_before, not_after)`` (unix seconds)."""

    key_id: str
    alg: Alg
    hmac_key: Secret | None = None
    ed25519_key: VerifyKey | None = None
    """libsodium (PyNaCl) verify key: ~2x faster than ``cryptography`` per verify here."""
    not_before: float | None = None
    not_after: float | None = None

    def active(self, now: float) -> bool:
        """Whether the key verifies at ``now`` (rotation overlap / retirement)."""
        if self.not_before is not None and now < self.not_before:
            return False
        return not (self.not_after is not None and now >= self.not_after)

    def __repr__(self) -> str:
        return f"VerificationKey(key_id={self.key_id!r}, alg={self.alg!r}, material=***)"

    @classmethod
    def from_text(
        cls,
        key_id: str,
        alg: str,
        text: str,
        *,
        not_before: float | None = None,
        not_after: float | None = None,
    ) -> VerificationKey:
        """Build from config text: HMAC key string or base64 Ed25519 public key."""
        if alg == "hmac":
            return cls(
                key_id,
                "hmac",
                hmac_key=parse_hmac_key(text),
                not_before=not_before,
                not_after=not_after,
            )
        if alg == "ed25519":
            return cls(
                key_id,
                "ed25519",
                ed25519_key=VerifyKey(_public_raw(text)),
                not_before=not_before,
                not_after=not_after,
            )
        raise KeyFormatError(f"unknown algorithm {alg!r} (expected hmac or ed25519)")


@dataclass(frozen=True)
class Verified:
    """Which key verified a signature, and whether it was the legacy HMAC digest form."""

    key_id: str
    legacy_digest: bool = False


class KeyRing:
    """The set of keys that may verify a tenant's signatures; prepared once, used per request."""

    def __init__(
        self, keys: Sequence[VerificationKey], *, accept_legacy_digest: bool = False
    ) -> None:
        self.keys: tuple[VerificationKey, ...] = tuple(keys)
        self.accept_legacy_digest = accept_legacy_digest

    def __repr__(self) -> str:
        return f"KeyRing(keys={[k.key_id for k in self.keys]!r})"

    def verify(
        self, payload: bytes, sig: bytes, now: float, *, full_record: bool = False
    ) -> Verified:
        """Return the key that verifies ``sig`` over ``payload`` at ``now``; else raise.

        ``payload`` is what the PCS version signs (:func:`fractal_lba_client.signed_message`);
        0.1/0.2 Ed25519 signatures cover its sha256, ``full_record`` (0.3) ones the message
        itself, and the legacy HMAC digest form exists only before 0.3.
        """
        digest: bytes | None = payload if full_record else None
        for key in self.keys:
            if not key.active(now):
                continue
            if key.alg == "hmac":
                assert key.hmac_key is not None
                secret = key.hmac_key.reveal()
                mac = hmac.new(secret, payload, hashlib.sha256).digest()
                if hmac.compare_digest(mac, sig):
                    return Verified(key.key_id)
                if self.accept_legacy_digest and not full_record:
                    if digest is None:
                        digest = hashlib.sha256(payload).digest()
                    legacy = hmac.new(secret, digest, hashlib.sha256).digest()
                    if hmac.compare_digest(legacy, sig):
                        return Verified(key.key_id, legacy_digest=True)
            else:
                assert key.ed25519_key is not None
                if digest is None:
                    digest = hashlib.sha256(payload).digest()
                try:
                    key.ed25519_key.verify(digest, sig)
                except (BadSignatureError, ValueError, TypeError):  # ValueError: bad length
                    continue
                return Verified(key.key_id)
        raise SignatureError("signature does not verify with any active key")
