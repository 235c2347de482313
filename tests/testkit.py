"""Test kit shared by every test package: real-service config, skip-or-fail rule, ports,
the fake clock and the polling helpers, a private redis-server, a TCP proxy to cut or
black-hole a backend, and a real small tmpfs to fill or remount (full disk, read-only disk).

Services: ``REDIS_URL`` / ``POSTGRES_DSN`` (env overrides). A test whose service is absent is
skipped with a reason, unless ``FLK_REQUIRE_SERVICES=1`` (CI), where it fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest
import redis

T = TypeVar("T")

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get("POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("FLK_REQUIRE_SERVICES") == "1"

# Every dedup backend; the shared ones are those several processes/replicas can use.
BACKENDS = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgres", marks=pytest.mark.postgres),
]
SHARED_BACKENDS = [p for p in BACKENDS if p.values[0] != "memory"]


def service_missing(reason: str) -> NoReturn:
    """Skip (default) or fail (``FLK_REQUIRE_SERVICES=1``) a test whose service is absent."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (FLK_REQUIRE_SERVICES=1 requires it)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- time and polling: the one copy of each --------------------------------------------------

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
"""Where a :class:`FakeClock` starts unless told otherwise (a midday, far from a UTC day's
end, so a test that advances a few hours stays on one quota day)."""


class FakeClock:
    """An injectable unix-seconds clock the test moves by hand: expiry, rate limits and
    timestamps are tested by moving time, never by sleeping."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


def wait_until(ok: Callable[[], bool], *, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``ok`` until true; fail at the deadline (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


async def eventually(
    fn: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool] | None = None,
    *,
    timeout: float = 20.0,
    retry: tuple[type[BaseException], ...] = (),
    interval: float = 0.02,
) -> T:
    """Await ``fn`` until its result satisfies ``ok`` (any result, without ``ok``), retrying
    while it raises one of ``retry``; at the deadline the last such error is raised again,
    or an AssertionError names the last result."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await fn()
        except retry:
            if time.monotonic() > deadline:
                raise
        else:
            if ok is None or ok(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached within {timeout}s; last: {result!r}")
        await asyncio.sleep(interval)


# --- a private redis-server the test may stop, kill and restart ---------------------------


class PrivateRedis:
    """A ``redis-server`` child process on a fixed free port; only this PID is signalled."""

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
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, "redis-server exited on start"
            try:
                with redis.Redis(port=self.port, socket_timeout=0.5) as r:
                    r.ping()
                return
            except (redis.RedisError, OSError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hang)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()  # SIGKILL also ends a SIGSTOPped process
            proc.wait(timeout=10)


# --- an in-test TCP proxy that can black-hole or cut connections ----------------------------


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; ``blackhole``/``cut``/``restore`` fake outages."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._blackhole = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def blackhole(self) -> None:
        """Keep every connection open but drop all bytes: the backend seems hung."""
        self._blackhole = True

    async def cut(self) -> None:
        """Stop listening and reset every connection: the backend seems down."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._drop_connections()

    async def restore(self) -> None:
        """Drop the (desynchronised) connections and forward again on the same port."""
        await self._drop_connections()
        self._blackhole = False
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._writers.clear()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if self._blackhole:
                    continue
                dst.write(data)
                await dst.drain()
        dst.transport.abort()


# --- a real, small tmpfs: full disks and read-only remounts without fakes ------------------


class Tmpfs:
    """A tmpfs mounted at ``path`` (``tmpfs(...)`` mounts and always unmounts it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, size: str | None = None, *, read_only: bool | None = None) -> None:
        """``mount -o remount,size=SIZE[,ro|rw]``: free space (or take it) under a live process.

        Linux refuses ``ro`` (EBUSY) while any file on it is open for writing, so a read-only
        remount only works on a stopped writer; inject EROFS with a failpoint otherwise.
        """
        opts = ["remount"]
        if size is not None:
            opts.append(f"size={size}")
        if read_only is not None:
            opts.append("ro" if read_only else "rw")
        _run(["mount", "-o", ",".join(opts), str(self.path)])

    def fill(self, leave: int = 0) -> Path:
        """Write a ballast file until at most ``leave`` bytes are free; return its path."""
        ballast = self.path / "ballast"
        st = os.statvfs(self.path)
        size = max(0, st.f_bavail * st.f_frsize - leave)
        with open(ballast, "ab") as fh:
            chunk = b"\0" * (1 << 20)
            while size > 0:
                try:
                    size -= fh.write(chunk[: min(size, len(chunk))])
                    fh.flush()
                except OSError:
                    break
        return ballast

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Tmpfs]:
    """Mount a real tmpfs of ``size`` (e.g. ``"3m"``) at ``path`` (created, mode 0700).

    Needs root (tests run as root here and in CI); skipped or failed like a missing service
    otherwise. Always unmounted afterwards, lazily when a killed process still holds a file.
    """
    if os.geteuid() != 0:
        service_missing("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)])
    try:
        yield Tmpfs(path)
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            _run(["umount", "-l", str(path)])
