"""The key of the keyed hash that stands in for a PII-bearing ``shard_id`` in stored copies
(``[REDACTED_EMAIL:1a2b3c4d]``), so lineage still groups one shard's records.

Where the key comes from (decided here; SPEC is silent): ``PII_HASH_KEY`` /
``PII_HASH_KEY_FILE`` when set (required for several replicas on different machines, which
must share it); otherwise ``DATA_DIR/keys/pii_hash.key``, 32 random bytes created on first
start (0600 in a 0700 directory, created atomically so workers starting together agree),
like the embedded default's HMAC key. It is a key of its own, never a tenant's signing
key: rotating a tenant's key must not regroup its lineage, and a leaked audit log must not
become an oracle for a signing key. Without the key, a stored token cannot be linked to a
value by guessing (phone numbers and SSNs have too little entropy for a plain hash).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from fractal_lba.errors import ConfigError
from fractal_lba.fsutil import create_exclusive, private_dir
from fractal_lba.privacy.findings import redaction_token

KEY_FILE = "pii_hash.key"
KEY_BYTES = 32
_DOMAIN = b"fractal-lba/pii-token/v1\x00"


def local_key_path(data_dir: Path) -> Path:
    """``DATA_DIR/keys/pii_hash.key``."""
    return data_dir / "keys" / KEY_FILE


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``; created (random, 0600) when missing. Refuses a key file that
    others can read, or one of the wrong size."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    create_exclusive(path, secrets.token_bytes(KEY_BYTES))  # another worker may win: its key
    return _read(path)


def _read(path: Path) -> bytes:
    st = path.stat()
    if st.st_mode & 0o077:
        raise ConfigError(f"{path}: PII hash key file must not be readable by others (chmod 600)")
    data = path.read_bytes()
    if len(data) < 16:
        raise ConfigError(f"{path}: PII hash key file must hold at least 16 bytes")
    return data


class KeyedHasher:
    """Renders ``[REDACTED_<TYPE>:<8 hex>]``: HMAC-SHA256 over tenant and value, truncated.

    The key is set once at startup (:meth:`set_key`); the tokens of one value are stable for a
    tenant and differ between tenants (no cross-tenant linkage).
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key

    def set_key(self, key: bytes) -> None:
        self._key = key

    @property
    def ready(self) -> bool:
        return self._key is not None

    def token(self, tenant_id: str, pii_type: str, value: str) -> str:
        if self._key is None:
            raise RuntimeError("PII hash key not loaded (server startup loads it)")
        msg = _DOMAIN + tenant_id.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        tag = hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:8]
        return redaction_token(pii_type)[:-1] + ":" + tag + "]"

    def __repr__(self) -> str:
        return f"KeyedHasher(ready={self.ready})"
