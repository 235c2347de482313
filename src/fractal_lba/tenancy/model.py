"""The tenant: identity, verification keys, policy, limits, prepared once per (re)load."""

from __future__ import annotations

from dataclasses import dataclass

from fractal_lba.adversarial.vrf_gate import VrfMode
from fractal_lba.contract import KeyRing
from fractal_lba.policy import Policy
from fractal_lba.privacy.policy import PiiMode, PiiSettings

DEFAULT_TENANT = "default"

__all__ = ["DEFAULT_TENANT", "PiiMode", "PiiSettings", "Tenant", "VrfMode", "VrfSettings"]


@dataclass(frozen=True, slots=True)
class VrfSettings:
    """A tenant's ECVRF public key (32 raw bytes) and whether a bad proof is refused."""

    public_key: bytes
    mode: VrfMode = "enforce"

    def __repr__(self) -> str:
        return f"VrfSettings(mode={self.mode!r}, public_key=<32 bytes>)"


@dataclass(frozen=True, slots=True)
class Tenant:
    """Everything the submit path needs to know about one tenant.

    ``keyring is None`` means signature checking is switched off for this tenant
    (``PCS_SIGN_ALG=none``), which the server treats as an unsafe mode.
    """

    id: str
    keyring: KeyRing | None
    policy: Policy
    token_rate: float = 0.0
    """Sustained requests per second; 0 = unlimited."""
    burst: float = 0.0
    """Bucket size; defaults to one second of ``token_rate``."""
    daily_quota: int = 0
    """Admitted requests per UTC day (resets at 00:00 UTC); 0 = unlimited."""
    vrf: VrfSettings | None = None
    pii: PiiSettings | None = None
    policy_version: str | None = None
    """Pinned policy version (semver); ``None`` follows the active policy."""
    min_pcs_version: str = "0.1"
    """Oldest PCS version this tenant accepts (0.3 = full-record, tenant-bound signatures)."""

    @property
    def unsafe_unsigned(self) -> bool:
        """True when this tenant's PCS are accepted without a signature check."""
        return self.keyring is None

    @property
    def bucket_size(self) -> float:
        """Effective bucket size: ``burst``, or one second of ``token_rate`` (at least 1)."""
        return self.burst if self.burst > 0 else max(1.0, self.token_rate)

    @property
    def limited(self) -> bool:
        """Whether this tenant has a rate or a daily quota to enforce."""
        return self.token_rate > 0 or self.daily_quota > 0
