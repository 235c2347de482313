"""Early removal of PII-bearing raw bodies from the inbox WAL (SPEC section 8): the inbox
hook on real segment files, including the backlog a restart finds in the outcome markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fractal_lba.server.inbox import Admit, Inbox, pending_admits
from fractal_lba.wal import WalLog

SECRET = b'{"meta":{"note":"mail dora.detect@corp-mail.io"}}'
OTHER = b'{"meta":{"note":"nothing to see"}}'


def files_with(root: Path, needle: bytes) -> list[str]:
    return [p.name for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def admit(inbox: Inbox, rid: str, body: bytes) -> Admit:
    adm = Admit(rid, "acme", 1_000.0, body)
    await inbox.admit(adm)
    return adm


@pytest.mark.anyio
async def test_scrub_removes_only_marked_bodies_and_keeps_the_log_valid(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, max_segment_bytes=4096)
    inbox.open()
    inbox.start()
    try:
        await admit(inbox, "r-pii", SECRET)
        await admit(inbox, "r-other", OTHER)
        await admit(inbox, "r-pending", OTHER + b" ")
        inbox.mark_outcome("r-pii", 400, scrub=True, received_at=1_000.0)
        inbox.mark_outcome("r-other", 200)
        assert files_with(tmp_path, b"dora.detect")  # the WAL holds the raw body until now
        assert inbox.scrub_pending == 1
        assert inbox.scrub_bodies() == 1
        assert inbox.scrub_pending == 0
        assert files_with(tmp_path, b"dora.detect") == []
        assert files_with(tmp_path, b"nothing to see")  # other bodies are untouched
        await admit(inbox, "r-after", OTHER)  # appends go on after the seal
    finally:
        await inbox.close()
    log = WalLog(inbox_dir(tmp_path))
    log.open()  # the rewritten segment passes the integrity checks of a normal open
    try:
        records = list(log.iter_records())
        lsns = [lsn for lsn, _ in records]
        assert lsns == sorted(lsns) and len(set(lsns)) == len(lsns)
        assert [a.request_id for a in pending_admits(records)] == ["r-pending", "r-after"]
    finally:
        log.close()


def inbox_dir(root: Path) -> Path:
    (d,) = [p for p in root.iterdir() if p.name.startswith("inbox-")]
    return d


@pytest.mark.anyio
async def test_restart_finishes_the_backlog_from_the_outcome_markers(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path)
    inbox.open()
    inbox.start()
    await admit(inbox, "r-pii", SECRET)
    inbox.mark_outcome("r-pii", 200, scrub=True, received_at=1_000.0)
    await inbox.close()  # stopped before the scrub ran: the marker (scrub=True) is on disk
    assert files_with(tmp_path, b"dora.detect")
    again = Inbox(tmp_path)
    assert again.open() == []  # finished, so not replayed
    again.start()
    try:
        assert again.scrub_pending == 1
        assert again.scrub_bodies() == 1
        assert files_with(tmp_path, b"dora.detect") == []
    finally:
        await again.close()
    third = Inbox(tmp_path)
    third.open()
    try:
        assert third.scrub_pending == 0  # nothing left to do after a scrub
    finally:
        await third.close()
