"""Helpers of the dedup store tests: outcomes, polling, outage assertions.

Service config, ports, the fake clock, polling, the private redis-server and the TCP proxy
live in ``testkit``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import testkit
from fractal_lba.stores import StoredOutcome, StoreUnavailable
from testkit import BACKENDS as BACKENDS
from testkit import POSTGRES_DSN as POSTGRES_DSN
from testkit import REDIS_URL as REDIS_URL
from testkit import SHARED_BACKENDS as SHARED_BACKENDS
from testkit import FakeClock as FakeClock
from testkit import PrivateRedis as PrivateRedis
from testkit import TcpProxy as TcpProxy
from testkit import free_port as free_port
from testkit import service_missing as service_missing

T = TypeVar("T")

T0 = 1_700_000_000.0
"""Where the store tests' clock starts."""


def outcome(request_id: str, *, status: int = 200, created_at: float = 1.0) -> StoredOutcome:
    """A distinguishable outcome; ``request_id`` names it."""
    body = b'{"accepted":true,"id":"' + request_id.encode() + b'","bin":"\xff\x00"}'
    return StoredOutcome(
        status=status,
        body=body,
        payload_hash="ab" * 32,
        request_id=request_id,
        created_at=created_at,
    )


# --- gates ---------------------------------------------------------------------------------


class BatchProbe:
    """Wraps a store Batcher's batch function: the test learns when a batch is in flight
    (``running`` is set on entry, ``starts``/``ends`` record loop times), instead of
    sleeping and hoping it is."""

    def __init__(self, batcher: Any) -> None:
        self.running = asyncio.Event()
        self.starts: list[float] = []
        self.ends: list[float] = []
        inner = batcher._run

        async def run(items: list[Any], timeout: float) -> Any:
            loop = asyncio.get_running_loop()
            self.starts.append(loop.time())
            self.running.set()
            try:
                return await inner(items, timeout)
            finally:
                self.ends.append(loop.time())

        batcher._run = run

    async def wait_running(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            await self.running.wait()


# --- polling -------------------------------------------------------------------------------


async def eventually(fn: Callable[[], Awaitable[T]], *, timeout: float = 20.0) -> T:
    """Retry ``fn`` while it raises StoreUnavailable, up to a deadline (no fixed sleeps)."""
    return await testkit.eventually(fn, timeout=timeout, retry=(StoreUnavailable,), interval=0.05)


async def assert_unavailable_within(
    fn: Callable[[], Awaitable[object]], op_timeout: float, *, slack: float = 0.5
) -> float:
    """Assert ``fn`` raises StoreUnavailable within op_timeout (+ scheduling slack)."""
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        # A hang fails the test here instead of blocking the suite.
        async with asyncio.timeout(op_timeout + 5):
            await fn()
    elapsed = time.monotonic() - t0
    assert elapsed < op_timeout + slack, f"took {elapsed:.2f}s, op_timeout {op_timeout}s"
    assert_no_driver_chain(info.value)
    return elapsed


def assert_no_driver_chain(exc: BaseException) -> None:
    """A store error must not carry the driver exception (type or message) along."""
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__
