"""The agent outbox has the inbox's guarantees (SPEC section 5): it sits on the same WalLog.

A full disk fails an enqueue and the outbox recovers by itself when space returns; mid-file
damage stops the open; ``flk wal salvage --path`` keeps each record's lsn, so ack markers
still name the entries they acknowledged.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fractal_lba.agent import Outbox, build_pcs, load_signer, parse_events
from fractal_lba.contract import PCS
from fractal_lba.wal import WalCorruptError, WalError, WalLog
from fractal_lba.wal.records import read_records
from testkit import tmpfs

SIGNER = load_signer("hmac", "outbox-fault-key")
FLK = Path(sys.executable).with_name("flk")


def make_pcs(epoch: int) -> PCS:
    ev = parse_events(f"timestamp,x,y,z\n{epoch},0.{epoch + 1},0.5,0.25\n".encode(), "csv")
    return build_pcs(ev, shard_id="fault", epoch=epoch, signer=SIGNER, sent_at="t")


def test_full_disk_fails_the_enqueue_and_space_coming_back_is_enough(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "1m") as fs:
        ob = Outbox(fs.path / "outbox").open()
        first = ob.enqueue(make_pcs(1))
        fs.fill(leave=0)
        queued = [first.pcs_id]
        with pytest.raises(WalError):  # the segment's last page fills first
            for epoch in range(2, 100):
                queued.append(ob.enqueue(make_pcs(epoch)).pcs_id)
        failed_epoch = len(queued) + 1
        fs.remount("8m")
        again = ob.enqueue(make_pcs(failed_epoch))
        assert again.created and again.lsn == len(queued) + 1  # nothing of the failure stayed
        ob.ack(first.lsn, 200)
        ob.close()
        with Outbox(fs.path / "outbox") as reopened:
            pending = [e.pcs_id for e in reopened.pending()]
        assert pending == [*queued[1:], make_pcs(failed_epoch).pcs_id]


def test_damaged_outbox_refuses_to_open_and_salvage_keeps_ack_references(tmp_path: Path) -> None:
    d = tmp_path / "outbox"
    with Outbox(d) as ob:
        lsns = [ob.enqueue(make_pcs(i)).lsn for i in range(12)]
        for lsn in lsns[:6]:
            ob.ack(lsn, 200)
    [seg] = WalLog(d).segments()
    data = bytearray(seg.read_bytes())
    target = len(data) // 3  # inside one of the first entries
    offset, hit = 32, None
    for lsn, payload in read_records(bytes(data), 1).records:
        if offset <= target < offset + 16 + len(payload):
            hit = lsn
        offset += 16 + len(payload)
    assert hit is not None and hit <= 6
    data[target] ^= 0x10
    seg.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match=seg.name):
        Outbox(d).open()
    done = subprocess.run(
        [str(FLK), "wal", "salvage", "--path", str(d)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"lost lsns {hit};" in done.stdout
    with Outbox(d) as ob:
        # The acks (lsns 13..18) still name entries 1..6: only 7..12 are pending, and the
        # lost entry is not resurrected.
        assert [e.lsn for e in ob.pending()] == lsns[6:]
        # The lock-free reader of `flk agent status` numbers records by their own lsn too
        # (by position it would count the salvage gap's neighbours as pending); the lost
        # entry's ack matches nothing, so 5 are acked.
        stats = Outbox.read_stats(d)
    assert (stats.pending, stats.acked, stats.oldest_pending_lsn) == (6, 5, lsns[6])
