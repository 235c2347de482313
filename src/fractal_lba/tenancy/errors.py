"""Tenancy errors.

Tree::

    TenancyError
    ├── UnknownTenant          X-Tenant-Id names a tenant not served here (-> 401)
    ├── MissingTenant          multi-tenant mode and no X-Tenant-Id header (-> 400)
    └── LimiterUnavailable     the shared limiter / quota store cannot answer (-> 503)

Bad tenant configuration is a :class:`~fractal_lba.errors.ConfigError` (one line naming the
source, the tenant and the field; never key material).
"""

from __future__ import annotations

from fractal_lba.errors import FlkError


class TenancyError(FlkError):
    """Root of tenancy errors."""

    code = "tenancy_error"


class UnknownTenant(TenancyError):
    """The request names a tenant this server does not serve (-> 401)."""

    code = "unknown_tenant"


class MissingTenant(TenancyError):
    """Multi-tenant mode and the request has no ``X-Tenant-Id`` header (-> 400)."""

    code = "missing_tenant"


class LimiterUnavailable(TenancyError):
    """The rate limiter's backend (Redis, quota store) did not answer in time (-> 503)."""

    code = "limiter_unavailable"
