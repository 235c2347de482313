"""The PostgreSQL backend: error mapping, schema (tables by name, created under advisory
locks), and every store kept in PostgreSQL (dedup records on a pool with batching, daily
quota counters)."""

from fractal_lba.stores.postgres.dedup import PostgresStore
from fractal_lba.stores.postgres.quota import PostgresQuotaStore

__all__ = ["PostgresQuotaStore", "PostgresStore"]
