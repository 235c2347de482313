"""The agent outbox: a WAL of queued PCS, plus the dead-letter queue (SPEC section 5).

The WAL (:class:`~fractal_lba.wal.WalLog`: length-prefixed, CRC-checked, fsync'd per batch,
torn tail truncated on open) holds the records of :mod:`fractal_lba.agent.records`; dead
letters are files of :mod:`fractal_lba.agent.dlq`. Markers are written only after the
server answered, so a crash at any point loses nothing and at worst re-sends (the verifier
de-duplicates by ``pcs_id``). Enqueue is idempotent on ``pcs_id``, also for entries in the
DLQ. Moves between the outbox and the DLQ are single atomic steps (see
:mod:`fractal_lba.agent.dlq`); :meth:`Outbox.open` finishes the clean-up of an interrupted
one and imports the ``dlq.jsonl`` of older agents.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from fractal_lba import failpoints
from fractal_lba.agent.build import stamp_outbox_seq
from fractal_lba.agent.dlq import DeadLetter, DeadLetterStore
from fractal_lba.agent.errors import OutboxError
from fractal_lba.agent.reconcile import LEGACY_DLQ_FILE, OutboxView, legacy_lines, read_view
from fractal_lba.agent.records import (
    AckRecord,
    DropRecord,
    Entry,
    EntryRecord,
    OutboxState,
    RetryRecord,
    Tries,
    encode_record,
    format_time,
)
from fractal_lba.contract import PCS, Signer, encode_pcs
from fractal_lba.fsutil import fsync_dir
from fractal_lba.wal import WalLog

DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024

State = Literal["pending", "acked", "dead", "dropped"]


@dataclass(frozen=True)
class LastFailure:
    """The latest failed attempt of a pending entry (for ``flk agent status``)."""

    lsn: int
    tries: Tries


@dataclass(frozen=True)
class OutboxStats:
    """Counts over the retained log (compaction drops fully acknowledged old segments)."""

    pending: int
    acked: int
    dead: int
    oldest_pending_lsn: int | None
    oldest_queued_at: float | None = None
    last_failure: LastFailure | None = None


@dataclass(frozen=True)
class Enqueued:
    """Result of :meth:`Outbox.enqueue`: the entry's lsn (or DLQ id) and what it is."""

    lsn: int
    created: bool
    pcs_id: str
    state: State = "pending"


@dataclass(frozen=True)
class Requeued:
    """A dead letter moved back into the outbox under a new lsn."""

    id: int
    lsn: int
    pcs_id: str


