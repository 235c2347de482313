"""Helpers of the WAL fault tests against a real ``flk serve``: load, ledger, audit, WAL."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from server_helpers import JSON, SUBMIT, body, make_pcs

from fractal_lba.server.inbox import Admit, decode_record
from fractal_lba.wal import WalLog


@dataclass
class Ledger:
    """What the clients saw: every answer by status, and the acknowledged request ids."""

    acked: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    """request id -> (body, status) of every 200/202."""
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, content: bytes, resp: httpx.Response | None) -> None:
        with self.lock:
            if resp is None:
                self.transport_errors += 1
                return
            self.statuses[resp.status_code] = self.statuses.get(resp.status_code, 0) + 1
            if resp.status_code in (200, 202):
                self.acked[resp.headers["x-request-id"]] = (content, resp.status_code)
            else:
                err = resp.json().get("error", "?")
                self.errors[err] = self.errors.get(err, 0) + 1


def unique_body() -> bytes:
    return body(make_pcs(shard_id=f"s-{uuid.uuid4().hex[:12]}"))


def load(
    url: str,
    ledger: Ledger,
    *,
    n: int,
    threads: int = 8,
    stop: threading.Event | None = None,
) -> None:
    """Send ``n`` fresh PCS from ``threads`` clients (or fewer, once ``stop`` is set)."""

    def worker(count: int) -> None:
        with httpx.Client(base_url=url, timeout=15) as client:
            for _ in range(count):
                if stop is not None and stop.is_set():
                    return
                content = unique_body()
                try:
                    resp: httpx.Response | None = client.post(SUBMIT, content=content, headers=JSON)
                except httpx.TransportError:
                    resp = None
                ledger.record(content, resp)

    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker, c) for c in per]:
            f.result()


def audit_by_request(audit_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every audit entry of every chain, grouped by request id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for seg in sorted(audit_dir.rglob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*.jsonl")):
        for line in seg.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                out.setdefault(entry["request_id"], []).append(entry)
    return out


def wal_admits(wal_root: Path) -> dict[str, Admit]:
    """Every admit in every inbox directory (opens each log: the server must be stopped)."""
    out: dict[str, Admit] = {}
    for d in sorted(wal_root.glob("inbox-*")):
        with WalLog(d) as log:
            for _, payload in log.iter_records():
                rec = decode_record(payload)
                if isinstance(rec, Admit):
                    out[rec.request_id] = rec
    return out
