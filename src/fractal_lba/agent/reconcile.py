"""One view of an outbox from its WAL records and its DLQ directory.

Used by :meth:`~fractal_lba.agent.outbox.Outbox.open` (which then finishes the clean-up the
view lists) and by the lock-free readers (``flk agent status``, ``flk agent dlq list``), so
both see each entry in exactly one place: dead letter files superseded by a requeue or drop
record are ignored, and the dead letters of older agents (``dlq`` WAL markers and
``dlq.jsonl`` lines) appear as letters still to be written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec

from fractal_lba.agent.dlq import DeadLetter, DeadLetterStore
from fractal_lba.agent.records import Entry, LegacyDeadRecord, OutboxState, format_time
from fractal_lba.wal.log import SUFFIX
from fractal_lba.wal.records import read_records as wal_read_records

LEGACY_DLQ_FILE = "dlq.jsonl"


class OutboxView:
    """State + dead letters, reconciled; what :meth:`Outbox.open` has to clean up.

    ``letters``: the dead letters; ``stale``: superseded files to remove; ``missing``:
    legacy dead letters to write as files. ``state`` has the dead entries settled.
    """

    def __init__(
        self, state: OutboxState, letters: dict[int, DeadLetter], legacy: list[bytes]
    ) -> None:
        self.stale = sorted(set(letters) & state.closed)
        self.letters = {i: d for i, d in letters.items() if i not in state.closed}
        self.missing: list[DeadLetter] = []
        for line in legacy:
            letter = legacy_line(line)
            if letter is None or letter.id in state.closed or letter.id in self.letters:
                continue
            self.letters[letter.id] = letter
            self.missing.append(letter)
        for lsn, (marker, entry) in state.legacy_dead.items():
            if lsn not in self.letters and lsn not in state.closed:
                letter = legacy_marker(marker, entry)
                self.letters[lsn] = letter
                self.missing.append(letter)
        state.settle(set(self.letters))
        self.state = state


def legacy_line(line: bytes) -> DeadLetter | None:
    """A ``dlq.jsonl`` line of older agents as a dead letter (None if unusable)."""
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None  # a torn last line: its WAL marker still has it
    if not isinstance(obj, dict) or not isinstance(obj.get("lsn"), int):
        return None
    pcs = obj.get("pcs")
    if not isinstance(pcs, dict) or not isinstance(obj.get("pcs_id"), str):
        return None
    error = str(obj.get("error") or "unknown")
    return DeadLetter(
        id=obj["lsn"],
        pcs_id=obj["pcs_id"],
        tenant_id=obj.get("tenant_id"),
        version=str(pcs.get("version", "")),
        source=None,
        reason="retries_exhausted" if error == "retries_exhausted" else "rejected",
        status=obj.get("status"),
        error=error,
        detail=obj.get("detail"),
        field=obj.get("field"),
        attempts=int(obj.get("attempts") or 0),
        queued_at=str(obj.get("at", "")),
        first_attempt_at=None,
        last_attempt_at=obj.get("at"),
        dead_at=str(obj.get("at", "")),
        pcs=msgspec.Raw(msgspec.json.encode(pcs)),
    )


def legacy_marker(marker: LegacyDeadRecord, entry: Entry) -> DeadLetter:
    return DeadLetter(
        id=entry.lsn,
        pcs_id=entry.pcs_id,
        tenant_id=entry.tenant_id,
        version=entry.version,
        source=entry.source,
        reason="retries_exhausted" if marker.error == "retries_exhausted" else "rejected",
        status=marker.status,
        error=marker.error,
        detail=marker.detail,
        field=marker.field,
        attempts=marker.attempts,
        queued_at=format_time(entry.queued_at),
        first_attempt_at=None,
        last_attempt_at=marker.at,
        dead_at=marker.at,
        pcs=msgspec.Raw(entry.body),
    )


def read_records(directory: Path) -> Iterator[tuple[int, bytes]]:
    """Records of all segments without taking the lock (read-only status)."""
    if not directory.is_dir():
        return
    for seg in sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX)):
        first = int(seg.name[: -len(SUFFIX)])
        try:
            data = seg.read_bytes()
        except FileNotFoundError:
            continue  # compacted while we listed
        # Records carry their own lsn: after a salvage with gaps, position != lsn.
        yield from wal_read_records(data, first).records


def legacy_lines(directory: Path) -> list[bytes]:
    try:
        return (directory / LEGACY_DLQ_FILE).read_bytes().splitlines()
    except FileNotFoundError:
        return []


def read_view(directory: Path) -> OutboxView:
    state = OutboxState()
    for lsn, payload in read_records(directory):
        state.apply(lsn, payload)
    return OutboxView(state, DeadLetterStore(directory).load(), legacy_lines(directory))
