"""Build the stores of ``DEDUP_BACKEND``: one table from backend name to constructors.

The backend names are ``config.BACKENDS`` (the ``Backend`` literal); these tables are keyed
by it, so a backend cannot be named in one place and missing in another (a test checks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fractal_lba.config import Backend
from fractal_lba.errors import ConfigError
from fractal_lba.stores.base import Clock, DedupStore
from fractal_lba.stores.memory import DEFAULT_MAX_ENTRIES, MemoryQuotaStore, MemoryStore
from fractal_lba.stores.postgres import PostgresQuotaStore, PostgresStore
from fractal_lba.stores.redis import RedisQuotaStore, RedisStore
from fractal_lba.stores.sqlite import SqliteQuotaStore, SqliteStore

if TYPE_CHECKING:
    from fractal_lba.tenancy.quota import QuotaStore

SQLITE_FILENAME = "dedup.sqlite3"
QUOTA_SQLITE_FILENAME = "quota.sqlite3"


@dataclass(frozen=True, slots=True)
class _Options:
    data_dir: Path
    redis_url: str
    postgres_dsn: str
    namespace: str
    op_timeout: float
    snapshot_path: Path | None
    clock: Clock
    memory_max_entries: int


BACKENDS: dict[Backend, Callable[[_Options], DedupStore]] = {
    "memory": lambda o: MemoryStore(
        snapshot_path=o.snapshot_path,
        op_timeout=o.op_timeout,
        clock=o.clock,
        max_entries=o.memory_max_entries,
    ),
    "sqlite": lambda o: SqliteStore(
        o.data_dir / SQLITE_FILENAME,
        namespace=o.namespace,
        op_timeout=o.op_timeout,
        clock=o.clock,
    ),
    "redis": lambda o: RedisStore(
        o.redis_url, namespace=o.namespace, op_timeout=o.op_timeout, clock=o.clock
    ),
    "postgres": lambda o: PostgresStore(
        o.postgres_dsn, namespace=o.namespace, op_timeout=o.op_timeout, clock=o.clock
    ),
}

QUOTA_BACKENDS: dict[Backend, Callable[[_Options], QuotaStore]] = {
    "memory": lambda o: MemoryQuotaStore(),
    "sqlite": lambda o: SqliteQuotaStore(
        o.data_dir / QUOTA_SQLITE_FILENAME, namespace=o.namespace, op_timeout=o.op_timeout
    ),
    "redis": lambda o: RedisQuotaStore(o.redis_url, namespace=o.namespace, op_timeout=o.op_timeout),
    "postgres": lambda o: PostgresQuotaStore(
        o.postgres_dsn, namespace=o.namespace, op_timeout=o.op_timeout
    ),
}


def _build(table: dict[Backend, Callable[[_Options], object]], backend: str, o: _Options) -> object:
    factory = table.get(backend)  # type: ignore[call-overload]
    if factory is None:
        raise ConfigError(
            f"DEDUP_BACKEND must be one of {', '.join(sorted(table))}, got {backend!r}"
        )
    try:
        return factory(o)
    except ValueError as exc:
        raise ConfigError(f"DEDUP_BACKEND={backend}: {exc}") from None


def create_store(
    backend: str,
    *,
    data_dir: Path,
    redis_url: str,
    postgres_dsn: str,
    namespace: str = "flk",
    op_timeout: float = 2.0,
    snapshot_path: Path | None = None,
    clock: Clock = time.time,
    memory_max_entries: int = DEFAULT_MAX_ENTRIES,
) -> DedupStore:
    """Construct (not open) the dedup store for ``backend``; unknown names raise
    ``ConfigError``.

    No I/O happens here: call ``await store.open()`` in the app's startup and
    ``await store.close()`` in its shutdown.
    """
    options = _Options(
        data_dir=data_dir,
        redis_url=redis_url,
        postgres_dsn=postgres_dsn,
        namespace=namespace,
        op_timeout=op_timeout,
        snapshot_path=snapshot_path,
        clock=clock,
        memory_max_entries=memory_max_entries,
    )
    store: DedupStore = _build(BACKENDS, backend, options)  # type: ignore[arg-type,assignment]
    return store


def create_quota_store(
    backend: str,
    *,
    data_dir: Path,
    redis_url: str,
    postgres_dsn: str,
    namespace: str = "flk",
    op_timeout: float = 2.0,
) -> QuotaStore:
    """The quota store living next to the dedup store of ``backend`` (DEDUP_BACKEND)."""
    options = _Options(
        data_dir=data_dir,
        redis_url=redis_url,
        postgres_dsn=postgres_dsn,
        namespace=namespace,
        op_timeout=op_timeout,
        snapshot_path=None,
        clock=time.time,
        memory_max_entries=DEFAULT_MAX_ENTRIES,
    )
    store: QuotaStore = _build(QUOTA_BACKENDS, backend, options)  # type: ignore[arg-type,assignment]
    return store
