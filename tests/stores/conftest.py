"""Fixtures of the dedup store tests: a fake clock and stores of each backend.

The service fixtures (``redis_url``, ``postgres_dsn``, ``backend``, ``namespace``,
``private_redis``, ``pg_proxy``) are shared from ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from store_helpers import T0, FakeClock

from fractal_lba.stores import DedupStore, create_store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def make_store(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    namespace: str,
    clock: FakeClock,
) -> Callable[..., DedupStore]:
    """Build (not open) a store of ``backend`` for this test's namespace and clock."""
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else "redis://unused"
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else "unused"

    def make(*, op_timeout: float = 2.0, snapshot: bool = False) -> DedupStore:
        return create_store(
            backend,
            data_dir=tmp_path / "data",
            redis_url=redis_url,
            postgres_dsn=dsn,
            namespace=namespace,
            op_timeout=op_timeout,
            snapshot_path=tmp_path / "snapshot.msgpack" if snapshot else None,
            clock=clock,
        )

    return make


@pytest.fixture
async def store(
    anyio_backend: str, make_store: Callable[..., DedupStore]
) -> AsyncIterator[DedupStore]:
    """An opened store of the parametrized backend; closed afterwards."""
    s = make_store()
    await s.open()
    try:
        yield s
    finally:
        await s.close()
