"""The one mapping of psycopg errors to store errors (table-driven by SQLSTATE class).

Messages carry the SQLSTATE (or the error class), never the server's message: it may quote
row values.
"""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout
from psycopg_pool.errors import PoolClosed

from fractal_lba.stores.errors import StoreError, StoreUnavailable


class StatementError(StoreError):
    """A statement was refused for its arguments (e.g. a NUL byte in a text column): retrying
    the same batch will not help, but the other calls of the batch may be fine alone."""


# SQLSTATE class -> domain error. 08 connection, 53 resources, 57 operator intervention
# (shutdown, statement timeout), 58 system, 40 rollback (deadlock, serialization): the server
# cannot serve now. 22 data exception: refused for an argument.
_SQLSTATE_CLASSES: dict[str, type[StoreError]] = {
    "08": StoreUnavailable,
    "53": StoreUnavailable,
    "57": StoreUnavailable,
    "58": StoreUnavailable,
    "40": StoreUnavailable,
    "22": StatementError,
}
# Errors without a telling SQLSTATE, by driver class (first match wins).
_CLASSES: tuple[tuple[type[BaseException], type[StoreError]], ...] = (
    (psycopg.OperationalError, StoreUnavailable),
    (psycopg.InterfaceError, StoreUnavailable),
    (psycopg.DataError, StatementError),
)
DRIVER_ERRORS = (psycopg.Error, PoolTimeout, PoolClosed, OSError, UnicodeError)


def timed_out(op: str, timeout: float) -> StoreUnavailable:
    return StoreUnavailable(f"postgres {op} timed out after {timeout:g}s")


def translate(exc: BaseException, op: str, timeout: float) -> StoreError:
    """The store error for driver error ``exc`` of operation ``op``."""
    if isinstance(exc, PoolTimeout):
        return timed_out(op, timeout)
    if isinstance(exc, PoolClosed):
        return StoreError("postgres store is not open")
    if isinstance(exc, UnicodeError):  # a lone surrogate in a str argument
        return StatementError(f"postgres {op} failed: argument is not valid text")
    if isinstance(exc, OSError):
        return StoreUnavailable(f"postgres {op} failed: {type(exc).__name__}")
    state = getattr(exc, "sqlstate", None) or ""
    what = state or type(exc).__name__
    for driver, domain in _CLASSES:
        if isinstance(exc, driver) and domain is StoreUnavailable:
            return domain(f"postgres {op} failed: {what}")
    kind = _SQLSTATE_CLASSES.get(state[:2])
    if kind is None:
        kind = next((d for c, d in _CLASSES if isinstance(exc, c)), StoreError)
    return kind(f"postgres {op} failed: {what}")
