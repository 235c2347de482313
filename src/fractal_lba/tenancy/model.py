"""The tenant: identity, verification keys, policy and rate, prepared once at startup."""

from __future__ import annotations

from dataclasses import dataclass

from fractal_lba.contract import KeyRing
from fractal_lba.policy import Policy

DEFAULT_TENANT = "default"


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

    @property
    def unsafe_unsigned(self) -> bool:
        """True when this tenant's PCS are accepted without a signature check."""
        return self.keyring is None
