"""Torn tail versus corruption (SPEC section 5, issue 10 item 2), check and salvage.

Only a torn tail (nothing valid after the bad bytes, last segment) is cut on open, and the cut
is logged with segment and offset. A bad record followed by valid ones, or any damage in a
sealed segment, stops the open with one line naming segment and offset; ``salvage`` then
copies every intact record out (with its own lsn) and keeps the damaged file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fractal_lba.wal import (
    WalCorruptError,
    WalLog,
    frame_many,
    inspect_directory,
    salvage,
    scan,
)
from fractal_lba.wal.records import SegmentHeader, frame_records


def filled(directory: Path, n: int = 50, *, segment: int = 1 << 20) -> list[bytes]:
    payloads = [f"record-{i:04d}-".encode() * 8 for i in range(n)]
    with WalLog(directory, max_segment_bytes=segment) as log:
        for p in payloads:
            log.append([p])
    return payloads


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def records(directory: Path) -> list[tuple[int, bytes]]:
    with WalLog(directory) as log:
        return list(log.iter_records())


def test_flipped_byte_mid_active_segment_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    filled(tmp_path)
    [seg] = WalLog(tmp_path).segments()
    before = seg.read_bytes()
    flip(seg, len(before) // 2)
    with pytest.raises(WalCorruptError) as info:
        WalLog(tmp_path).open()
    msg = str(info.value)
    assert seg.name in msg and "valid records follow" in msg and "\n" not in msg
    assert info.value.segment == seg.name and info.value.offset is not None
    assert info.value.offset <= len(before) // 2
    assert len(seg.read_bytes()) == len(before), "nothing may be cut on corruption"
    [rep] = inspect_directory(tmp_path)
    assert rep.damage is not None and rep.damage.kind == "corrupt"


def test_torn_tail_is_cut_and_logged_with_segment_and_offset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    payloads = filled(tmp_path, 10)
    [seg] = WalLog(tmp_path).segments()
    good = seg.stat().st_size
    header = SegmentHeader.new(99)  # the bytes are an unfinished write: never valid
    with open(seg, "ab") as fh:
        fh.write(frame_records(header, 11, [b"x" * 100])[:-30])
    caplog.set_level(logging.WARNING, logger="fractal_lba.wal")
    log = WalLog(tmp_path)
    rec = log.open()
    log.close()
    assert (rec.truncated_segment, rec.truncated_offset) == (seg.name, good)
    assert seg.stat().st_size == good
    [entry] = [r for r in caplog.records if "torn tail" in r.getMessage()]
    assert entry.__dict__["segment"] == seg.name and entry.__dict__["offset"] == good
    assert [p for _, p in records(tmp_path)] == payloads


def test_bad_checksum_of_the_last_record_only_is_a_torn_tail(tmp_path: Path) -> None:
    payloads = filled(tmp_path, 10)
    [seg] = WalLog(tmp_path).segments()
    flip(seg, seg.stat().st_size - 3)
    log = WalLog(tmp_path)
    assert log.open().truncated_bytes > 0
    log.close()
    assert [p for _, p in records(tmp_path)] == payloads[:-1]


def test_a_body_that_embeds_a_record_cannot_fake_valid_data_after_a_torn_write(
    tmp_path: Path,
) -> None:
    """The WAL stores raw request bodies: a body shaped like records (same lsn sequence,
    without this segment's salt) must not turn a torn write into 'corruption'."""
    with WalLog(tmp_path) as log:
        log.append([b"first"])
        forged = frame_records(SegmentHeader.new(1), 3, [b"forged"] * 5)
        log.append([b"A" * 50 + forged + b"B" * 50])
        seg = log.active_segment
    size = seg.stat().st_size
    with open(seg, "r+b") as fh:
        fh.truncate(size - 40)  # the crash cut the second record after its forged part
    log = WalLog(tmp_path)
    assert log.open().truncated_offset is not None
    log.close()
    assert [p for _, p in records(tmp_path)] == [b"first"]


def test_damage_in_a_sealed_segment_is_corruption(tmp_path: Path) -> None:
    filled(tmp_path, 60, segment=2048)
    segs = WalLog(tmp_path).segments()
    assert len(segs) >= 3
    sealed = segs[1]
    flip(sealed, sealed.stat().st_size - 2)  # its last record: a 'tail', but sealed
    with pytest.raises(WalCorruptError, match=sealed.name):
        WalLog(tmp_path).open()


def test_records_missing_at_the_end_of_a_sealed_segment_are_corruption(tmp_path: Path) -> None:
    filled(tmp_path, 60, segment=2048)
    sealed = WalLog(tmp_path).segments()[0]
    data = sealed.read_bytes()
    payloads, end = scan(data)
    # Cut exactly one whole record off: every remaining byte still checks.
    last_len = 16 + len(payloads[-1])
    sealed.write_bytes(data[: end - last_len])
    with pytest.raises(WalCorruptError, match="records missing"):
        WalLog(tmp_path).open()


def test_salvage_recovers_every_intact_record_with_its_lsn(tmp_path: Path) -> None:
    payloads = filled(tmp_path, 50)
    [seg] = WalLog(tmp_path).segments()
    size = seg.stat().st_size
    flip(seg, size // 3)
    flip(seg, 2 * size // 3)
    [done] = salvage(tmp_path)
    assert done.kept_as == seg.name + ".damaged"
    assert (tmp_path / done.kept_as).exists()
    lost = [lsn for a, b in done.lost for lsn in range(a, b + 1)]
    assert len(lost) == 2, done.describe()
    assert done.recovered == 48 and done.tail_unknown
    got = records(tmp_path)  # opens cleanly now
    assert [lsn for lsn, _ in got] == [n for n in range(1, 51) if n not in lost]
    assert all(payloads[lsn - 1] == p for lsn, p in got)
    with WalLog(tmp_path) as log:  # appends go on after the highest lsn
        assert log.append([b"next"]) == [51]
    assert salvage(tmp_path) == []  # nothing left to do, and the gap is not flagged again


def test_salvage_of_a_sealed_segment_reports_lost_lsns_up_to_the_next_segment(
    tmp_path: Path,
) -> None:
    filled(tmp_path, 60, segment=2048)
    segs = WalLog(tmp_path).segments()
    sealed = segs[0]
    first_of_next = int(segs[1].name[:-4])
    flip(sealed, sealed.stat().st_size - 2)
    [done] = salvage(tmp_path)
    assert done.lost == [(first_of_next - 1, first_of_next - 1)]
    assert not done.tail_unknown
    assert [lsn for lsn, _ in records(tmp_path)] == [
        n for n in range(1, 61) if n != first_of_next - 1
    ]


def test_salvage_of_a_damaged_segment_header_keeps_its_salt_when_it_can(tmp_path: Path) -> None:
    filled(tmp_path, 60, segment=2048)
    sealed = WalLog(tmp_path).segments()[0]
    flip(sealed, 1)  # the magic
    with pytest.raises(WalCorruptError, match="header"):
        WalLog(tmp_path).open()
    [done] = salvage(tmp_path)
    assert done.lost == [] and done.recovered > 0
    assert [lsn for lsn, _ in records(tmp_path)] == list(range(1, 61))


def test_legacy_segments_are_read_and_never_appended_to(tmp_path: Path) -> None:
    legacy = tmp_path / f"{1:016d}.wal"
    tmp_path.mkdir(exist_ok=True)
    legacy.write_bytes(frame_many([b"old-1", b"old-2"]) + b"\x07\x00")  # and a torn tail
    log = WalLog(tmp_path)
    rec = log.open()
    assert rec.legacy_segments == 1 and rec.truncated_bytes == 2
    assert log.append([b"new"]) == [3]
    assert log.active_segment != legacy
    log.close()
    assert records(tmp_path) == [(1, b"old-1"), (2, b"old-2"), (3, b"new")]
    assert legacy.read_bytes() == frame_many([b"old-1", b"old-2"])
