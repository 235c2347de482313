"""Build the dedup store named by ``DEDUP_BACKEND``: a dict from name to constructor."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fractal_lba.errors import ConfigError
from fractal_lba.stores.base import Clock, DedupStore
from fractal_lba.stores.memory import DEFAULT_MAX_ENTRIES, MemoryStore
from fractal_lba.stores.postgres import PostgresStore
from fractal_lba.stores.redis_store import RedisStore
from fractal_lba.stores.sqlite import SqliteStore

SQLITE_FILENAME = "dedup.sqlite3"


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


BACKENDS: dict[str, Callable[[_Options], DedupStore]] = {
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
    """Construct (not open) the store for ``backend``; unknown names raise ``ConfigError``.

    No I/O happens here: call ``await store.open()`` in the app's startup and
    ``await store.close()`` in its shutdown.
    """
    factory = BACKENDS.get(backend)
    if factory is None:
        raise ConfigError(
            f"DEDUP_BACKEND must be one of {', '.join(sorted(BACKENDS))}, got {backend!r}"
        )
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
    try:
        return factory(options)
    except ValueError as exc:
        raise ConfigError(f"DEDUP_BACKEND={backend}: {exc}") from None
