"""WormLog: chained durable appends, group commit, rotation, sealing, redaction, replay."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import stat
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from audit_helpers import lines_of, make_entry, segment_paths
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit import AuditLog
from fractal_lba.audit.anchors import read_ledger
from fractal_lba.audit.entry import GENESIS_PREV_HASH, AuditEntry
from fractal_lba.audit.errors import AuditError, AuditLockedError
from fractal_lba.audit.integrity import verify_log
from fractal_lba.audit.worm import WormLog, load_or_create_audit_key, open_worm_from_settings
from testkit import FakeClock


def _independent_chain(base: Path) -> list[dict[str, object]]:
    """Re-derive hashes with nothing but json + hashlib (SPEC section 7)."""
    prev = GENESIS_PREV_HASH
    out = []
    for seg in segment_paths(base):
        for raw in lines_of(seg):
            obj = json.loads(raw)
            assert raw == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
            body = {k: v for k, v in obj.items() if k != "entry_hash"}
            digest = hashlib.sha256(
                json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
            assert obj["entry_hash"] == digest
            assert obj["prev_hash"] == prev
            prev = digest
            out.append(obj)
    return out


def test_wormlog_is_an_auditlog(make_log: Callable[..., WormLog]) -> None:
    log: AuditLog = make_log()
    assert isinstance(log, WormLog)


@pytest.mark.anyio
async def test_append_returns_chained_entry(started: WormLog) -> None:
    a = await started.append(make_entry(1))
    b = await started.append(make_entry(2))
    assert a.prev_hash == GENESIS_PREV_HASH
    assert b.prev_hash == a.entry_hash
    objs = _independent_chain(started.base_dir)
    assert [o["entry_hash"] for o in objs] == [a.entry_hash, b.entry_hash]


@pytest.mark.anyio
async def test_concurrent_appends_chain_and_share_fsyncs(started: WormLog) -> None:
    n = 400
    results = await asyncio.gather(*(started.append(make_entry(i)) for i in range(n)))
    objs = _independent_chain(started.base_dir)
    assert len(objs) == n
    assert {o["request_id"] for o in objs} == {f"req-{i}" for i in range(n)}
    assert {r.entry_hash for r in results} == {o["entry_hash"] for o in objs}
    assert started.stats.entries == n
    assert started.stats.fsyncs < n


@pytest.mark.anyio
async def test_size_rotation_seals_read_only(make_log: Callable[..., WormLog]) -> None:
    log = make_log(max_segment_bytes=3000)
    await log.start()
    for i in range(20):
        await log.append(make_entry(i))
    segs = segment_paths(log.base_dir)
    assert len(segs) > 3
    assert all(p.stat().st_size <= 3000 for p in segs)
    for p in segs[:-1]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o444
    assert stat.S_IMODE(segs[-1].stat().st_mode) == 0o644  # still open
    await log.close()
    assert stat.S_IMODE(segs[-1].stat().st_mode) == 0o444  # sealed on close
    assert len(_independent_chain(log.base_dir)) == 20
    led = read_ledger(log.base_dir / "anchors.log")
    assert set(led.checkpoints) == {p.relative_to(log.base_dir).as_posix() for p in segs}
    assert led.anchored == set(led.checkpoints)


@pytest.mark.anyio
async def test_time_rotation_and_names(make_log: Callable[..., WormLog], clock: FakeClock) -> None:
    log = make_log(rotate_seconds=60)
    await log.start()
    await log.append(make_entry(1))
    clock.now += 61
    await log.maintain()  # idle segment past rotate_seconds gets sealed
    clock.now -= 3600  # clock steps back: names must still increase
    await log.append(make_entry(2))
    await log.append(make_entry(3))
    await log.close()
    rels = [p.relative_to(log.base_dir).as_posix() for p in segment_paths(log.base_dir)]
    assert rels == ["2025/01/01/120000.jsonl", "2025/01/01/120000-1.jsonl"]
    verify_log(log.base_dir, log._writer.signing_key.public_key())  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_chain_continues_across_restart(
    make_log: Callable[..., WormLog], clock: FakeClock
) -> None:
    log = make_log(seal_on_close=False)
    await log.start()
    first = await log.append(make_entry(1))
    await log.close()
    clock.now += 5
    log2 = make_log()
    await log2.start()
    second = await log2.append(make_entry(2))
    await log2.close()
    assert second.prev_hash == first.entry_hash
    assert len(segment_paths(log.base_dir)) == 2  # unsealed segment was sealed on recovery
    assert len(_independent_chain(log.base_dir)) == 2


@pytest.mark.anyio
async def test_redactor_output_is_what_lands_on_disk(make_log: Callable[..., WormLog]) -> None:
    def redact(e: AuditEntry) -> AuditEntry:
        return msgspec.structs.replace(e, reason="[REDACTED_EMAIL]", tenant_id="t-redacted")

    log = make_log(redactor=redact)
    await log.start()
    entry = msgspec.structs.replace(make_entry(1), reason="mail alice@corp.example")
    written = await log.append(entry)
    await log.close()
    raw = b"".join(p.read_bytes() for p in segment_paths(log.base_dir))
    assert b"alice@corp.example" not in raw
    assert written.reason == "[REDACTED_EMAIL]"
    assert _independent_chain(log.base_dir)[0]["reason"] == "[REDACTED_EMAIL]"


@pytest.mark.anyio
async def test_find_requests_and_writable(started: WormLog, clock: FakeClock) -> None:
    for i in range(5):
        await started.append(make_entry(i))
    started.check_writable()
    got = started.find_requests({"req-1", "req-4", "req-99"}, since=clock.now - 10)
    assert got == {"req-1", "req-4"}
    assert started.find_requests(set(), since=0) == set()


@pytest.mark.anyio
async def test_non_finite_float_refused(started: WormLog) -> None:
    with pytest.raises(AuditError, match="not finite"):
        await started.append(msgspec.structs.replace(make_entry(1), D_hat=math.nan))
    await started.append(make_entry(2))  # the log is still usable


@pytest.mark.anyio
async def test_second_writer_is_locked_out(
    started: WormLog, make_log: Callable[..., WormLog]
) -> None:
    with pytest.raises(AuditLockedError):
        await make_log().start()


@pytest.mark.anyio
async def test_not_started_is_not_writable(make_log: Callable[..., WormLog]) -> None:
    log = make_log()
    with pytest.raises(AuditError):
        log.check_writable()
    with pytest.raises(AuditError):
        await log.append(make_entry(1))


def test_audit_key_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit_ed25519.key"
    k1 = load_or_create_audit_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    k2 = load_or_create_audit_key(path)
    assert k1.private_bytes_raw() == k2.private_bytes_raw()


@pytest.mark.anyio
async def test_open_worm_from_settings(tmp_path: Path) -> None:
    log = open_worm_from_settings(data_dir=tmp_path, region_id="eu-1", max_segment_bytes=10_000)
    assert log.base_dir == tmp_path / "audit"
    assert (tmp_path / "audit" / "audit_ed25519.key").exists()
    await log.start()
    e = await log.append(msgspec.structs.replace(make_entry(1), region_id=""))
    await log.close()
    assert e.region_id == "eu-1"
    key = load_or_create_audit_key(tmp_path / "audit" / "audit_ed25519.key")
    assert isinstance(key, Ed25519PrivateKey)
    assert verify_log(tmp_path / "audit", key.public_key()).entries == 1
