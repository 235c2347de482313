"""WAL segments: framing, torn-tail recovery, corruption, rotation, locking, group commit."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from fractal_lba.wal import (
    GroupCommitter,
    WalCorruptError,
    WalLockedError,
    WalLog,
    frame,
    scan,
)


def test_frame_scan_roundtrip() -> None:
    payloads = [b"", b"a", os.urandom(1000)]
    buf = b"".join(frame(p) for p in payloads)
    got, end = scan(buf)
    assert got == payloads
    assert end == len(buf)


@pytest.mark.parametrize("cut", [1, 5, 8, 9, 20])
def test_scan_stops_at_torn_tail(cut: int) -> None:
    buf = frame(b"first") + frame(b"second record")
    got, end = scan(buf[:-cut])
    assert got == [b"first"]
    assert end == len(frame(b"first"))


def test_scan_stops_at_checksum_mismatch() -> None:
    good = frame(b"first")
    bad = bytearray(frame(b"second"))
    bad[-1] ^= 0xFF
    got, end = scan(good + bytes(bad))
    assert got == [b"first"] and end == len(good)


def test_append_and_reopen(tmp_path: Path) -> None:
    with WalLog(tmp_path) as log:
        assert log.append([b"a", b"b"]) == [1, 2]
        assert log.append([b"c"]) == [3]
        assert log.stats.fsyncs == 2
    log2 = WalLog(tmp_path)
    rec = log2.open()
    assert rec.records == 3 and rec.next_lsn == 4 and rec.truncated_bytes == 0
    assert list(log2.iter_records()) == [(1, b"a"), (2, b"b"), (3, b"c")]
    assert log2.append([b"d"]) == [4]
    log2.close()


def test_torn_tail_truncated_on_open(tmp_path: Path) -> None:
    with WalLog(tmp_path) as log:
        log.append([b"one", b"two"])
        seg = log.active_segment
    with open(seg, "ab") as fh:
        fh.write(frame(b"three")[:-2])  # a crash mid-write
    log = WalLog(tmp_path)
    rec = log.open()
    assert rec.truncated_bytes == len(frame(b"three")) - 2
    assert rec.truncated_segment == seg.name
    assert [p for _, p in log.iter_records()] == [b"one", b"two"]
    assert log.append([b"three"]) == [3]
    log.close()
    assert [p for _, p in WalLog(tmp_path).iter_records()] == [b"one", b"two", b"three"]


def test_rotation_and_corrupt_sealed_segment(tmp_path: Path) -> None:
    with WalLog(tmp_path, max_segment_bytes=64) as log:
        for i in range(10):
            log.append([b"x" * 40 + bytes([i])])
        segs = log.segments()
    assert len(segs) >= 5
    assert [lsn for lsn, _ in WalLog(tmp_path).iter_records()] == list(range(1, 11))
    data = bytearray(segs[0].read_bytes())
    data[10] ^= 0xFF
    segs[0].write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match=segs[0].name):
        WalLog(tmp_path).open()


def test_directory_lock(tmp_path: Path) -> None:
    with WalLog(tmp_path), pytest.raises(WalLockedError):
        WalLog(tmp_path).open()


@pytest.mark.anyio
async def test_group_commit_batches_and_never_resolves_early(tmp_path: Path) -> None:
    log = WalLog(tmp_path)
    log.open()
    durable: set[bytes] = set()
    gate = threading.Event()

    def commit(items: Sequence[bytes]) -> list[int]:
        gate.wait(5)  # hold the first fsync so the others pile up behind it
        lsns = log.append(items)
        durable.update(items)
        return lsns

    gc: GroupCommitter[bytes, int] = GroupCommitter(commit)
    gc.start()
    payloads = [f"req-{i}".encode() for i in range(200)]

    async def one(p: bytes) -> int:
        lsn = await gc.submit(p)
        assert p in durable, "answered before durable"
        return lsn

    tasks = [asyncio.create_task(one(p)) for p in payloads]
    await asyncio.sleep(0)
    gate.set()
    lsns = await asyncio.gather(*tasks)
    await gc.close()
    log.close()
    assert sorted(lsns) == list(range(1, 201))
    assert log.stats.records == 200
    assert log.stats.fsyncs <= 0.2 * 200, log.stats.fsyncs


@pytest.mark.anyio
async def test_group_commit_propagates_errors() -> None:
    def commit(items: Sequence[bytes]) -> list[int]:
        raise OSError("disk full")

    gc: GroupCommitter[bytes, int] = GroupCommitter(commit)
    gc.start()
    with pytest.raises(OSError, match="disk full"):
        await gc.submit(b"x")
    await gc.close()
