"""Outbox on the WAL: pending until ack / DLQ, idempotent enqueue, crash at every byte."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import msgspec
import pytest

from fractal_lba.agent import Outbox, OutboxError, build_pcs, load_signer, parse_events
from fractal_lba.contract import PCS, decode_pcs, encode_pcs
from fractal_lba.wal import WalLockedError

SIGNER = load_signer("hmac", "outbox-test-key")


def make_pcs(epoch: int, shard: str = "s") -> PCS:
    ev = parse_events(f"timestamp,x,y,z\n{epoch},0.{epoch + 1},0.5,0.25\n".encode(), "csv")
    return build_pcs(ev, shard_id=shard, epoch=epoch, signer=SIGNER, sent_at="t", version="0.2")


def test_enqueue_ack_dead_and_reopen(tmp_path: Path) -> None:
    pcs = [make_pcs(i) for i in range(4)]
    with Outbox(tmp_path) as ob:
        lsns = [ob.enqueue(p, tenant_id="t1", source=f"in/e{i}.csv").lsn for i, p in enumerate(pcs)]
        assert [e.pcs_id for e in ob.pending()] == [p.pcs_id for p in pcs]
        entry = ob.pending()[0]
        assert msgspec.structs.replace(decode_pcs(entry.body), ft=None) == pcs[0]
        assert entry.tenant_id == "t1" and entry.version == pcs[0].version
        assert entry.source == "in/e0.csv"
        ob.ack(lsns[0], 200)
        ob.dead_letter(lsns[1], status=400, error="invalid_pcs", detail="bad", field="D_hat")
        stats = ob.stats()
        assert (stats.pending, stats.acked, stats.dead) == (2, 1, 1)
        with pytest.raises(OutboxError):
            ob.ack(lsns[0], 200)  # no longer pending
        with pytest.raises(OutboxError):
            ob.ack(lsns[1], 200)  # dead, not pending
    with Outbox(tmp_path) as ob:
        assert [e.lsn for e in ob.pending()] == lsns[2:]
        assert (ob.stats().acked, ob.stats().dead) == (1, 1)
        (dead,) = ob.dead_letters()
    assert dead.id == lsns[1] and dead.pcs_id == pcs[1].pcs_id and dead.reason == "rejected"
    assert (dead.status, dead.error, dead.field, dead.detail) == (
        400,
        "invalid_pcs",
        "D_hat",
        "bad",
    )
    assert dead.source == "in/e1.csv" and dead.tenant_id == "t1"
    assert decode_pcs(dead.body).pcs_id == pcs[1].pcs_id
    (path,) = (tmp_path / "dlq").iterdir()
    assert path.name == f"{lsns[1]:016d}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "dlq").stat().st_mode) == 0o700
    assert "outbox-test-key" not in path.read_text()
    assert Outbox.read_dead_letters(tmp_path) == [dead]


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
        again = ob.enqueue(pcs)
        assert not again.created and again.state == "acked"
        assert ob.stats().pending == 0


def test_a_dead_lettered_pcs_is_not_queued_again_by_a_rerun(tmp_path: Path) -> None:
    pcs = make_pcs(1)
    with Outbox(tmp_path) as ob:
        lsn = ob.enqueue(pcs).lsn
        ob.dead_letter(lsn, status=401, error="signature_invalid")
        ob.compact()
    with Outbox(tmp_path, max_segment_bytes=1) as ob:
        again = ob.enqueue(pcs)
        assert (again.created, again.state, again.lsn) == (False, "dead", lsn)
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


def test_requeue_and_drop(tmp_path: Path) -> None:
    pcs = [make_pcs(i) for i in range(3)]
    with Outbox(tmp_path) as ob:
        lsns = [ob.enqueue(p, tenant_id="t").lsn for p in pcs]
        for lsn in lsns:
            ob.dead_letter(lsn, status=401, error="signature_invalid", attempts=1)
        with pytest.raises(OutboxError, match="no dead letter 99"):
            ob.requeue([lsns[0], 99])  # fails before anything changes
        assert len(ob.dead_letters()) == 3
        body = ob.dead_letters()[0].body
        (moved,) = ob.requeue([lsns[0]])
        assert (moved.id, moved.pcs_id) == (lsns[0], pcs[0].pcs_id) and moved.lsn > lsns[-1]
        (entry,) = ob.pending()
        assert (entry.lsn, entry.pcs_id, entry.tenant_id) == (moved.lsn, pcs[0].pcs_id, "t")
        assert entry.body == body  # the PCS exactly as it was queued
        assert ob.enqueue(pcs[0]).state == "pending"  # queued once, under its new lsn
        assert ob.drop([lsns[1]]) == [lsns[1]]
        assert [d.id for d in ob.dead_letters()] == [lsns[2]]
        with pytest.raises(OutboxError):
            ob.drop([lsns[1]])
    with Outbox(tmp_path) as ob:  # all of it durable
        assert [e.lsn for e in ob.pending()] == [moved.lsn]
        assert [d.id for d in ob.dead_letters()] == [lsns[2]]
        assert ob.enqueue(pcs[1]).state == "dropped"  # a re-run does not bring it back
        assert [m.id for m in ob.requeue()] == [lsns[2]]
        assert ob.dead_letters() == [] and len(ob.pending()) == 2
    assert list((tmp_path / "dlq").iterdir()) == []


def test_a_requeue_or_drop_interrupted_before_the_file_is_removed(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        a = ob.enqueue(make_pcs(1)).lsn
        b = ob.enqueue(make_pcs(2)).lsn
        ob.dead_letter(a, status=400, error="invalid_pcs")
        ob.dead_letter(b, status=400, error="invalid_pcs")
    saved = {p.name: p.read_bytes() for p in (tmp_path / "dlq").iterdir()}
    with Outbox(tmp_path) as ob:
        (moved,) = ob.requeue([a])
        ob.drop([b])
    for name, data in saved.items():  # as if killed after the WAL record, before the unlink
        (tmp_path / "dlq" / name).write_bytes(data)
    (tmp_path / "dlq" / ".x.json.1234.tmp").write_bytes(b"{")  # a torn atomic write
    view = Outbox.read_stats(tmp_path)
    assert (view.pending, view.dead) == (1, 0)  # readers already see one place each
    assert Outbox.read_dead_letters(tmp_path) == []
    with Outbox(tmp_path) as ob:
        assert [e.lsn for e in ob.pending()] == [moved.lsn] and ob.dead_letters() == []
    assert list((tmp_path / "dlq").iterdir()) == []  # the clean-up was finished


def test_dead_letters_of_older_agents_are_imported(tmp_path: Path) -> None:
    """Agents before the DLQ directory wrote a ``dlq`` WAL marker and a ``dlq.jsonl`` line."""
    from fractal_lba.wal import WalLog

    pcs = [make_pcs(i) for i in range(3)]
    bodies = [encode_pcs(p).decode() for p in pcs]

    def entry(i: int) -> bytes:
        return msgspec.json.encode(
            {"type": "entry", "pcs_id": pcs[i].pcs_id, "version": pcs[i].version,
             "tenant_id": None, "queued_at": "2025-01-01T00:00:00Z", "body": bodies[i]}
        )  # fmt: skip

    def marker(lsn: int) -> bytes:
        return msgspec.json.encode(
            {"type": "dlq", "lsn": lsn, "status": None, "error": "retries_exhausted",
             "detail": "connection_error: ConnectError", "attempts": 8,
             "at": "2025-01-01T00:05:00Z"}
        )  # fmt: skip

    with WalLog(tmp_path) as wal:
        wal.append([entry(0), entry(1), marker(1), marker(2), entry(2)])
    line = {"lsn": 1, "pcs_id": pcs[0].pcs_id, "tenant_id": None, "status": 400,
            "error": "invalid_pcs", "detail": None, "field": "D_hat", "attempts": 1,
            "at": "2025-01-01T00:01:00Z", "pcs": json.loads(bodies[0])}  # fmt: skip
    # line 1 exported; marker 4 (for entry 2) crashed before its export line
    (tmp_path / "dlq.jsonl").write_text(json.dumps(line) + "\n" + '{"lsn": 3, "pc')
    assert Outbox.read_stats(tmp_path).dead == 2
    with Outbox(tmp_path) as ob:
        dead = ob.dead_letters()
        assert [d.id for d in dead] == [1, 2]
        assert (dead[0].reason, dead[0].field) == ("rejected", "D_hat")
        assert (dead[1].reason, dead[1].attempts) == ("retries_exhausted", 8)
        assert dead[1].pcs_id == pcs[1].pcs_id and decode_pcs(dead[1].body) == pcs[1]
        assert [e.pcs_id for e in ob.pending()] == [pcs[2].pcs_id]
    assert not (tmp_path / "dlq.jsonl").exists()
    with Outbox(tmp_path) as ob:
        assert [d.id for d in ob.dead_letters()] == [1, 2]
        assert [m.id for m in ob.requeue()] == [1, 2]
    with Outbox(tmp_path) as ob:  # requeued legacy letters do not come back from the markers
        assert ob.dead_letters() == [] and len(ob.pending()) == 3


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
        with Outbox(work, fsync=False) as ob:  # cuts are simulated: fsync adds nothing
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
