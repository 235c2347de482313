"""Dedup stores: first-write-wins storage of PCS outcomes keyed by ``(tenant_id, pcs_id)``.

Backends: ``sqlite`` (embedded default), ``memory``, ``redis``, ``postgres``; build one with
:func:`create_store`, then ``await store.open()`` at startup and ``await store.close()`` at
shutdown.

Each networked or file backend is one package, ``stores/<backend>/``, shared by every
feature that keeps state there (dedup records, quota counters, the Redis limiter's client;
the policy registry's table goes into the backend's ``schema`` module): its connection
setup, its one table-driven ``map_exceptions``/``translate`` from driver errors to
:class:`StoreError`/:class:`StoreUnavailable`, its schema (tables by name, namespace
prefix) and its stores. No module outside ``stores/<backend>/`` imports a driver.
"""

from fractal_lba.stores.base import DedupStore, StoredOutcome
from fractal_lba.stores.errors import StoreError, StoreUnavailable
from fractal_lba.stores.expiry import Purger
from fractal_lba.stores.factory import BACKENDS, create_quota_store, create_store
from fractal_lba.stores.memory import MemoryStore, StoreFull
from fractal_lba.stores.postgres import PostgresStore
from fractal_lba.stores.redis import RedisStore
from fractal_lba.stores.sqlite import SqliteStore

__all__ = [
    "BACKENDS",
    "DedupStore",
    "MemoryStore",
    "PostgresStore",
    "Purger",
    "RedisStore",
    "SqliteStore",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "StoredOutcome",
    "create_quota_store",
    "create_store",
]
