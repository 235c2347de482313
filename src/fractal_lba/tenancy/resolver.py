"""Tenant resolution (step 1 of the submit path): the single- and multi-tenant resolvers, and
the single-tenant setup from Settings."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from fractal_lba.adversarial.vrf import VrfError
from fractal_lba.adversarial.vrf_keys import local_public_key
from fractal_lba.config import Settings
from fractal_lba.contract import KeyFormatError, KeyRing, VerificationKey
from fractal_lba.errors import ConfigError
from fractal_lba.fsutil import create_exclusive
from fractal_lba.policy import Policy
from fractal_lba.tenancy.errors import MissingTenant, UnknownTenant
from fractal_lba.tenancy.model import DEFAULT_TENANT, Tenant, VrfSettings

log = logging.getLogger("fractal_lba.tenancy")


class TenantResolver(Protocol):
    """Maps the ``X-Tenant-Id`` header (or its absence) to a prepared :class:`Tenant`."""

    def resolve(self, header: str | None) -> Tenant:
        """Return the tenant; raise :class:`UnknownTenant` for a tenant not served here."""
        ...

    def tenants(self) -> Sequence[Tenant]:
        """Every tenant (metrics children and keyrings are prepared from this at startup)."""
        ...


class SingleTenantResolver:
    """Single-tenant mode: no header or ``default`` is the one tenant; anything else is 401."""

    def __init__(self, tenant: Tenant) -> None:
        self._tenant = tenant

    def resolve(self, header: str | None) -> Tenant:
        if header is None or header == self._tenant.id:
            return self._tenant
        raise UnknownTenant("unknown tenant (this server is single-tenant)")

    def tenants(self) -> Sequence[Tenant]:
        return (self._tenant,)


class MultiTenantResolver:
    """Multi-tenant resolver: an immutable id -> :class:`Tenant` map."""

    def __init__(self, tenants: Sequence[Tenant]) -> None:
        self._by_id = {t.id: t for t in tenants}
        self._tenants = tuple(tenants)

    def resolve(self, header: str | None) -> Tenant:
        if header is None:
            raise MissingTenant("X-Tenant-Id header is required in multi-tenant mode")
        tenant = self._by_id.get(header)
        if tenant is None:
            raise UnknownTenant("unknown tenant")
        return tenant

    def get(self, tenant_id: str) -> Tenant | None:
        """The tenant with this id, or None."""
        return self._by_id.get(tenant_id)

    def tenants(self) -> Sequence[Tenant]:
        return self._tenants

    def __repr__(self) -> str:
        return f"MultiTenantResolver(tenants={sorted(self._by_id)!r})"


def load_or_create_local_key(path: Path) -> tuple[str, bool]:
    """Read the local HMAC key file, creating it (0600, 32 random bytes) when absent.

    Returns ``(key_text, created)``. Creation is atomic and first-wins
    (:func:`~fractal_lba.fsutil.create_exclusive`), so workers starting together agree on one
    key.
    """
    try:
        return path.read_text("utf-8").strip(), False
    except FileNotFoundError:
        pass
    text = "base64:" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    created = create_exclusive(path, (text + "\n").encode("ascii"))
    return path.read_text("utf-8").strip(), created


def single_tenant(settings: Settings, policy: Policy) -> tuple[Tenant, Path | None]:
    """The ``default`` tenant from the global signing settings.

    Returns the tenant and, when the local key file was used, its path (for the startup log).
    """
    keys: list[VerificationKey] = []
    local: Path | None = None
    try:
        if settings.sign_alg == "hmac":
            texts = [s.reveal().decode("utf-8") for s in settings.hmac_keys]
            if not texts:
                local = settings.local_hmac_key_path
                texts = [load_or_create_local_key(local)[0]]
            keys = [VerificationKey.from_text(f"hmac-{i}", "hmac", t) for i, t in enumerate(texts)]
        elif settings.sign_alg == "ed25519":
            keys = [
                VerificationKey.from_text(f"ed25519-{i}", "ed25519", t)
                for i, t in enumerate(settings.ed25519_pub_b64)
            ]
    except KeyFormatError as exc:
        where = str(local) if local is not None else "PCS signing key"
        raise ConfigError(f"{where}: {exc}") from None
    keyring = (
        None
        if settings.sign_alg == "none"
        else KeyRing(keys, accept_legacy_digest=settings.hmac_accept_legacy_digest)
    )
    rate = settings.token_rate
    vrf: VrfSettings | None = None
    if settings.vrf_enabled:
        pk = settings.vrf_public_key
        if pk is None:
            try:
                pk, created = local_public_key(settings.local_vrf_key_path)
            except VrfError as exc:
                raise ConfigError(str(exc)) from None
            log.warning(
                "VRF_ENABLED without VRF_PUBLIC_KEY: verifying with the local VRF key file; "
                "prove with it (--vrf-key @FILE) or set VRF_PUBLIC_KEY",
                extra={"path": str(settings.local_vrf_key_path), "key_created": created},
            )
        vrf = VrfSettings(pk, settings.vrf_mode)
    tenant = Tenant(
        min_pcs_version=settings.min_pcs_version,
        id=DEFAULT_TENANT,
        keyring=keyring,
        policy=policy,
        token_rate=rate,
        burst=max(1.0, rate),
        daily_quota=settings.daily_quota,
        vrf=vrf,
    )
    return tenant, local
