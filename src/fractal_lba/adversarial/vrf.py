"""ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381, suite 0x03): keygen, prove, verify, proof_to_hash.

Pure functions over bytes; every curve operation goes through libsodium (PyNaCl's
``crypto_core_ed25519_*`` / ``crypto_scalarmult_ed25519_*``), so no secret ever meets
Python big-integer arithmetic. Python integers appear only in checks on public encodings
(is ``y < p``, is ``s < L``).

Validation (stricter than RFC 9381's optional ``ECVRF_validate_key``, decided here):

- public key and Gamma must be canonical encodings (``y < p``, no ``x = -0``), not of small
  order, and in the prime-order subgroup (``crypto_core_ed25519_is_valid_point`` and the checks
  inside ``crypto_scalarmult_ed25519_noclamp``). No honestly generated key or proof fails this;
  a key with a torsion component would otherwise let one secret answer two ways.
- ``s >= L`` is refused (RFC 9381 5.4.4), and so are ``c = 0`` and ``s = 0`` (libsodium refuses
  a zero scalar; an honest proof has one with probability 2^-128 / 2^-252).
- a proof is exactly 80 bytes, a public key 32.

Cofactor clearing: libsodium's scalar multiplication refuses points outside the prime-order
subgroup, and the try-and-increment candidate point generally is outside it, so ``8 * P`` is
computed with three point doublings (``crypto_core_ed25519_add(P, P)``).

The challenge hashes the five points of RFC 9381 (Y, H, Gamma, U, V) and a trailing 0x00;
draft-irtf-cfrg-vrf-10 hashed four (H, Gamma, U, V) and produced different proofs for the same
key, which is the interoperability bug the test vectors pin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from nacl import bindings as nb
from nacl.exceptions import CryptoError

from fractal_lba.errors import FlkError

SUITE = b"\x03"
PROOF_BYTES = 80
OUTPUT_BYTES = 64
PUBLIC_KEY_BYTES = 32
SECRET_KEY_BYTES = 32
SEED_MASK = 2**53 - 1
"""The PCS seed is reduced to the integers JSON and RFC 8785 represent exactly (SPEC 2, 8)."""

_C_BYTES = 16
_L = 2**252 + 27742317777372353535851937790883648493
_P = 2**255 - 19
_Y_MASK = 2**255 - 1
_ZERO16 = bytes(16)
_IDENTITY = b"\x01" + bytes(31)
_DS_ENCODE_FRONT = SUITE + b"\x01"
_DS_CHALLENGE = SUITE + b"\x02"
_DS_PROOF_TO_HASH = SUITE + b"\x03"
_BACK = b"\x00"


class VrfError(FlkError):
    """A VRF key or proof is invalid. ``reason`` is a stable machine string, never a value."""

    code = "vrf_invalid"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def alpha_for(tenant_id: str, shard_id: str, epoch: int) -> bytes:
    """The VRF input of a PCS (SPEC section 8): UTF-8 of ``tenant_id|shard_id|epoch``."""
    return f"{tenant_id}|{shard_id}|{epoch}".encode()


def seed_from_output(beta: bytes) -> int:
    """The PCS ``seed`` a VRF output dictates: first 8 bytes big-endian, masked to 53 bits."""
    return int.from_bytes(beta[:8], "big") & SEED_MASK


def keygen() -> tuple[bytes, bytes]:
    """A fresh ``(secret_key, public_key)``: a 32-byte random seed and its Ed25519 point."""
    sk = secrets.token_bytes(SECRET_KEY_BYTES)
    return sk, public_key(sk)


def public_key(sk: bytes) -> bytes:
    """``Y = x * B`` with ``x`` the clamped first half of SHA-512(sk) (as RFC 8032 keys)."""
    _check_len(sk, SECRET_KEY_BYTES, "secret_key_length", "secret key")
    return nb.crypto_scalarmult_ed25519_base(hashlib.sha512(sk).digest()[:32])


def prove(sk: bytes, alpha: bytes) -> bytes:
    """The 80-byte proof ``pi = Gamma || c || s`` for ``alpha`` (RFC 9381 section 5.1)."""
    _check_len(sk, SECRET_KEY_BYTES, "secret_key_length", "secret key")
    digest = hashlib.sha512(sk).digest()
    x_raw = digest[:32]
    pk = nb.crypto_scalarmult_ed25519_base(x_raw)  # clamps like RFC 8032
    h = _encode_to_curve(pk, alpha)
    gamma = nb.crypto_scalarmult_ed25519(x_raw, h)  # clamps; H is in the prime subgroup
    k = nb.crypto_core_ed25519_scalar_reduce(hashlib.sha512(digest[32:] + h).digest())
    u = nb.crypto_scalarmult_ed25519_base_noclamp(k)
    v = nb.crypto_scalarmult_ed25519_noclamp(k, h)
    c = _challenge(pk, h, gamma, u, v)
    x = nb.crypto_core_ed25519_scalar_reduce(_clamp(x_raw) + bytes(32))
    s = nb.crypto_core_ed25519_scalar_add(k, nb.crypto_core_ed25519_scalar_mul(c + _ZERO16, x))
    return gamma + c + s


def proof_to_hash(pi: bytes) -> bytes:
    """``beta`` of a proof (RFC 9381 section 5.2), after decoding and checking it.

    Only meaningful for a proof that :func:`verify` accepted; on its own it says nothing
    about who made the proof.
    """
    gamma, _c, _s = _decode_proof(pi)
    if not nb.crypto_core_ed25519_is_valid_point(gamma):
        raise VrfError("gamma_invalid", "Gamma is not a point of the prime-order subgroup")
    return _beta(gamma)


def unverified_output(pi: bytes) -> bytes:
    """The beta a proof would have, without verifying it (60 us instead of ~550).

    Lets a caller refuse a PCS whose claimed output or seed cannot match before paying for
    verification; the result means nothing until :meth:`VrfPublicKey.check_proof` passed.
    """
    gamma, _c, _s = _decode_proof(pi)
    return _beta(gamma)


def verify(pk: bytes, alpha: bytes, pi: bytes) -> bytes:
    """``beta`` when ``pi`` is a valid proof of ``alpha`` under ``pk``; raise VrfError otherwise."""
    return VrfPublicKey.from_bytes(pk).verify(alpha, pi)


@dataclass(frozen=True, slots=True)
class VrfPublicKey:
    """A validated public key: decode and subgroup checks are done once (e.g. per tenant at
    startup), so :meth:`verify` only does per-proof work."""

    encoded: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> VrfPublicKey:
        """Validate ``raw`` (32 bytes, canonical, prime-order subgroup, not small order)."""
        _check_len(raw, PUBLIC_KEY_BYTES, "public_key_length", "public key")
        if not _canonical(raw) or not nb.crypto_core_ed25519_is_valid_point(raw):
            raise VrfError(
                "public_key_invalid",
                "public key is not a canonical point of the prime-order subgroup",
            )
        return cls(bytes(raw))

    def verify(self, alpha: bytes, pi: bytes) -> bytes:
        """RFC 9381 section 5.3: recompute U, V and the challenge; return ``beta``."""
        self.check_proof(alpha, pi)
        return _beta(pi[:32])

    def check_proof(self, alpha: bytes, pi: bytes) -> None:
        """:meth:`verify` without computing beta (for callers that already have it)."""
        gamma, c, s = _decode_proof(pi)
        y = self.encoded
        h = _encode_to_curve(y, alpha)
        c32 = c + _ZERO16
        try:
            u = nb.crypto_core_ed25519_sub(
                nb.crypto_scalarmult_ed25519_base_noclamp(s),
                nb.crypto_scalarmult_ed25519_noclamp(c32, y),
            )
            # Refuses a Gamma of small order or outside the prime-order subgroup.
            c_gamma = nb.crypto_scalarmult_ed25519_noclamp(c32, gamma)
            v = nb.crypto_core_ed25519_sub(nb.crypto_scalarmult_ed25519_noclamp(s, h), c_gamma)
        except CryptoError:
            raise _invalid_gamma_or_zero(gamma) from None
        if not hmac.compare_digest(_challenge(y, h, gamma, u, v), c):
            raise VrfError("proof_invalid", "proof does not verify for this key and input")

    def __repr__(self) -> str:
        return f"VrfPublicKey({self.encoded.hex()})"


def _invalid_gamma_or_zero(gamma: bytes) -> VrfError:
    if not nb.crypto_core_ed25519_is_valid_point(gamma):
        return VrfError("gamma_invalid", "Gamma is not a point of the prime-order subgroup")
    return VrfError("proof_invalid", "proof has a zero scalar")


def _check_len(raw: bytes, n: int, reason: str, what: str) -> None:
    if not isinstance(raw, bytes | bytearray) or len(raw) != n:
        got = len(raw) if isinstance(raw, bytes | bytearray) else type(raw).__name__
        raise VrfError(reason, f"{what} must be {n} bytes, got {got}")


def _clamp(b: bytes) -> bytes:
    """RFC 8032 clamping of a 32-byte scalar string (bit operations, no arithmetic)."""
    t = bytearray(b)
    t[0] &= 248
    t[31] &= 127
    t[31] |= 64
    return bytes(t)


def _canonical(enc: bytes) -> bool:
    """RFC 8032 5.1.3 canonical form: ``y < p`` and no ``x = -0`` (x is 0 only for y = +-1)."""
    y = int.from_bytes(enc, "little") & _Y_MASK
    return y < _P and not (enc[31] & 0x80 and y in (1, _P - 1))


def _times_cofactor(point: bytes) -> bytes:
    """``8 * P`` by three doublings; CryptoError when ``point`` does not decode."""
    p2 = nb.crypto_core_ed25519_add(point, point)
    p4 = nb.crypto_core_ed25519_add(p2, p2)
    return nb.crypto_core_ed25519_add(p4, p4)


def _encode_to_curve(salt: bytes, alpha: bytes) -> bytes:
    """ECVRF_encode_to_curve_try_and_increment (RFC 9381 5.4.1.1), salt = public key."""
    prefix = _DS_ENCODE_FRONT + salt + alpha
    for ctr in range(256):
        candidate = hashlib.sha512(prefix + bytes((ctr,)) + _BACK).digest()[:32]
        if not _canonical(candidate):
            continue
        try:
            h = _times_cofactor(candidate)
        except CryptoError:
            continue  # not the encoding of a curve point
        if h != _IDENTITY:
            return h
    raise VrfError("encode_to_curve_failed", "no curve point found in 256 tries")


def _challenge(y: bytes, h: bytes, gamma: bytes, u: bytes, v: bytes) -> bytes:
    """ECVRF_challenge_generation (RFC 9381 5.4.3): the 16-byte challenge string."""
    return hashlib.sha512(_DS_CHALLENGE + y + h + gamma + u + v + _BACK).digest()[:_C_BYTES]


def _decode_proof(pi: bytes) -> tuple[bytes, bytes, bytes]:
    """ECVRF_decode_proof (RFC 9381 5.4.4) plus the canonical-encoding checks above."""
    _check_len(pi, PROOF_BYTES, "proof_length", "proof")
    gamma, c, s = bytes(pi[:32]), bytes(pi[32:48]), bytes(pi[48:])
    if not _canonical(gamma):
        raise VrfError("gamma_invalid", "Gamma is not a canonical point encoding")
    if int.from_bytes(s, "little") >= _L:
        raise VrfError("s_out_of_range", "s is not reduced modulo the group order (s >= L)")
    return gamma, c, s


def _beta(gamma: bytes) -> bytes:
    """ECVRF_proof_to_hash: SHA-512(suite || 0x03 || 8 * Gamma || 0x00)."""
    try:
        g8 = _times_cofactor(gamma)
    except CryptoError:
        raise VrfError("gamma_invalid", "Gamma is not a point on the curve") from None
    if g8 == _IDENTITY:
        raise VrfError("gamma_invalid", "Gamma is of small order")
    return hashlib.sha512(_DS_PROOF_TO_HASH + g8 + _BACK).digest()
