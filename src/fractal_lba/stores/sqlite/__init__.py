"""The SQLite backend: connection setup, error mapping, schema, and every store kept in it
(dedup records on a store thread with group commit and an off-thread checkpointer, daily
quota counters)."""

from fractal_lba.stores.sqlite.dedup import SqliteStore
from fractal_lba.stores.sqlite.quota import SqliteQuotaStore

__all__ = ["SqliteQuotaStore", "SqliteStore"]
