"""Building the verifier: :func:`create_app` from a :class:`Settings` (opening nothing), and
:func:`app_from_env`, the factory of ``flk serve`` and of each of its uvicorn workers."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from fractal_lba import failpoints
from fractal_lba.audit import AuditLog
from fractal_lba.config import Settings, failpoints_from_env
from fractal_lba.policy import Policy, default_policy
from fractal_lba.server.app import AuditFactory, Components, VerifierApp
from fractal_lba.server.inbox import Inbox
from fractal_lba.server.metrics import Metrics
from fractal_lba.stores import DedupStore, create_store
from fractal_lba.tenancy import RateLimiter, build_resolver, create_limiter


def create_app(
    settings: Settings,
    *,
    store: DedupStore | None = None,
    audit: AuditLog | None = None,
    registry: CollectorRegistry | None = None,
    policy: Policy | None = None,
    limiter: RateLimiter | None = None,
    clock: Callable[[], float] = time.time,
) -> VerifierApp:
    """Build the verifier from ``settings``; I/O parts can be injected (tests wrap them).

    Nothing is opened, read or created here (no file, directory or connection): the ASGI
    lifespan (or :meth:`VerifierApp.running`) does that, tenants and keys included.
    """
    pol = policy or default_policy()
    if store is None:
        store = create_store(
            settings.dedup_backend,
            data_dir=settings.data_dir,
            redis_url=settings.redis_url.reveal().decode("utf-8"),
            postgres_dsn=settings.postgres_dsn.reveal().decode("utf-8"),
            namespace=settings.dedup_namespace,
            op_timeout=settings.store_op_timeout,
            memory_max_entries=settings.dedup_memory_max_entries,
        )
    if registry is None:
        registry = CollectorRegistry()
    own_registry = registry
    metrics = Metrics(registry)
    inbox = Inbox(
        settings.wal_root,
        max_segment_bytes=settings.wal_segment_size,
        on_batch=metrics.on_wal_batch,
    )
    return VerifierApp(
        settings,
        components=Components(
            store,
            (lambda _i: audit) if audit is not None else worm_audit_factory(settings),
            inbox,
            limiter or create_limiter(settings, clock=clock),
        ),
        # Startup builds the tenants, and so does a reload (re-reading TENANTS_FILE; the
        # process environment cannot change under a running process, so it stays as it was).
        load_tenants=lambda: build_resolver(settings, pol),
        metrics=metrics,
        metrics_registry=(
            _multiprocess_registry
            if settings.prometheus_multiproc_dir is not None
            else lambda: own_registry
        ),
        clock=clock,
    )


def audit_dir_for(settings: Settings, index: int) -> Path:
    """``WORM_BASE_DIR`` for worker 0; ``<WORM_BASE_DIR>-<i>`` for the worker of ``inbox-<i>``.

    Each directory is one hash chain with one writer; ``flk worm verify`` checks each.
    """
    base = settings.audit_dir
    return base if index == 0 else base.with_name(f"{base.name}-{index}")


def worm_audit_factory(settings: Settings) -> AuditFactory:
    """WORM audit logs (SPEC section 7) per worker index, signing key under DATA_DIR/audit."""
    from fractal_lba.audit.worm import open_worm_from_settings

    def make(index: int) -> AuditLog:
        return open_worm_from_settings(
            data_dir=settings.data_dir,
            base_dir=audit_dir_for(settings, index),
            max_segment_bytes=settings.worm_max_segment_size,
            key_path=settings.audit.key_path,
            region_id=settings.region_id,
            chain_root=settings.audit_dir,
        )

    return make


def _multiprocess_registry() -> CollectorRegistry:
    """With several workers, /metrics aggregates every worker's files (prometheus mmap mode,
    ``PROMETHEUS_MULTIPROC_DIR``, read by prometheus_client itself)."""
    from prometheus_client import multiprocess

    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
    return reg


def app_from_env(settings: Settings | None = None) -> VerifierApp:
    """Factory for ``flk serve`` (and each uvicorn worker): Settings from the environment,
    JSON logging at ``LOG_LEVEL``, then :func:`create_app`."""
    from fractal_lba.server.logs import configure_logging

    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.log_level)
    failpoints.configure(failpoints_from_env())
    app = create_app(settings)
    tune_gc()
    return app


GC_THRESHOLDS = (20_000, 50, 100)
"""Young-generation threshold of a serving process (CPython's default is 700)."""


def tune_gc() -> None:
    """Make the cyclic GC cheaper for a serving process (not for library users or tests).

    Every request allocates a few dozen short-lived containers (futures, dicts, structs) that
    reference counting frees; with the default threshold the collector still ran a young
    collection every ~700 allocations and scanned long-lived objects in the older ones. Objects
    alive after setup are frozen out of collection, and the young threshold is raised.
    Measured: 5-8% less CPU per request (bench/PROFILE.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
