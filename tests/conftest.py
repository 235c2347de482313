"""Fixtures shared by every test package: anyio backend, real services, unique namespaces.

``redis_url`` / ``postgres_dsn`` skip the test with a reason when the service is unreachable,
unless ``FLK_REQUIRE_SERVICES=1``, where they fail it instead. Each test gets a unique
``namespace`` (key / table prefix) and the fixtures delete what that namespace created.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from hypothesis import settings
from psycopg import sql

from testkit import (
    BACKENDS,
    POSTGRES_DSN,
    REDIS_URL,
    PrivateRedis,
    TcpProxy,
    service_missing,
)

# Hypothesis' per-example deadline is a timing assertion: on a loaded machine it fails tests
# that are correct. Speed is measured by the benchmark (bench/), never asserted by a test.
settings.register_profile("flk", deadline=None)
settings.load_profile("flk")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def redis_problem() -> str | None:
    """Why Redis cannot be used here, or None."""
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1) as r:
            r.ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis not reachable at REDIS_URL ({type(exc).__name__})"
    return None


@pytest.fixture(scope="session")
def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used here, or None."""
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at POSTGRES_DSN ({type(exc).__name__})"
    return None


@pytest.fixture
def redis_url(redis_problem: str | None, namespace: str) -> Iterator[str]:
    """URL of the shared Redis; deletes this test's namespace keys afterwards."""
    if redis_problem:
        service_missing(redis_problem)
    yield REDIS_URL
    with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2) as r:
        keys = list(r.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            r.delete(*keys)


@pytest.fixture
def postgres_dsn(postgres_problem: str | None, namespace: str) -> Iterator[str]:
    """DSN of the shared PostgreSQL; drops this test's tables afterwards."""
    if postgres_problem:
        service_missing(postgres_problem)
    yield POSTGRES_DSN
    with psycopg.connect(POSTGRES_DSN, connect_timeout=2, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (f"{namespace}\\_%",)
        ).fetchall()
        for (table,) in rows:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each dedup backend in turn (redis/postgres marked, and skipped or failed if absent)."""
    name: str = request.param
    return name


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, which it may pause, kill and restart."""
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
    """A TCP proxy in front of the real PostgreSQL, to cut or black-hole it."""
    params = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    proxy = TcpProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
