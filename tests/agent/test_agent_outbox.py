"""Outbox on the WAL: pending until ack / DLQ, idempotent enqueue, crash at every byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import pytest

from fractal_lba.agent import Outbox, OutboxError, build_pcs, load_signer, parse_events
from fractal_lba.contract import PCS, decode_pcs
from fractal_lba.wal import WalLockedError

SIGNER = load_signer("hmac", "outbox-test-key")


def make_pcs(epoch: int, shard: str = "s") -> PCS:
    ev = parse_events(f"timestamp,x,y,z\n{epoch},0.{epoch + 1},0.5,0.25\n".encode(), "csv")
    return build_pcs(ev, shard_id=shard, epoch=epoch, signer=SIGNER, sent_at="t")


def test_enqueue_ack_dead_and_reopen(tmp_path: Path) -> None:
    pcs = [make_pcs(i) for i in range(4)]
    with Outbox(tmp_path) as ob:
        lsns = [ob.enqueue(p, tenant_id="t1").lsn for p in pcs]
        assert [e.pcs_id for e in ob.pending()] == [p.pcs_id for p in pcs]
        entry = ob.pending()[0]
        assert msgspec.structs.replace(decode_pcs(entry.body), ft=None) == pcs[0]
        assert entry.tenant_id == "t1" and entry.version == pcs[0].version
        ob.ack(lsns[0], 200)
        ob.dead_letter(lsns[1], status=400, error="invalid_pcs", detail="bad", field="D_hat")
        stats = ob.stats()
        assert (stats.pending, stats.acked, stats.dead) == (2, 1, 1)
        with pytest.raises(OutboxError):
            ob.ack(lsns[0], 200)  # no longer pending
    with Outbox(tmp_path) as ob:
        assert [e.lsn for e in ob.pending()] == lsns[2:]
        assert (ob.stats().acked, ob.stats().dead) == (1, 1)
    lines = (tmp_path / "dlq.jsonl").read_text().splitlines()
    assert len(lines) == 1
    dead = json.loads(lines[0])
    assert dead["status"] == 400 and dead["error"] == "invalid_pcs" and dead["field"] == "D_hat"
    assert dead["pcs_id"] == pcs[1].pcs_id and dead["pcs"]["pcs_id"] == pcs[1].pcs_id
    assert "outbox-test-key" not in (tmp_path / "dlq.jsonl").read_text()


def test_enqueue_is_idempotent_on_pcs_id(tmp_path: Path) -> None:
    pcs = make_pcs(1)
    with Outbox(tmp_path) as ob:
        first = ob.enqueue(pcs)
        again = ob.enqueue(pcs)
        assert first.created and not again.created and again.lsn == first.lsn
        ob.ack(first.lsn, 202)
        assert not ob.enqueue(pcs).created  # acked entries are remembered too
    with Outbox(tmp_path) as ob:
        assert ob.lookup(pcs.pcs_id) == first.lsn
        assert not ob.enqueue(pcs).created
        assert ob.stats().pending == 0


def test_queued_copy_carries_its_lsn_as_outbox_seq(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        seq = ob.next_seq
        assert ob.enqueue(make_pcs(1)).lsn == seq
        ob.ack(seq, 200)
        assert ob.enqueue(make_pcs(2)).lsn == seq + 2
        (entry,) = ob.pending()
        queued = decode_pcs(entry.body)  # still validates: ft is not signed
        assert queued.ft is not None and queued.ft.outbox_seq == seq + 2


def test_one_writer_at_a_time_but_status_reads_without_lock(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        ob.enqueue(make_pcs(1))
        with pytest.raises(WalLockedError):
            Outbox(tmp_path).open()
        assert Outbox.read_stats(tmp_path).pending == 1


def test_dlq_export_is_reconciled_after_a_crash_between_marker_and_export(
    tmp_path: Path,
) -> None:
    with Outbox(tmp_path) as ob:
        lsn = ob.enqueue(make_pcs(1)).lsn
        ob.dead_letter(lsn, status=401, error="signature_invalid")
    dlq = tmp_path / "dlq.jsonl"
    dlq.write_text(dlq.read_text()[:25])  # torn export line, as if killed mid-write
    with Outbox(tmp_path):
        pass
    lines = dlq.read_text().splitlines()
    assert [json.loads(x)["lsn"] for x in lines] == [lsn]
    with Outbox(tmp_path):  # reopening never duplicates
        pass
    assert len(dlq.read_text().splitlines()) == 1


def _segment(directory: Path) -> Path:
    (seg,) = sorted(directory.glob("*.wal"))
    return seg


def test_crash_at_every_byte_never_loses_or_duplicates(tmp_path: Path) -> None:
    """Cut the log at every offset (a torn write at any point) and reopen.

    Whatever prefix survived, entries are whole, each pcs_id is queued at most once, an entry
    whose ack survived is not pending, and re-running the work completes with no duplicates.
    """
    src = tmp_path / "src"
    pcs = [make_pcs(i) for i in range(3)]
    with Outbox(src) as ob:
        a = ob.enqueue(pcs[0]).lsn
        b = ob.enqueue(pcs[1]).lsn
        ob.ack(a, 200)
        ob.enqueue(pcs[2])
        ob.dead_letter(b, status=400, error="invalid_pcs")
    data = _segment(src).read_bytes()
    for cut in range(len(data) + 1):
        work = tmp_path / f"cut{cut}"
        work.mkdir()
        (work / _segment(src).name).write_bytes(data[:cut])
        with Outbox(work) as ob:
            pending = {e.pcs_id for e in ob.pending()}
            stats = ob.stats()
            assert stats.acked <= 1 and stats.dead <= 1
            if stats.acked:
                assert pcs[0].pcs_id not in pending
            # finish the job as a restarted agent would
            for p in pcs:
                ob.enqueue(p)
            for e in ob.pending():
                ob.ack(e.lsn, 200)
            final = ob.stats()
            assert final.pending == 0
            assert final.acked + final.dead == 3
        ids = [
            json.loads(p)["pcs_id"]
            for _, p in _records(work)
            if json.loads(p).get("type") == "entry"
        ]
        assert sorted(ids) == sorted(p.pcs_id for p in pcs)
        shutil.rmtree(work)


def _records(directory: Path) -> list[tuple[int, bytes]]:
    from fractal_lba.wal.records import scan

    seg = _segment(directory)
    payloads, _ = scan(seg.read_bytes())
    first = int(seg.name.split(".")[0])
    return [(first + i, p) for i, p in enumerate(payloads)]


def test_undecodable_record_is_an_outbox_error(tmp_path: Path) -> None:
    from fractal_lba.wal import WalLog

    with WalLog(tmp_path) as wal:
        wal.append([msgspec.json.encode({"type": "mystery"})])
    with pytest.raises(OutboxError, match="record 1"):
        Outbox(tmp_path).open()
    with pytest.raises(OutboxError):  # not WalLockedError: the failed open released the lock
        Outbox(tmp_path).open()


def test_compact_drops_only_fully_resolved_sealed_segments(tmp_path: Path) -> None:
    with Outbox(tmp_path, max_segment_bytes=1) as ob:  # one record per segment
        first = ob.enqueue(make_pcs(1)).lsn
        second = ob.enqueue(make_pcs(2)).lsn
        ob.ack(first, 200)
        ob.enqueue(make_pcs(3))
        removed = ob.compact()
        assert removed == 1  # only the segment of the acked first entry
        assert [e.lsn for e in ob.pending()] == [second, second + 2]
    with Outbox(tmp_path) as ob:
        assert [e.lsn for e in ob.pending()] == [second, second + 2]
