"""Fixtures for the dedup store tests: real services, unique namespaces, outage helpers.

Service fixtures (``redis_url``, ``postgres_dsn``) skip the test with a reason when the
service is unreachable, unless ``FLK_REQUIRE_SERVICES=1``, where they fail it instead. Each
test gets a unique ``namespace`` and the fixtures delete what that namespace created.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql
from store_helpers import (
    BACKENDS,
    POSTGRES_DSN,
    REDIS_URL,
    FakeClock,
    PrivateRedis,
    TcpProxy,
    service_missing,
)

from fractal_lba.stores import DedupStore, create_store


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


# --- services --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _redis_problem() -> str | None:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1) as r:
            r.ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis not reachable at REDIS_URL ({type(exc).__name__})"
    return None


@pytest.fixture(scope="session")
def _postgres_problem() -> str | None:
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at POSTGRES_DSN ({type(exc).__name__})"
    return None


@pytest.fixture
def redis_url(_redis_problem: str | None, namespace: str) -> Iterator[str]:
    """URL of the shared Redis; deletes this test's namespace keys afterwards."""
    if _redis_problem:
        service_missing(_redis_problem)
    yield REDIS_URL
    with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2) as r:
        keys = list(r.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            r.delete(*keys)


@pytest.fixture
def postgres_dsn(_postgres_problem: str | None, namespace: str) -> Iterator[str]:
    """DSN of the shared PostgreSQL; drops this test's table afterwards."""
    if _postgres_problem:
        service_missing(_postgres_problem)
    yield POSTGRES_DSN
    with psycopg.connect(POSTGRES_DSN, connect_timeout=2, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(f"{namespace}_dedup"))
        )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


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


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server binary not installed")
    server = PrivateRedis(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def pg_proxy(anyio_backend: str, postgres_dsn: str) -> AsyncIterator[TcpProxy]:
    params = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    proxy = TcpProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
