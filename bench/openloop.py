"""Open-loop load at a constant rate, latency measured from the *scheduled* send time.

Request ``i`` is due at ``t0 + i / rate`` whatever happened to earlier requests; it goes out on
an idle keep-alive connection (a new one is opened when none is idle, up to ``--max-conns``;
beyond that it waits for one). Its latency is ``answer time - due time``, so a server stall
shows up as latency of every request scheduled during it (no coordinated omission, as in
wrk2). The driver reports its own lag (how late requests left relative to their due time):
run it against ``POST /v1/bench/null`` to show the driver is not the bottleneck.

Usage: python -m bench.openloop --url http://127.0.0.1:8080 --bodies FILE --rate 1000
       --duration 60 [--path /v1/pcs/submit]   (prints one JSON line)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from bench.pcsgen import read_bodies
from bench.stats import summarize

Result = tuple[int, bool]
"""(status, Idempotent-Replayed header present)."""


def build_request(host: str, path: str, tenant: str, body: bytes) -> bytes:
    """Raw HTTP/1.1 keep-alive POST."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-Tenant-Id: {tenant}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def parse_response(buf: bytearray) -> tuple[int, bool, int] | None:
    """(status, replayed, bytes consumed) of the first complete response in ``buf``, or None.

    Only Content-Length framing is supported (the verifier always sends it).
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    length = 0
    pos = head.find(b"\r\ncontent-length:")
    if pos >= 0:
        stop = head.find(b"\r\n", pos + 2)
        length = int(head[pos + 17 : stop if stop >= 0 else len(head)].strip())
    total = end + 4 + length
    if len(buf) < total:
        return None
    return status, b"\r\nidempotent-replayed:" in head, total


class Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[Result, float]] | None = None
        self.alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        parsed = parse_response(self.buf)
        if parsed is None:
            return
        status, replayed, used = parsed
        del self.buf[:used]
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(((status, replayed), time.perf_counter()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("connection closed"))

    def send(self, data: bytes) -> asyncio.Future[tuple[Result, float]]:
        assert self.transport is not None
        fut: asyncio.Future[tuple[Result, float]] = asyncio.get_running_loop().create_future()
        self.waiter = fut
        self.transport.write(data)
        return fut


async def drive(
    url: str,
    requests: list[bytes],
    rate: float,
    duration: float,
    *,
    max_conns: int = 256,
    warm_conns: int = 16,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Send ``rate * duration`` requests on schedule; return latency and status summary."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    idle: collections.deque[Conn] = collections.deque()
    waiting: collections.deque[asyncio.Future[Conn]] = collections.deque()
    opened = 0

    async def connect() -> Conn:
        nonlocal opened
        opened += 1
        _, proto = await loop.create_connection(Conn, host, port)
        return proto

    for _ in range(warm_conns):
        idle.append(await connect())

    async def acquire() -> Conn:
        while idle:
            conn = idle.popleft()
            if conn.alive:
                return conn
        if opened < max_conns:
            return await connect()
        fut: asyncio.Future[Conn] = loop.create_future()
        waiting.append(fut)
        return await fut

    def release(conn: Conn) -> None:
        if not conn.alive:
            return
        while waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        idle.append(conn)

    total = int(rate * duration)
    latencies: list[float] = []
    lags: list[float] = []
    statuses: collections.Counter[str] = collections.Counter()
    errors = 0

    async def one(i: int, due: float) -> None:
        nonlocal errors
        conn = await acquire()
        lags.append(time.perf_counter() - due)
        try:
            (status, replayed), done = await asyncio.wait_for(
                conn.send(requests[i % len(requests)]), timeout
            )
        except (ConnectionError, TimeoutError, OSError):
            errors += 1
            if conn.transport is not None:
                conn.transport.close()
            return
        latencies.append(done - due)
        statuses[f"{status}{'r' if replayed else ''}"] += 1
        release(conn)

    tasks: set[asyncio.Task[None]] = set()
    t0 = time.perf_counter() + 0.05
    interval = 1.0 / rate
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and t0 + i * interval <= now:
            task = asyncio.create_task(one(i, t0 + i * interval))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
    if tasks:
        await asyncio.wait(tasks)
    wall = time.perf_counter() - t0
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    return {
        "rate": rate,
        "duration_s": duration,
        "sent": total,
        "completed": len(latencies),
        "achieved_rps": len(latencies) / wall if wall > 0 else 0.0,
        "errors": errors,
        "connections": opened,
        "status": dict(statuses),
        "latency_ms": summarize([x * 1000 for x in latencies]),
        "send_lag_ms": summarize([x * 1000 for x in lags]),
        "wraps": max(0, (total - 1) // len(requests)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--bodies", type=Path, required=True)
    ap.add_argument("--path", default="/v1/pcs/submit")
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--max-conns", type=int, default=256)
    args = ap.parse_args(argv)
    host = urlsplit(args.url).netloc
    reqs = [build_request(host, args.path, t, b) for t, b in read_bodies(args.bodies)]
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    out = runner(drive(args.url, reqs, args.rate, args.duration, max_conns=args.max_conns))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
