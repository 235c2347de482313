"""Errors of the dedup stores.

Every driver exception (``sqlite3``, ``redis``, ``psycopg``, ``OSError``, timeouts) is
translated inside the store that uses the driver, so callers only ever catch these. Messages
name the backend and the operation, never keys, payloads or DSN secrets.

Tree::

    FlkError
    └── StoreError              store misuse or a corrupt record (a bug or tampering)
        └── StoreUnavailable    backend unreachable or timed out; the caller answers 503
"""

from __future__ import annotations

from fractal_lba.errors import FlkError


class StoreError(FlkError):
    """A dedup store failed in a way that retrying will not fix."""

    code = "store_error"


class StoreUnavailable(StoreError):
    """The backend is unreachable, overloaded or timed out; retry later (HTTP 503)."""

    code = "store_unavailable"
