"""Tenancy: who a request belongs to, which keys and policy apply, and how fast it may go.

* :func:`build_resolver` -> a :class:`TenantResolver`: :class:`SingleTenantResolver`
  (tenant ``default``) or, with ``MULTI_TENANT=true``, a :class:`MultiTenantResolver` built from
  ``TENANTS`` and ``TENANTS_FILE`` (see :mod:`fractal_lba.tenancy.tenants_file`).
* :func:`create_limiter` -> a :class:`RateLimiter`: :class:`TokenBucketLimiter` (in-process
  buckets, quota counters in a :class:`QuotaStore`) or :class:`RedisLimiter` (one atomic
  script, exact across replicas).
"""

from fractal_lba.tenancy.errors import (
    LimiterUnavailable,
    MissingTenant,
    TenancyError,
    UnknownTenant,
)
from fractal_lba.tenancy.factory import build_resolver, create_limiter
from fractal_lba.tenancy.limiter import (
    LimitUsage,
    RateDecision,
    RateLimiter,
    RatePolicyState,
    TokenBucketLimiter,
    ratelimit_headers,
)
from fractal_lba.tenancy.model import DEFAULT_TENANT, PiiSettings, Tenant, VrfSettings
from fractal_lba.tenancy.quota import QuotaStore, create_quota_store, utc_day
from fractal_lba.tenancy.redis_limiter import RedisLimiter
from fractal_lba.tenancy.resolver import (
    MultiTenantResolver,
    SingleTenantResolver,
    TenantResolver,
    single_tenant,
)

__all__ = [
    "DEFAULT_TENANT",
    "LimitUsage",
    "LimiterUnavailable",
    "MissingTenant",
    "MultiTenantResolver",
    "PiiSettings",
    "QuotaStore",
    "RateDecision",
    "RateLimiter",
    "RatePolicyState",
    "RedisLimiter",
    "SingleTenantResolver",
    "TenancyError",
    "Tenant",
    "TenantResolver",
    "TokenBucketLimiter",
    "UnknownTenant",
    "VrfSettings",
    "build_resolver",
    "create_limiter",
    "create_quota_store",
    "ratelimit_headers",
    "single_tenant",
    "utc_day",
]
