"""Anchor sinks: one conformance suite over local file, directory and HTTP (mock endpoint)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from audit_helpers import make_entry
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.anchors import (
    AnchorSink,
    DirectoryAnchorSink,
    HttpAnchorSink,
    LocalAnchorFile,
    read_ledger,
)
from fractal_lba.audit.checkpoint import Checkpoint, sign_checkpoint
from fractal_lba.audit.errors import AuditError
from fractal_lba.audit.worm import WormLog
from testkit import FakeClock, wait_until


def _note(key: Ed25519PrivateKey, seg: str = "2025/01/01/120000.jsonl") -> str:
    cp = Checkpoint("o.example/log", 1, hashlib.sha256(b"x").digest(), seg, "t", *["0" * 64] * 3)
    return sign_checkpoint(cp, key, "o.example/log")


class Witness:
    """In-memory stand-in for the external anchor endpoint (the one thing we mock)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"].startswith("text/plain")
        if self.status == 200:
            self.received.append(request.content.decode())
        return httpx.Response(self.status)


def _sinks(tmp_path: Path, witness: Witness) -> dict[str, tuple[AnchorSink, Callable[[], str]]]:
    local = LocalAnchorFile(tmp_path / "anchors.log")
    directory = DirectoryAnchorSink(tmp_path / "mirror")
    client = httpx.Client(transport=httpx.MockTransport(witness.handler))
    http = HttpAnchorSink("https://witness.example/add", client=client)
    return {
        "local": (local, lambda: next(iter(read_ledger(local.path).checkpoints.values()))[1]),
        "directory": (
            directory,
            lambda: (tmp_path / "mirror/2025/01/01/120000.jsonl.checkpoint").read_text(),
        ),
        "http": (http, lambda: witness.received[-1]),
    }


@pytest.mark.parametrize("kind", ["local", "directory", "http"])
def test_sink_stores_note(tmp_path: Path, key: Ed25519PrivateKey, kind: str) -> None:
    sink, stored = _sinks(tmp_path, Witness())[kind]
    note = _note(key)
    sink.publish(note)
    assert stored() == note


@pytest.mark.parametrize("kind", ["local", "directory", "http"])
def test_sink_refuses_malformed(tmp_path: Path, kind: str) -> None:
    sink, _ = _sinks(tmp_path, Witness(status=400))[kind]
    with pytest.raises(AuditError):
        sink.publish("not a checkpoint\n")


def test_directory_sink_never_replaces(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    sink = DirectoryAnchorSink(tmp_path)
    sink.publish(_note(key))
    sink.publish(_note(key))  # idempotent
    with pytest.raises(AuditError, match="different"):
        sink.publish(_note(Ed25519PrivateKey.generate()))


@pytest.mark.anyio
async def test_failed_anchor_is_retried(
    make_log: Callable[..., WormLog], clock: FakeClock, key: Ed25519PrivateKey
) -> None:
    witness = Witness(status=503)
    client = httpx.Client(transport=httpx.MockTransport(witness.handler))
    log = make_log(anchor_sinks=[HttpAnchorSink("https://w.example/", client=client)])
    await log.start()
    await log.append(make_entry(1))
    note = await log.seal()  # returns at once: publishing is off the commit path
    wait_until(lambda: log.stats.anchor_failures >= 1, what="a failed anchor attempt")
    led = read_ledger(log.base_dir / "anchors.log")
    assert len(led.checkpoints) == 1 and not led.anchored  # sealed, not anchored
    witness.status = 200
    assert await log.anchors_settled(10.0)
    assert witness.received == [note]
    assert read_ledger(log.base_dir / "anchors.log").anchored == set(led.checkpoints)
    await log.close()


class GatedSink:
    """A sink that blocks until the test opens its gate (a slow or hung anchor endpoint)."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.received: list[str] = []

    def publish(self, note: str) -> None:
        if not self.gate.wait(timeout=30):
            raise AuditError("gate never opened")
        self.received.append(note)


@pytest.mark.anyio
async def test_a_hung_sink_does_not_stall_appends_or_seals(
    make_log: Callable[..., WormLog], clock: FakeClock
) -> None:
    sink = GatedSink()
    log = make_log(anchor_sinks=[sink])
    await log.start()
    notes = []
    for i in range(3):  # each seal hands its checkpoint over and returns
        await log.append(make_entry(i))
        clock.now += 1
        notes.append(await log.seal())
    await log.append(make_entry(99))
    assert sink.received == [] and not read_ledger(log.base_dir / "anchors.log").anchored
    sink.gate.set()
    assert await log.anchors_settled(10.0)
    assert sink.received == notes  # in checkpoint order
    assert len(read_ledger(log.base_dir / "anchors.log").anchored) == 3
    await log.close()
