"""Fixtures of the verifier tests: settings, in-process apps over httpx, real services."""

from __future__ import annotations

import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from psycopg import sql
from server_helpers import (
    HMAC_KEY,
    POSTGRES_DSN,
    REDIS_URL,
    CountingStore,
    ListAudit,
    TcpProxy,
    free_port,
    service_missing,
    wait_until,
)

from fractal_lba.config import Settings
from fractal_lba.policy import Policy
from fractal_lba.server import VerifierApp, create_app
from fractal_lba.stores import create_store


@pytest.fixture(scope="session")
def redis_problem() -> str | None:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1) as r:
            r.ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis not reachable at {REDIS_URL} ({type(exc).__name__})"
    return None


@pytest.fixture(scope="session")
def postgres_problem() -> str | None:
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at POSTGRES_DSN ({type(exc).__name__})"
    return None


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


@pytest.fixture
def redis_url(redis_problem: str | None, namespace: str) -> Iterator[str]:
    if redis_problem:
        service_missing(redis_problem)
    yield REDIS_URL
    with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2) as r:
        keys = list(r.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            r.delete(*keys)


@pytest.fixture
def postgres_dsn(postgres_problem: str | None, namespace: str) -> Iterator[str]:
    if postgres_problem:
        service_missing(postgres_problem)
    yield POSTGRES_DSN
    with psycopg.connect(POSTGRES_DSN, connect_timeout=2, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(f"{namespace}_dedup"))
        )


BACKENDS = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from an env dict on top of a temp DATA_DIR and the test HMAC key."""

    def make(**env: str) -> Settings:
        base = {"DATA_DIR": str(tmp_path / "data"), "PCS_HMAC_KEY": HMAC_KEY}
        return Settings.from_env({**base, **env})

    return make


@pytest.fixture
def store_url_for(request: pytest.FixtureRequest) -> Callable[[str], dict[str, str]]:
    """Env for a backend (requests the service fixture so absent services skip/fail)."""

    def make(backend: str) -> dict[str, str]:
        env = {"DEDUP_BACKEND": backend}
        if backend == "redis":
            env["REDIS_URL"] = request.getfixturevalue("redis_url")
        if backend == "postgres":
            env["POSTGRES_DSN"] = request.getfixturevalue("postgres_dsn")
        return env

    return make


class Harness:
    """An in-process app with a counting store and a list audit, driven through httpx."""

    def __init__(self, app: VerifierApp, store: CountingStore, audit: ListAudit) -> None:
        self.app = app
        self.store = store
        self.audit = audit
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://verifier"
        )

    async def submit(self, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        hdrs = {"content-type": "application/json", **(headers or {})}
        return await self.client.post("/v1/pcs/submit", content=content, headers=hdrs)


@pytest.fixture
def make_harness(settings_for: Callable[..., Settings], namespace: str) -> Callable[..., Any]:
    """``async with make_harness(**env) as h:`` -> a running :class:`Harness`."""
    import contextlib

    @contextlib.asynccontextmanager
    async def make(
        audit: ListAudit | None = None, policy: Policy | None = None, **env: str
    ) -> AsyncIterator[Harness]:
        settings = settings_for(**env)
        inner = create_store(
            settings.dedup_backend,
            data_dir=settings.data_dir,
            redis_url=settings.redis_url.reveal().decode(),
            postgres_dsn=settings.postgres_dsn.reveal().decode(),
            namespace=namespace,
            op_timeout=settings.store_op_timeout,
        )
        store = CountingStore(inner)
        audit = audit if audit is not None else ListAudit()
        app = create_app(settings, store=store, audit=audit, policy=policy)
        async with app.running():
            h = Harness(app, store, audit)
            try:
                yield h
            finally:
                await h.client.aclose()

    return make


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server binary not installed")
        raise AssertionError("unreachable")
    server = PrivateRedis(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class PrivateRedis:
    """A redis-server child on a free port that a test may kill and restart (by PID)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def up() -> bool:
            try:
                with redis.Redis(port=self.port, socket_timeout=0.5) as r:
                    return bool(r.ping())
            except (redis.RedisError, OSError):
                return False

        wait_until(up, timeout=10, what="private redis-server")

    def pause(self) -> None:
        """SIGSTOP: connections are accepted but nothing answers (a hung backend)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
async def pg_proxy(anyio_backend: str, postgres_dsn: str) -> AsyncIterator[TcpProxy]:
    params = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    proxy = TcpProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.cut()
