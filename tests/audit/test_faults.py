"""Write faults in the audit writer (failpoints): a failed or short append leaves nothing behind,
the log keeps working when the fault is gone, and what was durable is never reported failed.

SPEC section 5: "A failed or short append ... the writer truncates back to the last good
offset ... before it accepts the next append ... The same holds for the audit writer."
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from audit_helpers import lines_of, make_entry, segment_paths
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.anchors import read_ledger
from fractal_lba.audit.entry import AuditEntry
from fractal_lba.audit.errors import AuditError
from fractal_lba.audit.integrity import verify_log
from fractal_lba.audit.segments import encode_entry
from fractal_lba.audit.worm import WormLog
from fractal_lba.audit.writer import SEAL, WormWriter
from testkit import FakeClock

pytestmark = pytest.mark.anyio

Arm = Callable[[str], None]


def _verified(log: WormLog, key: Ed25519PrivateKey) -> int:
    return verify_log(log.base_dir, key.public_key()).entries


@pytest.mark.parametrize(
    "spec",
    [
        "audit.before_write=1*enospc",  # nothing reached the file
        "audit.after_write=1*enospc",  # the bytes are in the file, the fsync "failed"
        "audit.after_fsync=1*eio",  # durable, but the caller was told it failed
    ],
)
async def test_failed_append_is_cut_back_and_the_next_one_succeeds(
    make_log: Callable[..., WormLog], key: Ed25519PrivateKey, armed: Arm, spec: str
) -> None:
    log = make_log(seal_on_close=False)
    await log.start()
    first = await log.append(make_entry(1))
    [seg] = segment_paths(log.base_dir)
    size_before = seg.stat().st_size
    armed(spec)
    with pytest.raises(AuditError, match="audit write failed"):
        await log.append(make_entry(2))
    assert seg.stat().st_size == size_before  # no partial record left behind
    armed("")
    third = await log.append(make_entry(3))
    assert third.prev_hash == first.entry_hash  # the failed entry is not in the chain
    await log.close()
    ids = [line.split(b'"request_id":"')[1].split(b'"')[0] for line in lines_of(seg)]
    assert ids == [b"req-1", b"req-3"]
    assert _verified(log, key) == 2


async def test_truncation_that_fails_is_retried_before_the_next_append(
    make_log: Callable[..., WormLog], key: Ed25519PrivateKey, armed: Arm
) -> None:
    log = make_log(seal_on_close=False)
    await log.start()
    await log.append(make_entry(1))
    [seg] = segment_paths(log.base_dir)
    good = seg.stat().st_size
    armed("audit.after_write=1*eio;audit.before_truncate=1*eio")
    with pytest.raises(AuditError):
        await log.append(make_entry(2))
    assert seg.stat().st_size > good  # the failed bytes are still there ...
    with pytest.raises(AuditError, match="truncated back"):
        log.check_writable()  # ... and /ready says so
    await log.append(make_entry(3))  # ... until the next append cuts them first
    log.check_writable()
    await log.close()
    assert [len(x) > 0 for x in lines_of(seg)] == [True, True]
    assert _verified(log, key) == 2


async def test_seal_whose_checkpoint_cannot_be_written_leaves_the_segment_open(
    make_log: Callable[..., WormLog], key: Ed25519PrivateKey, armed: Arm
) -> None:
    log = make_log()
    await log.start()
    await log.append(make_entry(1))
    armed("audit.ledger_write=1*enospc")
    with pytest.raises(AuditError):
        await log.seal()
    assert not read_ledger(log.base_dir / "anchors.log").checkpoints
    await log.append(make_entry(2))  # still the same open segment
    note = await log.seal()
    assert note is not None
    await log.close()
    led = read_ledger(log.base_dir / "anchors.log")
    assert len(led.checkpoints) == 1 and len(segment_paths(log.base_dir)) == 1
    assert _verified(log, key) == 2


def test_entries_durable_before_a_failure_in_the_same_batch_keep_their_success(
    tmp_path: Path, key: Ed25519PrivateKey, clock: FakeClock, armed: Arm
) -> None:
    # Three entries per segment: a batch of eight is written in three units (3 + 3 + 2).
    line = len(encode_entry(make_entry(0), "0" * 64)[1])
    w = WormWriter(tmp_path / "w", signing_key=key, clock=clock, max_segment_bytes=3 * line)
    w.open()
    try:
        armed("audit.before_write=1*off->enospc")
        results = w.commit([make_entry(i) for i in range(8)])
    finally:
        armed("")
    ok = [r for r in results if isinstance(r, AuditEntry)]
    failed = [r for r in results if isinstance(r, AuditError)]
    assert len(ok) + len(failed) == 8 and ok and failed
    assert results[: len(ok)] == ok  # a prefix succeeded, the rest failed, in order
    written = [
        line.split(b'"request_id":"')[1].split(b'"')[0].decode()
        for seg in segment_paths(w.base)
        for line in lines_of(seg)
    ]
    assert written == [e.request_id for e in ok]
    # The log goes on after the fault, chained to the last durable entry.
    [after] = w.commit([make_entry(99)])
    assert isinstance(after, AuditEntry) and after.prev_hash == ok[-1].entry_hash
    assert w.commit([SEAL])[0] is not None
    w.close()
    assert verify_log(w.base, key.public_key()).entries == len(ok) + 1


async def test_check_writable_reports_a_directory_that_cannot_take_writes(
    make_log: Callable[..., WormLog], tmp_path: Path
) -> None:
    log = make_log()
    await log.start()
    log.check_writable()
    blocker = log.base_dir / ".ready-probe"
    blocker.mkdir()  # the probe file cannot be created: as on a read-only or broken volume
    with pytest.raises(AuditError, match="cannot take writes"):
        log.check_writable()
    blocker.rmdir()
    log.check_writable()
    await log.close()
