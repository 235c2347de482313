"""Tenancy from Settings: the tenant resolver (+ tenants file, swapped on reload) and the limiter.

:func:`build_resolver` is the one entry point for both modes. It builds a complete, validated
resolver or raises :class:`~fractal_lba.errors.ConfigError`; the server swaps its single
reference to the new resolver only after that succeeded, so a bad file on reload keeps the
old configuration and no request sees a half-built one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from fractal_lba.config import Settings
from fractal_lba.errors import ConfigError
from fractal_lba.policy import Policy
from fractal_lba.tenancy.limiter import RateLimiter, TokenBucketLimiter
from fractal_lba.tenancy.model import Tenant
from fractal_lba.tenancy.quota import create_quota_store
from fractal_lba.tenancy.resolver import (
    MultiTenantResolver,
    SingleTenantResolver,
    TenantResolver,
    single_tenant,
)
from fractal_lba.tenancy.tenants_file import (
    TenantDefaults,
    load_tenants_file,
    parse_tenants_env,
)

log = logging.getLogger("fractal_lba.tenancy")


def defaults_from(settings: Settings) -> TenantDefaults:
    """Limits for tenants that set none: TOKEN_RATE (burst one second) and DAILY_QUOTA."""
    return TenantDefaults(
        token_rate=settings.token_rate,
        daily_quota=settings.daily_quota,
        accept_legacy_digest=settings.hmac_accept_legacy_digest,
        vrf_mode=settings.vrf_mode,
        pii_phone_regions=settings.pii_phone_regions,
        min_pcs_version=settings.min_pcs_version,
    )


def load_tenants(settings: Settings, policy: Policy) -> list[Tenant]:
    """Every tenant of TENANTS and TENANTS_FILE, validated; an id in both is an error."""
    defaults = defaults_from(settings)
    tenants: list[Tenant] = []
    if settings.tenants is not None:
        text = settings.tenants.reveal().decode("utf-8")
        tenants.extend(parse_tenants_env(text, policy, defaults))
    if settings.tenants_file is not None:
        from_file = load_tenants_file(settings.tenants_file, policy, defaults)
        env_ids = {t.id for t in tenants}
        for t in from_file:
            if t.id in env_ids:
                raise ConfigError(
                    f"TENANTS_FILE {settings.tenants_file}: tenant {t.id!r}: id: also defined "
                    "in TENANTS (define each tenant once)"
                )
        tenants.extend(from_file)
    if not tenants:
        raise ConfigError("MULTI_TENANT=true but TENANTS / TENANTS_FILE define no tenant")
    for t in tenants:
        if settings.vrf_enabled and t.vrf is None:
            raise ConfigError(
                f"tenant {t.id!r}: vrf: VRF_ENABLED=true requires vrf.public_key for every tenant"
            )
    return tenants


def build_resolver(
    settings: Settings, policy: Policy, *, now: Callable[[], float] = time.time
) -> tuple[TenantResolver, Path | None]:
    """The resolver for ``settings`` (single- or multi-tenant) and the local key file used.

    Raises ConfigError for any problem. Tenants without a currently active key are logged:
    their requests will get 401 until a key's ``not_before`` is reached.
    """
    if not settings.multi_tenant:
        tenant, local = single_tenant(settings, policy)
        return SingleTenantResolver(tenant), local
    tenants = load_tenants(settings, policy)
    at = now()
    for t in tenants:
        if t.keyring is not None and not any(k.active(at) for k in t.keyring.keys):
            log.warning("tenant has no active key right now", extra={"tenant_id": t.id})
    return MultiTenantResolver(tenants), None


def create_limiter(settings: Settings, *, clock: Callable[[], float] = time.time) -> RateLimiter:
    """The limiter of RATE_LIMIT_BACKEND (constructed, not opened)."""
    ns = settings.dedup_namespace
    url = settings.redis_url.reveal().decode("utf-8")
    if settings.rate_limit_backend == "redis":
        from fractal_lba.tenancy.redis_limiter import RedisLimiter

        return RedisLimiter(
            url,
            namespace=ns,
            clock=clock,
            global_rate=settings.global_token_rate,
            op_timeout=settings.store_op_timeout,
        )
    store = create_quota_store(
        settings.dedup_backend,
        data_dir=settings.data_dir,
        redis_url=url,
        postgres_dsn=settings.postgres_dsn.reveal().decode("utf-8"),
        namespace=ns,
        op_timeout=settings.store_op_timeout,
    )
    return TokenBucketLimiter(clock, global_rate=settings.global_token_rate, quota_store=store)
