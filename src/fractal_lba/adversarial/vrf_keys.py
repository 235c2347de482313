"""VRF key material as text and files: hex secret keys, hex/base64 public keys, the local key.

Secret keys are 64 hex characters (one line in a file, mode 0600); public keys are hex or
base64 of 32 bytes (the tenants file uses base64, like Ed25519 keys). Messages never contain
key material.

The local key ``<DATA_DIR>/vrf.key`` is the VRF counterpart of ``hmac.key``: with
``VRF_ENABLED=true`` and no ``VRF_PUBLIC_KEY``, the embedded default creates it on first
start and verifies with its public key, so an agent on the same machine proves with
``--vrf-key @data/vrf.key``. A real deployment gives the verifier only the public key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import secrets
import stat
from pathlib import Path

from fractal_lba.adversarial.vrf import (
    PUBLIC_KEY_BYTES,
    SECRET_KEY_BYTES,
    VrfError,
    VrfPublicKey,
    public_key,
)
from fractal_lba.fsutil import create_exclusive

LOCAL_VRF_KEY_FILE = "vrf.key"


def parse_secret_key(text: str) -> bytes:
    """32 bytes from 64 hex characters (surrounding whitespace ignored)."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise VrfError("secret_key_format", "VRF secret key must be hex") from None
    if len(raw) != SECRET_KEY_BYTES:
        raise VrfError(
            "secret_key_format", f"VRF secret key must be {SECRET_KEY_BYTES} bytes of hex"
        )
    return raw


def parse_public_key(text: str) -> bytes:
    """A validated public key from hex (64 characters) or base64 of 32 bytes."""
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 2 * PUBLIC_KEY_BYTES:
        with contextlib.suppress(ValueError):
            raw = bytes.fromhex(text)
    if raw is None:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise VrfError(
                "public_key_format", "VRF public key must be hex or base64 of 32 bytes"
            ) from None
    return VrfPublicKey.from_bytes(raw).encoded


def read_secret_key(path: Path) -> bytes:
    """The secret key in ``path``; refuses a file readable by group or others."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise VrfError(
            "secret_key_mode", f"VRF key file {path} has mode {mode:04o}; it must be 0600"
        )
    try:
        return parse_secret_key(path.read_text("ascii"))
    except UnicodeDecodeError:
        raise VrfError("secret_key_format", f"VRF key file {path} is not hex text") from None
    except VrfError as exc:
        raise VrfError(exc.reason, f"VRF key file {path}: {exc}") from None


def load_or_create_secret_key(path: Path) -> tuple[bytes, bool]:
    """Read ``path``, or create it (0600, random key) when absent; ``(secret, created)``.

    Creation is first-writer-wins (temp file + ``link``), so workers starting together agree
    on one key.
    """
    try:
        return read_secret_key(path), False
    except FileNotFoundError:
        pass
    text = secrets.token_bytes(SECRET_KEY_BYTES).hex() + "\n"
    created = create_exclusive(path, text.encode("ascii"))
    return read_secret_key(path), created


def local_public_key(path: Path) -> tuple[bytes, bool]:
    """The public key of the local key file (created when absent) and whether it was created."""
    sk, created = load_or_create_secret_key(path)
    return public_key(sk), created