class Outbox:
    """Durable queue of PCS awaiting delivery (one writer process; ``flock`` enforced)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        fsync: bool = True,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.clock = clock
        self._wal = WalLog(self.directory, max_segment_bytes=max_segment_bytes, fsync=fsync)
        self._dlq = DeadLetterStore(self.directory, fsync=fsync)
        self._state = OutboxState()
        self._dead: dict[int, DeadLetter] = {}
        self._dead_ids: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> Outbox:
        """Lock, recover a torn tail, rebuild the state, finish interrupted DLQ moves."""
        self._wal.open()
        try:
            state = OutboxState()
            for lsn, payload in self._wal.iter_records():
                state.apply(lsn, payload)
            self._dlq.remove_temp_files()
            legacy = legacy_lines(self.directory)
            view = OutboxView(state, self._dlq.load(), legacy)
            for letter in view.missing:
                self._dlq.write(letter)
            for letter_id in view.stale:
                self._dlq.remove(letter_id)
            if legacy:
                (self.directory / LEGACY_DLQ_FILE).unlink()
                fsync_dir(self.directory)
            self._state = view.state
            self._dead = view.letters
            self._dead_ids = {d.pcs_id: i for i, d in view.letters.items()}
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the directory."""
        self._wal.close()

    def __enter__(self) -> Outbox:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> str:
        return format_time(self.clock())

    # -- queue -----------------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        """The lsn the next appended record gets."""
        return self._wal.next_lsn

    def lookup(self, pcs_id: str) -> int | None:
        """The lsn of the latest entry with ``pcs_id`` in the retained log, if any."""
        return self._state.ids.get(pcs_id)

    def enqueue(
        self,
        pcs: PCS,
        *,
        tenant_id: str | None = None,
        source: str | None = None,
        signer: Signer | None = None,
    ) -> Enqueued:
        """Durably queue ``pcs`` (fsync'd before returning); a known ``pcs_id`` is a no-op.

        The queued copy carries ``ft.outbox_seq`` = its lsn (re-signed with ``signer`` when
        the version signs ``ft``; without one such a PCS is queued as given). A ``pcs_id``
        that is in the DLQ is not queued again (``state="dead"``, ``lsn`` = the dead
        letter's id): only ``requeue`` brings it back, so a re-run cannot hide a dead letter.
        """
        dead = self._dead_ids.get(pcs.pcs_id)
        if dead is not None:
            return Enqueued(dead, False, pcs.pcs_id, "dead")
        known = self._state.ids.get(pcs.pcs_id)
        if known is not None:
            state: State = "acked"
            if known in self._state.pending:
                state = "pending"
            elif known in self._state.dropped:
                state = "dropped"
            return Enqueued(known, False, pcs.pcs_id, state)
        pcs = stamp_outbox_seq(pcs, self._wal.next_lsn, signer=signer, tenant_id=tenant_id)
        rec = EntryRecord(
            pcs_id=pcs.pcs_id,
            version=pcs.version,
            tenant_id=tenant_id,
            queued_at=self._now(),
            body=encode_pcs(pcs).decode("utf-8"),
            source=source,
        )
        lsn = self._append([rec])[0]
        failpoints.hit("agent.after_enqueue")
        return Enqueued(lsn, True, pcs.pcs_id)

    def pending(self) -> list[Entry]:
        """Pending entries in queue (lsn) order."""
        return sorted(self._state.pending.values(), key=lambda e: e.lsn)

    def tries(self, lsn: int) -> Tries | None:
        """The failed attempts of pending entry ``lsn`` so far (None: not tried or all ok)."""
        return self._state.tries.get(lsn)

    def ack(self, lsn: int, status: int) -> None:
        """Mark entry ``lsn`` delivered (after a 200 / 202)."""
        self._require_pending(lsn)
        self._append([AckRecord(lsn=lsn, status=status, at=self._now())])

    def record_retry(
        self, lsn: int, *, attempt: int, status: int | None, error: str, detail: str | None
    ) -> None:
        """Record that attempt ``attempt`` of entry ``lsn`` failed transiently."""
        self._require_pending(lsn)
        rec = RetryRecord(
            lsn=lsn, attempt=attempt, status=status, error=error, detail=detail, at=self._now()
        )
        self._append([rec])

    def dead_letter(
        self,
        lsn: int,
        *,
        status: int | None,
        error: str,
        reason: str = "rejected",
        detail: str | None = None,
        field: str | None = None,
        attempts: int = 0,
    ) -> DeadLetter:
        """Move pending entry ``lsn`` to the DLQ (the dead letter file is the decision)."""
        entry = self._require_pending(lsn)
        tries = self._state.tries.get(lsn)
        now = self._now()
        letter = DeadLetter(
            id=lsn,
            pcs_id=entry.pcs_id,
            tenant_id=entry.tenant_id,
            version=entry.version,
            source=entry.source,
            reason=reason,
            status=status,
            error=error,
            detail=detail,
            field=field,
            attempts=attempts,
            queued_at=format_time(entry.queued_at),
            first_attempt_at=tries.first_at if tries else now,
            last_attempt_at=now,
            dead_at=now,
            pcs=msgspec.Raw(entry.body),
        )
        self._dlq.write(letter)
        self._state.settle({lsn})
        self._dead[lsn] = letter
        self._dead_ids[letter.pcs_id] = lsn
        return letter

    def _require_pending(self, lsn: int) -> Entry:
        entry = self._state.pending.get(lsn)
        if entry is None:
            raise OutboxError(f"outbox entry {lsn} is not pending")
        return entry

    def _append(self, records: Sequence[msgspec.Struct]) -> list[int]:
        payloads = [encode_record(r) for r in records]
        lsns = self._wal.append(payloads)
        for lsn, payload in zip(lsns, payloads, strict=True):
            self._state.apply(lsn, payload)
        return lsns

    # -- dead-letter queue -----------------------------------------------------------------
    @property
    def dlq_dir(self) -> Path:
        """The directory of dead letter files."""
        return self._dlq.directory

    def dead_letters(self) -> list[DeadLetter]:
        """The dead letters, by id."""
        return [self._dead[i] for i in sorted(self._dead)]

    def _letters(self, ids: Sequence[int] | None) -> list[DeadLetter]:
        if ids is None:
            return self.dead_letters()
        unknown = [i for i in ids if i not in self._dead]
        if unknown:
            raise OutboxError(f"no dead letter {', '.join(map(str, unknown))} in {self.dlq_dir}")
        return [self._dead[i] for i in sorted(set(ids))]

    def requeue(self, ids: Sequence[int] | None = None) -> list[Requeued]:
        """Move dead letters ``ids`` (None: all) back into the outbox as new entries.

        The new entries are durable before this returns (one fsync for all); only then are
        the dead letter files removed. An unknown id fails before anything changes.
        """
        letters = self._letters(ids)
        if not letters:
            return []
        now = self._now()
        records = [
            EntryRecord(
                pcs_id=d.pcs_id,
                version=d.version,
                tenant_id=d.tenant_id,
                queued_at=now,
                body=d.body.decode("utf-8"),
                source=d.source,
                requeued_from=d.id,
            )
            for d in letters
        ]
        lsns = self._append(records)
        out = []
        for letter, lsn in zip(letters, lsns, strict=True):
            failpoints.hit("agent.dlq_requeue_mid")
            self._forget(letter)
            out.append(Requeued(letter.id, lsn, letter.pcs_id))
        return out

    def drop(self, ids: Sequence[int]) -> list[int]:
        """Delete dead letters ``ids`` for good (a ``drop`` record first, then the files)."""
        letters = self._letters(ids)
        if not letters:
            return []
        now = self._now()
        self._append([DropRecord(id=d.id, at=now) for d in letters])
        for letter in letters:
            failpoints.hit("agent.dlq_drop_mid")
            self._forget(letter)
        return [d.id for d in letters]

    def _forget(self, letter: DeadLetter) -> None:
        self._dlq.remove(letter.id)
        del self._dead[letter.id]
        if self._dead_ids.get(letter.pcs_id) == letter.id:
            del self._dead_ids[letter.pcs_id]

    # -- stats -----------------------------------------------------------------------------
    def stats(self) -> OutboxStats:
        """Pending / acked / dead-lettered counts, the oldest pending entry, the last failure."""
        return _stats(self._state, len(self._dead))

    @staticmethod
    def read_stats(directory: str | Path) -> OutboxStats:
        """Counts without taking the lock, so ``status`` works while an agent is running."""
        view = read_view(Path(directory))
        return _stats(view.state, len(view.letters))

    @staticmethod
    def read_dead_letters(directory: str | Path) -> list[DeadLetter]:
        """The dead letters without taking the lock (``flk agent dlq list``)."""
        letters = read_view(Path(directory)).letters
        return [letters[i] for i in sorted(letters)]

    def compact(self) -> int:
        """Delete sealed segments that hold no pending entry; returns how many were removed."""
        first_pending = min(self._state.pending, default=None)
        removed = 0
        for path, _first, end in self._wal.segment_ranges()[:-1]:
            if first_pending is not None and end > first_pending:
                break
            self._wal.remove_segment(path)
            removed += 1
        return removed


def _stats(state: OutboxState, dead: int) -> OutboxStats:
    oldest = min(state.pending, default=None)
    last = max(state.tries.items(), key=lambda kv: kv[1].last_at, default=None)
    return OutboxStats(
        pending=len(state.pending),
        acked=state.acked,
        dead=dead,
        oldest_pending_lsn=oldest,
        oldest_queued_at=state.pending[oldest].queued_at if oldest is not None else None,
        last_failure=LastFailure(*last) if last is not None else None,
    )
