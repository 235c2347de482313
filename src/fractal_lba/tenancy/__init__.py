"""Tenancy: who a request belongs to, which keys and policy apply, and how fast it may go.

This version is single-tenant (tenant ``default``). The seams a multi-tenant version fills:
:class:`TenantResolver` (header -> :class:`Tenant`) and :class:`RateLimiter` (in-process
token bucket now; a shared Redis limiter and daily quotas later).
"""

from fractal_lba.tenancy.errors import TenancyError, UnknownTenant
from fractal_lba.tenancy.limiter import (
    RateDecision,
    RateLimiter,
    RatePolicyState,
    TokenBucketLimiter,
    ratelimit_headers,
)
from fractal_lba.tenancy.model import DEFAULT_TENANT, Tenant
from fractal_lba.tenancy.resolver import SingleTenantResolver, TenantResolver, single_tenant

__all__ = [
    "DEFAULT_TENANT",
    "RateDecision",
    "RateLimiter",
    "RatePolicyState",
    "SingleTenantResolver",
    "TenancyError",
    "Tenant",
    "TenantResolver",
    "TokenBucketLimiter",
    "UnknownTenant",
    "ratelimit_headers",
    "single_tenant",
]
