"""The one mapping of ``redis`` driver errors to store errors (table-driven, httpx style).

Messages name the backend, the operation and the error class or the server's reply code,
never a key, a value or the URL. Callers outside the store domain (the rate limiter) map
:class:`~fractal_lba.stores.errors.StoreError` to their own error at their seam.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import AuthenticationError, ConnectionError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fractal_lba.stores.errors import StoreError, StoreUnavailable

T = TypeVar("T")

# Error replies of a server that is up but cannot serve right now.
TRANSIENT_REPLIES = frozenset(
    {"LOADING", "BUSY", "READONLY", "MISCONF", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"}
)


def timed_out(op: str, timeout: float) -> StoreUnavailable:
    return StoreUnavailable(f"redis {op} timed out after {timeout:g}s")


def _reply(exc: BaseException, op: str) -> StoreError:
    code = str(exc).split(" ", 1)[0][:16]
    kind = StoreUnavailable if code in TRANSIENT_REPLIES else StoreError
    return kind(f"redis {op} failed: server replied {code}")


_Build = Callable[[BaseException, str], StoreError]


def _auth(exc: BaseException, op: str) -> StoreError:
    return StoreUnavailable(f"redis {op} failed: authentication rejected")


def _down(exc: BaseException, op: str) -> StoreError:
    return StoreUnavailable(f"redis {op} failed: {type(exc).__name__}")


def _misuse(exc: BaseException, op: str) -> StoreError:
    return StoreError(f"redis {op} failed: {type(exc).__name__}")


# First match wins (AuthenticationError is a ConnectionError; every class is a RedisError).
_MAPPING: tuple[tuple[tuple[type[BaseException], ...], _Build], ...] = (
    ((AuthenticationError,), _auth),
    ((ConnectionError, OSError), _down),
    ((ResponseError,), _reply),
    ((RedisError,), _misuse),
)


def translate(exc: BaseException, op: str, timeout: float) -> StoreError:
    """The store error for driver error ``exc`` of operation ``op``."""
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return timed_out(op, timeout)
    for kinds, build in _MAPPING:
        if isinstance(exc, kinds):
            return build(exc, op)
    return StoreError(f"redis {op} failed: {type(exc).__name__}")


async def call(op: str, awaitable: Awaitable[T], timeout: float) -> T:
    """Await a redis call within ``timeout``; every driver error becomes a store error
    (without the driver exception chained)."""
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except (TimeoutError, RedisError, OSError) as exc:
        raise translate(exc, op, timeout) from None
