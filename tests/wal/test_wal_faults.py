"""WalLog under faults (SPEC section 5): a failed or short append leaves nothing behind.

Failpoints stand for the error windows (``wal.before_write`` / ``wal.after_write`` /
``wal.after_fsync``); a real, nearly full tmpfs produces a real short write and ENOSPC.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fractal_lba import failpoints
from fractal_lba.wal import WalError, WalLog, scan
from testkit import tmpfs


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    yield
    failpoints.configure(None)


def payloads_of(directory: Path) -> list[bytes]:
    log = WalLog(directory)
    rec = log.open()
    try:
        assert rec.truncated_bytes == 0, "a failed append left a partial record behind"
        return [p for _, p in log.iter_records()]
    finally:
        log.close()


@pytest.mark.parametrize(
    "point",
    ["wal.before_write", "wal.after_write", "wal.after_fsync"],
)
@pytest.mark.parametrize("error", ["enospc", "eio", "erofs"])
def test_failed_append_is_cut_back_and_the_next_append_lands_after_the_good_ones(
    tmp_path: Path, point: str, error: str
) -> None:
    log = WalLog(tmp_path)
    log.open()
    assert log.append([b"one", b"two"]) == [1, 2]
    failpoints.configure(f"{point}=1*{error}->off")
    with pytest.raises(WalError, match="WAL append failed"):
        log.append([b"lost-a", b"lost-b"])
    assert log.last_error is not None and not log.needs_repair
    assert log.stats.failures == 1
    assert log.append([b"three"]) == [3]  # the failed batch's lsns are given out again
    assert log.last_error is None
    log.close()
    assert payloads_of(tmp_path) == [b"one", b"two", b"three"]


def test_failed_fsync_continues_in_a_new_segment(tmp_path: Path) -> None:
    log = WalLog(tmp_path)
    log.open()
    log.append([b"one"])
    first_segment = log.active_segment
    failpoints.configure("wal.after_write=1*eio->off")
    with pytest.raises(WalError, match="fsync"):
        log.append([b"unknown-state"])
    log.append([b"two"])
    assert log.active_segment != first_segment
    assert scan(first_segment.read_bytes()) == ([b"one"], first_segment.stat().st_size)
    log.close()
    assert payloads_of(tmp_path) == [b"one", b"two"]


def test_failed_first_batch_of_a_segment_reopens_the_same_file(tmp_path: Path) -> None:
    log = WalLog(tmp_path)
    log.open()
    failpoints.configure("wal.after_write=1*eio->off")
    with pytest.raises(WalError):
        log.append([b"x"])
    assert log.append([b"y"]) == [1]
    log.close()
    assert payloads_of(tmp_path) == [b"y"]


def test_a_repair_that_fails_blocks_appends_until_it_succeeds(tmp_path: Path) -> None:
    """Until the partial bytes are cut off, nothing may be appended behind them."""
    log = WalLog(tmp_path)
    log.open()
    log.append([b"one"])
    seg = log.active_segment
    good = seg.stat().st_size
    failpoints.configure("wal.after_write=1*enospc->off;wal.repair=2*eio->off")
    with pytest.raises(WalError):
        log.append([b"partial"])
    assert log.needs_repair and seg.stat().st_size > good
    with pytest.raises(WalError, match="repair"):
        log.append([b"refused"])
    assert seg.stat().st_size > good  # nothing was written behind the partial record
    assert log.append([b"two"]) == [2]
    log.close()
    assert payloads_of(tmp_path) == [b"one", b"two"]


def test_real_short_write_on_a_full_tmpfs_then_space_returns(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "1m") as fs:
        wal_dir = fs.path / "wal"
        log = WalLog(wal_dir)
        log.open()
        log.append([b"before"])
        fs.fill(leave=8 * 1024)
        big = os.urandom(64 * 1024)  # larger than the free space: write() comes back short
        with pytest.raises(WalError, match="No space left"):
            log.append([big])
        seg = log.active_segment
        assert scan(seg.read_bytes()) == ([b"before"], seg.stat().st_size)
        fs.remount("8m")
        assert log.append([big, b"after"]) == [2, 3]
        log.close()
        assert payloads_of(wal_dir) == [b"before", big, b"after"]


def test_new_files_and_directories_are_private(tmp_path: Path) -> None:
    with WalLog(tmp_path / "w") as log:
        log.append([b"x"])
        seg = log.active_segment
    assert (tmp_path / "w").stat().st_mode & 0o777 == 0o700
    assert seg.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "w" / "LOCK").stat().st_mode & 0o777 == 0o600


def test_unsynced_records_are_cut_with_a_failed_fsync_and_the_caller_can_tell(
    tmp_path: Path,
) -> None:
    log = WalLog(tmp_path)
    log.open()
    log.append([b"a"])
    log.append([b"marker"], sync=False)
    assert log.unsynced == 1
    failpoints.configure("wal.after_write=1*eio->off")
    with pytest.raises(WalError):
        log.append([b"b"])
    assert log.unsynced == 0 and log.next_lsn == 2  # the unsynced record went with it
    assert log.append([b"c"]) == [2]
    log.close()
    assert payloads_of(tmp_path) == [b"a", b"c"]


def test_unsynced_records_survive_a_failed_write_and_are_synced_by_the_next_append(
    tmp_path: Path,
) -> None:
    log = WalLog(tmp_path)
    log.open()
    log.append([b"a"])
    log.append([b"marker"], sync=False)
    failpoints.configure("wal.before_write=1*enospc->off")
    with pytest.raises(WalError):
        log.append([b"b"])
    assert log.unsynced == 1
    assert log.append([b"c"]) == [3]
    assert log.unsynced == 0
    log.close()
    assert payloads_of(tmp_path) == [b"a", b"marker", b"c"]


def test_a_full_segment_with_unsynced_records_is_synced_before_it_is_sealed(
    tmp_path: Path,
) -> None:
    log = WalLog(tmp_path, max_segment_bytes=64)
    log.open()
    log.append([b"x" * 60])
    log.append([b"m"], sync=False)  # the segment is full, but this record is not durable
    first = log.active_segment
    log.append([b"y"])  # goes to the full segment and syncs it...
    assert log.active_segment == first
    log.append([b"z"])  # ...and only then is it sealed
    assert log.active_segment != first
    log.close()
    assert payloads_of(tmp_path) == [b"x" * 60, b"m", b"y", b"z"]


@pytest.mark.anyio
async def test_inbox_queues_markers_again_when_a_failed_fsync_cut_them(tmp_path: Path) -> None:
    from fractal_lba.server.inbox import Admit, Inbox, pending_admits

    async def on_disk(inbox: Inbox) -> list[Admit]:
        return pending_admits(inbox.log.iter_records())

    inbox = Inbox(tmp_path)
    inbox.open()
    inbox.start()
    try:
        await inbox.admit(Admit("r1", "default", 0.0, b"{}"))
        inbox.mark_outcome("r1", 200)  # written alone, without an fsync (a nudge)
        deadline = asyncio.get_running_loop().time() + 5
        while await on_disk(inbox):
            assert asyncio.get_running_loop().time() < deadline, "marker never written"
            await asyncio.sleep(0.01)
        assert inbox.log.unsynced == 1
        failpoints.configure("wal.after_write=1*eio->off")
        with pytest.raises(WalError):
            await inbox.admit(Admit("r2", "default", 0.0, b"{}"))
        assert [a.request_id for a in await on_disk(inbox)] == ["r1"]  # marker cut too
        await inbox.admit(Admit("r3", "default", 0.0, b"{}"))  # carries the marker again
        inbox.mark_outcome("r3", 200)
    finally:
        await inbox.close()
    reopened = Inbox(tmp_path)
    assert reopened.open() == []
    await reopened.close()
