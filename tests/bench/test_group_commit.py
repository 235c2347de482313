"""Group commit holds on the real submit path: 64 concurrent submissions share fsyncs, and no
answer leaves before that request's WAL record AND audit entry were fdatasync'd.

Counting, not timing: ``os.write`` / ``os.fdatasync`` are wrapped to track, per file, which
bytes were written and which of them an fdatasync has covered. When the app sends the
response start, the request's id must already be in the *durable* bytes of the inbox WAL and
of the audit segment. The first WAL and the first audit fdatasync are held (with a deadline)
until all 64 requests have queued behind them, so the batching does not depend on scheduler
luck; an implementation that fsyncs per request (or inline) still fails the count.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.pcsgen import Tenant, generate

from fractal_lba.config import Settings
from fractal_lba.server import create_app

pytestmark = pytest.mark.anyio

N = 64
KEY = "group-commit-test-key"
GATE_TIMEOUT_S = 10.0


@dataclass
class DiskModel:
    """Bytes written and bytes made durable, per file kind (``wal`` / ``audit``)."""

    written: dict[int, bytearray] = field(default_factory=dict)
    durable: dict[str, bytearray] = field(
        default_factory=lambda: {"wal": bytearray(), "audit": bytearray()}
    )
    fsyncs: dict[str, int] = field(default_factory=lambda: {"wal": 0, "audit": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def kind(fd: int) -> str | None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        if "/wal/inbox-" in path and path.endswith(".wal"):
            return "wal"
        if "/audit/" in path and path.endswith(".jsonl"):
            return "audit"
        return None


def _install(monkeypatch: pytest.MonkeyPatch, model: DiskModel,
             gates: dict[str, threading.Event]) -> None:  # fmt: skip
    real_write, real_fdatasync = os.write, os.fdatasync

    def write(fd: int, data: Any) -> int:
        n = real_write(fd, data)
        if model.kind(fd) is not None:
            with model.lock:
                model.written.setdefault(fd, bytearray()).extend(bytes(data[:n]))
        return n

    def fdatasync(fd: int) -> None:
        kind = model.kind(fd)
        if kind is not None and model.fsyncs[kind] == 0:
            gates[kind].wait(GATE_TIMEOUT_S)  # let the other requests queue up behind this one
        with model.lock:
            pending = bytes(model.written.get(fd, b""))
        real_fdatasync(fd)
        if kind is not None:
            with model.lock:
                model.fsyncs[kind] += 1
                model.durable[kind].extend(pending)
                model.written[fd] = bytearray()

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fdatasync", fdatasync)


async def test_64_concurrent_submissions_share_fsyncs_and_answer_only_when_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env(
        {"DATA_DIR": str(tmp_path / "data"), "PCS_HMAC_KEY": KEY, "DEDUP_BACKEND": "memory"}
    )
    app = create_app(settings)
    model = DiskModel()
    gates = {"wal": threading.Event(), "audit": threading.Event()}
    admitted = appended = 0
    violations: list[str] = []

    async with app.running():
        _install(monkeypatch, model, gates)
        real_admit = app.inbox.admit
        real_append = app.audit.append

        async def admit(adm: Any) -> None:
            nonlocal admitted
            admitted += 1
            if admitted == N:
                gates["wal"].set()
            await real_admit(adm)

        async def append(entry: Any) -> Any:
            nonlocal appended
            appended += 1
            if appended == N:
                gates["audit"].set()
            return await real_append(entry)

        monkeypatch.setattr(app.inbox, "admit", admit)
        monkeypatch.setattr(app.audit, "append", append)

        async def checked(scope: Any, receive: Any, send: Callable[[Any], Any]) -> None:
            async def send_checked(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    rid = dict(message["headers"]).get(b"x-request-id", b"")
                    with model.lock:
                        for kind in ("wal", "audit"):
                            if not rid or rid not in model.durable[kind]:
                                violations.append(f"{rid!r} answered before its {kind} fsync")
                await send(message)

            await app(scope, receive, send_checked)

        bodies = list(generate([Tenant("default", KEY)], N, seed=11))
        transport = httpx.ASGITransport(app=checked)
        async with httpx.AsyncClient(transport=transport, base_url="http://v") as client:
            responses = await asyncio.gather(
                *(
                    client.post("/v1/pcs/submit", content=body,
                                headers={"content-type": "application/json"})
                    for _, body in bodies
                )
            )  # fmt: skip
    assert [r.status_code for r in responses] == [200] * N
    assert violations == []
    assert model.fsyncs["wal"] >= 1 and model.fsyncs["audit"] >= 1
    # Outcome markers ride on admit batches; at shutdown they are flushed (one more fsync).
    assert model.fsyncs["wal"] / N <= 0.2, model.fsyncs
    assert model.fsyncs["audit"] / N <= 0.2, model.fsyncs
