"""The one mapping of ``sqlite3`` errors to store errors (table-driven, httpx style).

Messages carry SQLite's error name (``SQLITE_BUSY``, ``SQLITE_FULL``...), never the SQL text
or parameters, so no key or payload leaks into a log line or a 503 body.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from fractal_lba.stores.errors import StoreError, StoreUnavailable

# First match wins: misuse and constraint errors are bugs (retrying will not help); every
# other driver or OS error means the file cannot be used right now.
_MAPPING: tuple[tuple[type[BaseException], type[StoreError]], ...] = (
    (sqlite3.IntegrityError, StoreError),
    (sqlite3.ProgrammingError, StoreError),
    (sqlite3.Error, StoreUnavailable),
    (OSError, StoreUnavailable),
)
DRIVER_ERRORS = (sqlite3.Error, OSError)

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock; worth retrying."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def error_name(exc: BaseException) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    return name if isinstance(name, str) else type(exc).__name__


def translate(exc: BaseException, op: str) -> StoreError:
    """The store error for driver error ``exc`` of operation ``op``."""
    for driver, domain in _MAPPING:
        if isinstance(exc, driver):
            return domain(f"sqlite {op} failed: {error_name(exc)}")
    return StoreError(f"sqlite {op} failed: {type(exc).__name__}")


@contextlib.contextmanager
def map_exceptions(op: str) -> Iterator[None]:
    """Raise the store error of any driver error inside the block (without its chain)."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise translate(exc, op) from None
