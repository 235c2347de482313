"""The tenants in service: resolver and per-tenant contexts, loaded at startup and swapped as
one reference on reload (admin endpoint or SIGHUP).

A reload builds and validates a complete new table off the event loop, then assigns it; a
bad tenants file keeps the old configuration, and no request sees a half-built one (the
submit path reads :attr:`Tenants.table` once per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fractal_lba.config import Settings
from fractal_lba.errors import ConfigError
from fractal_lba.privacy.gate import PiiGate
from fractal_lba.privacy.keys import KeyedHasher, load_or_create_key, local_key_path
from fractal_lba.privacy.policy import PiiSettings
from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba.server.metrics import Metrics
from fractal_lba.server.submission import PipelineStepFn, TenantContext
from fractal_lba.tenancy import Tenant, TenantResolver, UnknownTenant

log = logging.getLogger(LOGGER_NAME)

ResolverLoader = Callable[[], "tuple[TenantResolver, Path | None]"]
"""Builds a complete, validated resolver from the configuration and names the local key file
it used, if any (raises ConfigError). It may read (and create) files: it runs at startup."""


class _NotLoaded:
    """Resolver before startup: serves no tenant (uvicorn sends no request before the
    lifespan startup completed)."""

    def resolve(self, header: str | None) -> Tenant:
        raise UnknownTenant("the verifier has not started")

    def tenants(self) -> tuple[Tenant, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class TenantTable:
    """Resolver and per-tenant contexts, swapped together as one reference on reload."""

    resolver: TenantResolver
    contexts: dict[str, TenantContext]


@dataclass
class Tenants:
    """Holds the :class:`TenantTable` in service; :meth:`load` at startup, :meth:`reload` later.

    Each tenant's context is prepared once per table: metric children, policy hash, its VRF
    and PII gates (a tenant's own ``pii`` table, else the PII_SCAN_MODE default) and the
    pipeline steps that apply to it.
    """

    loader: ResolverLoader
    settings: Settings
    metrics: Metrics
    steps_for: Callable[[TenantContext], tuple[PipelineStepFn, ...]]
    """The pipeline steps that apply to a prepared tenant context."""
    global_limit: bool = False
    table: TenantTable = field(default_factory=lambda: TenantTable(_NotLoaded(), {}))
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pii_hasher: KeyedHasher = field(default_factory=KeyedHasher)

    def build(self, resolver: TenantResolver) -> TenantTable:
        """Prepare every tenant of ``resolver`` for the hot path."""
        contexts = {
            t.id: TenantContext.build(
                t,
                self.metrics,
                global_limit=self.global_limit,
                pii=self._pii_gate(t),
                steps_for=self.steps_for,
            )
            for t in resolver.tenants()
        }
        return TenantTable(resolver, contexts)

    def _pii_gate(self, tenant: Tenant) -> PiiGate | None:
        s = self.settings
        pii = tenant.pii or PiiSettings(
            mode=s.pii_scan_mode, report_only=s.pii_report_only, phone_regions=s.pii_phone_regions
        )
        return PiiGate.build(tenant.id, pii, self._pii_hasher)

    def _load_pii_key(self, table: TenantTable) -> None:
        """Load the keyed-hash key once some tenant scans (PII_HASH_KEY, else the local key
        file, created on first use; see :mod:`fractal_lba.privacy.keys`)."""
        if self._pii_hasher.ready or all(c.pii is None for c in table.contexts.values()):
            return
        key = self.settings.pii_hash_key
        self._pii_hasher.set_key(
            key.reveal()
            if key is not None
            else load_or_create_key(local_key_path(self.settings.data_dir))
        )

    async def load(self) -> None:
        """Startup: build the table (this may create the local key file) and log what an
        operator must know (local key file in use, unsigned mode)."""
        resolver, local_key = await asyncio.to_thread(self.loader)
        if local_key is not None:
            log.warning(
                "no PCS_HMAC_KEY configured: verifying with the local key file; sign with it "
                "or set PCS_HMAC_KEY",
                extra={"path": str(local_key)},
            )
        if any(t.unsafe_unsigned for t in resolver.tenants()):
            log.warning(
                "UNSAFE: PCS_SIGN_ALG=none, signatures are NOT verified; never use in production"
            )
        table = self.build(resolver)
        await asyncio.to_thread(self._load_pii_key, table)
        self.table = table

    def context(self, tenant_id: str) -> TenantContext | None:
        """The context of ``tenant_id`` in the table in service (replay looks tenants up)."""
        return self.table.contexts.get(tenant_id)

    async def reload(self) -> int:
        """Rebuild the tenants from the configuration and swap them in; return their count.

        Everything is built and validated first (file parsing off the event loop); requests
        keep using the old table until the single assignment. Raises ConfigError (old table
        kept).
        """
        async with self._lock:
            try:
                resolver, _ = await asyncio.to_thread(self.loader)
                table = self.build(resolver)
                await asyncio.to_thread(self._load_pii_key, table)
            except ConfigError as exc:
                self.metrics.tenant_reloads.labels(result="error").inc()
                log.error("tenant reload failed, keeping the previous configuration: %s", exc)
                raise
            self.table = table
        self.metrics.tenant_reloads.labels(result="ok").inc()
        log.info("tenants reloaded", extra={"count": len(table.contexts)})
        return len(table.contexts)

    async def reload_quietly(self) -> None:
        """:meth:`reload` for SIGHUP: a failure is logged and counted, never raised."""
        with contextlib.suppress(ConfigError):
            await self.reload()
