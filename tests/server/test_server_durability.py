"""Inbox WAL, replay after a crash, deferred requests through store/audit outages (in process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import (
    CountingStore,
    ListAudit,
    body,
    eventually,
    make_pcs,
)

from fractal_lba.audit import AuditEntry
from fractal_lba.config import Settings
from fractal_lba.server import create_app
from fractal_lba.server.inbox import (
    Admit,
    Outcome,
    compact,
    decode_record,
    encode_record,
    pending_admits,
)
from fractal_lba.stores import create_store
from fractal_lba.wal import WalLog

pytestmark = pytest.mark.anyio

Make = Callable[..., Any]


def crashed_admit(wal_dir: Path, adm: Admit, *, outcome: bool = False) -> None:
    """What a worker leaves behind when it dies after the WAL append (and maybe the marker)."""
    with WalLog(wal_dir) as log:
        records = [encode_record(adm)]
        if outcome:
            records.append(encode_record(Outcome(adm.request_id, 200)))
        log.append(records)


def records_of(wal_dir: Path) -> list[Admit | Outcome]:
    with WalLog(wal_dir) as log:
        return [decode_record(p) for _, p in log.iter_records()]


def entry_for(adm: Admit, outcome: str = "accepted") -> AuditEntry:
    return AuditEntry(
        timestamp="2025-01-01T00:00:00Z",
        pcs_id=None,
        tenant_id="default",
        verify_outcome=outcome,  # type: ignore[arg-type]
        status=200,
        region_id="local",
        request_id=adm.request_id,
    )


async def test_startup_replays_admits_without_outcome(
    make_harness: Make, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    wal_dir = settings.wal_root / "inbox-0"
    pending = Admit("crashed-1", "default", time.time(), body(make_pcs()))
    finished = Admit("done-1", "default", time.time(), body(make_pcs(epoch=2)))
    crashed_admit(wal_dir, pending)
    crashed_admit(wal_dir, finished, outcome=True)
    async with make_harness() as h:
        [entry] = h.audit.by_request("crashed-1")
        assert entry.verify_outcome == "accepted"
        assert h.audit.by_request("done-1") == []
        stored = await h.store.get("default", make_pcs()["pcs_id"])
        assert stored is not None and stored.request_id == "crashed-1"
        # The client's retry of the crashed request now gets the replayed outcome.
        resp = await h.submit(body(make_pcs()))
        assert resp.status_code == 200 and resp.headers["idempotent-replayed"] == "true"
        assert resp.content == stored.body
    assert pending_admits(enumerate(encode_record(r) for r in records_of(wal_dir))) == []


async def test_a_torn_tail_cut_at_startup_is_shown_in_ready(
    make_harness: Make, settings_for: Callable[..., Settings]
) -> None:
    """Issue 10 item 2: Inbox.open used to discard the recovery report."""
    wal_dir = settings_for().wal_root / "inbox-0"
    crashed_admit(wal_dir, Admit("done-1", "default", time.time(), b"{}"), outcome=True)
    with WalLog(wal_dir) as log:
        seg = log.active_segment
    good = seg.stat().st_size
    with open(seg, "ab") as fh:
        fh.write(b"\x55" * 37)  # the unfinished last write of a crash
    async with make_harness() as h:
        ready = (await h.client.get("/ready")).json()
        assert ready["wal_recovery"] == {
            "truncated_segment": seg.name,
            "truncated_offset": good,
            "truncated_bytes": 37,
        }


async def test_replay_does_not_audit_twice_what_was_audited_before_the_crash(
    make_harness: Make, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    adm = Admit("audited-1", "default", time.time(), body(make_pcs()))
    crashed_admit(settings.wal_root / "inbox-0", adm)
    audit = ListAudit([entry_for(adm)])
    async with make_harness(audit=audit) as h:
        assert len(h.audit.by_request("audited-1")) == 1
        assert h.store.gets == 0
    recs = records_of(settings.wal_root / "inbox-0")
    assert Outcome("audited-1", 0) in recs


async def test_replay_of_a_stored_but_unaudited_request_audits_its_own_outcome(
    make_harness: Make, settings_for: Callable[..., Settings], namespace: str
) -> None:
    settings = settings_for()
    pcs = make_pcs()
    adm = Admit("stored-1", "default", time.time(), body(pcs))
    crashed_admit(settings.wal_root / "inbox-0", adm)
    # First run: the outcome reached the store, then the process died (simulated by storing it
    # through a first app whose audit fails).
    failing = ListAudit()
    failing.fail = True
    async with make_harness(audit=failing) as h:
        assert failing.entries == []
        stored = await h.store.get("default", pcs["pcs_id"])
        assert stored is not None and stored.request_id == "stored-1"
    async with make_harness() as h:
        [entry] = h.audit.by_request("stored-1")
        assert entry.verify_outcome == "accepted" and entry.status == 200
        assert not any(e.verify_outcome == "duplicate" for e in h.audit.entries)


async def test_orphan_directory_of_a_dead_worker_is_adopted_and_released(
    make_harness: Make, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    orphan_dir = settings.wal_root / "inbox-3"
    adm = Admit("orphan-1", "default", time.time(), body(make_pcs()))
    crashed_admit(orphan_dir, adm)
    async with make_harness() as h:
        assert h.app.inbox.directory.name == "inbox-0"
        [entry] = h.audit.by_request("orphan-1")
        assert entry.verify_outcome == "accepted"
        # Released after replay: another process can lock it again.
        assert Outcome("orphan-1", 200) in records_of(orphan_dir)


async def test_outcome_markers_cost_no_fsync_and_reach_the_file_without_a_next_admit(
    make_harness: Make,
) -> None:
    """Issue 10 item 8: the last answered request used to stay 'pending' on disk until the
    next admit batch or shutdown wrote its marker."""
    async with make_harness() as h:
        stats = h.app.inbox.log.stats
        fsyncs_before = stats.fsyncs
        r1 = await h.submit(body(make_pcs(epoch=1)))
        r2 = await h.submit(body(make_pcs(epoch=2)))
        assert stats.fsyncs == fsyncs_before + 2  # one per admit; markers ride or go unsynced
        ids = [r.headers["x-request-id"] for r in (r1, r2)]

        async def on_disk() -> list[Admit | Outcome]:
            return records_of_open(h)

        recs = await eventually(on_disk, lambda rs: Outcome(ids[1], 200) in rs, timeout=5)
        assert Outcome(ids[0], 200) in recs
        assert pending_admits((0, encode_record(r)) for r in recs) == []
        assert stats.fsyncs == fsyncs_before + 2
    assert (
        pending_admits(
            (0, encode_record(r)) for r in records_of(h.app.settings.wal_root / "inbox-0")
        )
        == []
    )


def records_of_open(h: Any) -> list[Admit | Outcome]:
    from fractal_lba.wal import scan

    out: list[Admit | Outcome] = []
    for seg in sorted(h.app.inbox.directory.glob("*.wal")):
        out.extend(decode_record(p) for p in scan(seg.read_bytes())[0])
    return out


async def test_audit_outage_is_503_then_the_deferred_request_completes(
    make_harness: Make,
) -> None:
    audit = ListAudit()
    async with make_harness(audit=audit) as h:
        h.app.replayer.retry_min_s = 0.01
        audit.fail = True
        resp = await h.submit(body(make_pcs()))
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert resp.json()["error"] == "audit_unavailable"
        ready = await h.client.get("/ready")
        assert ready.status_code == 503 and "audit" in ready.json()["down"]
        audit.fail = False
        rid = resp.headers["x-request-id"]
        entries = await eventually(lambda: _entries(audit, rid), lambda es: len(es) == 1)
        assert entries[0].verify_outcome == "accepted"
        assert h.app.replayer.deferred == 0
        retry = await h.submit(body(make_pcs()))
        assert retry.status_code == 200 and retry.headers["idempotent-replayed"] == "true"


async def _entries(audit: ListAudit, rid: str) -> list[AuditEntry]:
    return audit.by_request(rid)


@pytest.mark.redis
async def test_redis_outage_is_503_within_the_timeout_and_recovers_without_restart(
    settings_for: Callable[..., Settings], private_redis: Any
) -> None:
    settings = settings_for(
        DEDUP_BACKEND="redis", REDIS_URL=private_redis.url, REQUEST_TIMEOUT="1.0"
    )
    await _outage_roundtrip(settings, kill=private_redis.kill, revive=private_redis.start)


@pytest.mark.postgres
async def test_postgres_outage_is_503_and_recovers_without_restart(
    settings_for: Callable[..., Settings], pg_proxy: Any, postgres_dsn: str
) -> None:
    import psycopg

    params = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    params.update(host="127.0.0.1", port=str(pg_proxy.port))
    dsn = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    settings = settings_for(DEDUP_BACKEND="postgres", POSTGRES_DSN=dsn, REQUEST_TIMEOUT="1.0")
    await _outage_roundtrip(settings, kill=pg_proxy.cut, revive=pg_proxy.restore)


async def _outage_roundtrip(settings: Settings, *, kill: Any, revive: Any) -> None:
    import inspect
    import uuid

    async def call(fn: Any) -> None:
        result = fn()
        if inspect.isawaitable(result):
            await result

    inner = create_store(
        settings.dedup_backend,
        data_dir=settings.data_dir,
        redis_url=settings.redis_url.reveal().decode(),
        postgres_dsn=settings.postgres_dsn.reveal().decode(),
        namespace=f"t{uuid.uuid4().hex[:16]}",
        op_timeout=settings.store_op_timeout,
    )
    audit = ListAudit()
    app = create_app(settings, store=CountingStore(inner), audit=audit)
    async with app.running():
        app.replayer.retry_min_s = 0.05
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://v")
        hdrs = {"content-type": "application/json"}
        ok = await client.post("/v1/pcs/submit", content=body(make_pcs(epoch=1)), headers=hdrs)
        assert ok.status_code == 200
        await call(kill)
        t0 = time.monotonic()
        down = await client.post("/v1/pcs/submit", content=body(make_pcs(epoch=2)), headers=hdrs)
        elapsed = time.monotonic() - t0
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"] == "1"
        assert down.json()["error"] == "store_unavailable"
        assert elapsed < settings.request_timeout + 0.5, elapsed
        ready = await client.get("/ready")
        assert ready.status_code == 503 and ready.json()["down"] == ["store"]
        await call(revive)
        await eventually(lambda: client.get("/ready"), lambda r: r.status_code == 200, timeout=30)
        rid = down.headers["x-request-id"]
        await eventually(lambda: _entries(audit, rid), lambda es: len(es) == 1, timeout=30)
        again = await client.post("/v1/pcs/submit", content=body(make_pcs(epoch=2)), headers=hdrs)
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        await client.aclose()


def test_compaction_removes_only_old_finished_prefix(tmp_path: Path) -> None:
    log = WalLog(tmp_path / "inbox-0", max_segment_bytes=4096)
    log.open()
    try:
        pad = b"x" * 4200
        ids = [f"r{i}" for i in range(6)]
        for i, rid in enumerate(ids):
            recs = [encode_record(Admit(rid, "default", 1.0, pad))]
            if i != 3:  # r3 never finishes
                recs.append(encode_record(Outcome(rid, 200)))
            log.append(recs)
        assert len(log.segments()) == 6
        none = compact(log, retention_s=3600)
        assert none.removed == [] and "younger" in (none.stopped_at or "")
        report = compact(log, retention_s=3600, now=time.time() + 7200)
        assert len(report.removed) == 3  # r0..r2; stops at r3's segment
        assert "without an outcome" in (report.stopped_at or "")
        remaining = pending_admits(log.iter_records())
        assert [a.request_id for a in remaining] == ["r3"]
    finally:
        log.close()


@pytest.mark.redis
async def test_hung_redis_is_503_within_the_timeout_not_a_hang(
    settings_for: Callable[..., Settings], private_redis: Any
) -> None:
    settings = settings_for(
        DEDUP_BACKEND="redis", REDIS_URL=private_redis.url, REQUEST_TIMEOUT="1.0"
    )
    await _outage_roundtrip(settings, kill=private_redis.pause, revive=private_redis.resume)


async def test_wal_failure_is_503_and_nothing_else_happens(make_harness: Make) -> None:

    from fractal_lba import failpoints

    async with make_harness() as h:
        failpoints.configure("wal.before_write=eio")
        try:
            resp = await h.submit(body(make_pcs()))
        finally:
            failpoints.configure(None)
        assert resp.status_code == 503 and resp.json()["error"] == "wal_unavailable"
        assert resp.headers["retry-after"] == "1"
        assert (h.store.gets, h.store.puts) == (0, 0) and h.audit.entries == []
        assert h.app.replayer.deferred == 0
        text = (await h.client.get("/metrics")).text
        assert "flk_wal_errors_total 1.0" in text and "flk_ingest_total 0.0" in text


async def test_running_server_compacts_its_own_finished_segments(make_harness: Make) -> None:
    async with make_harness(WAL_SEGMENT_SIZE="4096", WAL_RETENTION="0") as h:
        for epoch in range(12):
            assert (await h.submit(body(make_pcs(epoch=epoch)))).status_code == 200

        async def pending() -> int:  # the last marker is written when the writer is idle
            return len(pending_admits(h.app.inbox.log.iter_records()))

        await eventually(pending, lambda n: n == 0, timeout=5)
        before = len(h.app.inbox.log.segments())
        removed = await h.app.compact_wal()
        assert removed >= 1 and len(h.app.inbox.log.segments()) == before - removed
        assert await pending() == 0
        assert "flk_wal_segments_compacted_total" in (await h.client.get("/metrics")).text
