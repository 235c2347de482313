"""Tenancy errors."""

from __future__ import annotations

from fractal_lba.errors import FlkError


class TenancyError(FlkError):
    """Root of tenancy errors."""

    code = "tenancy_error"


class UnknownTenant(TenancyError):
    """The request names a tenant this server does not serve (-> 401)."""

    code = "unknown_tenant"
