"""The agent outbox: a WAL of queued PCS plus ack / dead-letter markers (SPEC section 5).

Records are typed JSON payloads in a :class:`~fractal_lba.wal.WalLog` (length-prefixed,
CRC-checked, fsync'd per batch, torn tail truncated on open):

* ``entry``: a queued PCS (its exact JSON body, tenant, schema version);
* ``ack``: the entry with that lsn got a 200/202;
* ``dlq``: the entry got a final answer (4xx, or retries exhausted) and was dead-lettered.

An entry is *pending* while no marker names it. Markers are written only after the server
answered, so a crash at any point loses nothing and at worst re-sends (the verifier
de-duplicates by ``pcs_id``). Enqueue is idempotent on ``pcs_id``. Dead letters are also
exported to ``dlq.jsonl`` for operators: the WAL marker is written first (the decision is
durable in one place) and the export is reconciled with the markers on every open.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from fractal_lba.agent.build import utc_now
from fractal_lba.agent.errors import OutboxError
from fractal_lba.contract import FT, PCS, encode_pcs
from fractal_lba.wal import WalLog
from fractal_lba.wal.log import SUFFIX
from fractal_lba.wal.records import scan

DLQ_FILE = "dlq.jsonl"
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024


class EntryRecord(msgspec.Struct, tag="entry", kw_only=True):
    """A queued PCS."""

    pcs_id: str
    version: str
    tenant_id: str | None = None
    queued_at: str
    body: str


class AckRecord(msgspec.Struct, tag="ack", kw_only=True):
    """The entry ``lsn`` was accepted by the server (200 / 202)."""

    lsn: int
    status: int
    at: str


class DeadRecord(msgspec.Struct, tag="dlq", kw_only=True):
    """The entry ``lsn`` was dead-lettered; ``status`` is None when no answer ever came."""

    lsn: int
    status: int | None
    error: str
    detail: str | None = None
    field: str | None = None
    attempts: int = 0
    at: str


Record = EntryRecord | AckRecord | DeadRecord
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Record).decode


@dataclass(frozen=True)
class Entry:
    """A pending entry: what delivery needs."""

    lsn: int
    pcs_id: str
    version: str
    tenant_id: str | None
    body: bytes


@dataclass(frozen=True)
class OutboxStats:
    """Counts over the retained log (compaction drops fully acknowledged old segments)."""

    pending: int
    acked: int
    dead: int
    oldest_pending_lsn: int | None


@dataclass(frozen=True)
class Enqueued:
    """Result of :meth:`Outbox.enqueue`: the entry's lsn and whether it was new."""

    lsn: int
    created: bool
    pcs_id: str


class _State:
    """Fold of the records: pending entries, known pcs_ids, counters."""

    def __init__(self) -> None:
        self.pending: dict[int, Entry] = {}
        self.ids: dict[str, int] = {}
        self.acked = 0
        self.dead: dict[int, DeadRecord] = {}
        self.entries: dict[int, EntryRecord] = {}

    def apply(self, lsn: int, payload: bytes) -> None:
        try:
            rec = _decode(payload)
        except msgspec.MsgspecError:
            raise OutboxError(f"outbox record {lsn} cannot be decoded") from None
        if isinstance(rec, EntryRecord):
            self.ids.setdefault(rec.pcs_id, lsn)
            self.entries[lsn] = rec
            self.pending[lsn] = Entry(
                lsn, rec.pcs_id, rec.version, rec.tenant_id, rec.body.encode("utf-8")
            )
        elif self.pending.pop(rec.lsn, None) is not None:
            # Markers for entries that are no longer pending are ignored (cannot happen
            # with one writer; kept so a replayed marker never double counts).
            if isinstance(rec, AckRecord):
                self.acked += 1
            else:
                self.dead[rec.lsn] = rec


def _read_records(directory: Path) -> Iterator[tuple[int, bytes]]:
    """Records of all segments without taking the lock (read-only status)."""
    if not directory.is_dir():
        return
    for seg in sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX)):
        first = int(seg.name[: -len(SUFFIX)])
        payloads, _ = scan(seg.read_bytes())
        for i, payload in enumerate(payloads):
            yield first + i, payload


class Outbox:
    """Durable queue of PCS awaiting delivery (one writer process; ``flock`` enforced)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        fsync: bool = True,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self._wal = WalLog(self.directory, max_segment_bytes=max_segment_bytes, fsync=fsync)
        self._state = _State()
        self._open = False

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> Outbox:
        """Lock the directory, recover a torn tail, rebuild the state, reconcile the DLQ file."""
        self._wal.open()
        self._open = True
        state = _State()
        try:
            for lsn, payload in self._wal.iter_records():
                state.apply(lsn, payload)
            self._state = state
            self._reconcile_dlq()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the directory."""
        self._wal.close()
        self._open = False

    def __enter__(self) -> Outbox:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queue -----------------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        """The lsn the next appended record gets."""
        return self._wal.next_lsn

    def lookup(self, pcs_id: str) -> int | None:
        """The lsn of the entry with ``pcs_id`` in the retained log, if any."""
        return self._state.ids.get(pcs_id)

    def enqueue(self, pcs: PCS, *, tenant_id: str | None = None) -> Enqueued:
        """Durably queue ``pcs`` (fsync'd before returning); a known ``pcs_id`` is a no-op.

        The queued copy carries ``ft.outbox_seq`` = its lsn.
        """
        known = self._state.ids.get(pcs.pcs_id)
        if known is not None:
            return Enqueued(known, False, pcs.pcs_id)
        # ft is not signed: stamping the entry's lsn keeps the signature valid.
        ft = pcs.ft if pcs.ft is not None else FT()
        pcs = msgspec.structs.replace(
            pcs, ft=msgspec.structs.replace(ft, outbox_seq=self._wal.next_lsn)
        )
        rec = EntryRecord(
            pcs_id=pcs.pcs_id,
            version=pcs.version,
            tenant_id=tenant_id,
            queued_at=utc_now(),
            body=encode_pcs(pcs).decode("utf-8"),
        )
        payload = _encode(rec)
        (lsn,) = self._wal.append([payload])
        self._state.apply(lsn, payload)
        return Enqueued(lsn, True, pcs.pcs_id)

    def pending(self) -> list[Entry]:
        """Pending entries in queue (lsn) order."""
        return list(self._state.pending.values())

    def ack(self, lsn: int, status: int) -> None:
        """Mark entry ``lsn`` delivered (after a 200 / 202)."""
        self._mark([AckRecord(lsn=lsn, status=status, at=utc_now())])

    def dead_letter(
        self,
        lsn: int,
        *,
        status: int | None,
        error: str,
        detail: str | None = None,
        field: str | None = None,
        attempts: int = 0,
    ) -> None:
        """Move entry ``lsn`` to the DLQ: WAL marker first, then the ``dlq.jsonl`` export."""
        rec = DeadRecord(
            lsn=lsn,
            status=status,
            error=error,
            detail=detail,
            field=field,
            attempts=attempts,
            at=utc_now(),
        )
        self._mark([rec])
        self._export_dead([rec])

    def _mark(self, markers: Sequence[AckRecord | DeadRecord]) -> None:
        for m in markers:
            if m.lsn not in self._state.pending:
                raise OutboxError(f"outbox entry {m.lsn} is not pending")
        payloads = [_encode(m) for m in markers]
        lsns = self._wal.append(payloads)
        for lsn, payload in zip(lsns, payloads, strict=True):
            self._state.apply(lsn, payload)

    def stats(self) -> OutboxStats:
        """Pending / acked / dead-lettered counts."""
        return _stats(self._state)

    @staticmethod
    def read_stats(directory: str | Path) -> OutboxStats:
        """Counts without taking the lock, so ``status`` works while an agent is running."""
        state = _State()
        for lsn, payload in _read_records(Path(directory)):
            state.apply(lsn, payload)
        return _stats(state)

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

    # -- dead-letter export ----------------------------------------------------------------
    @property
    def dlq_path(self) -> Path:
        """The JSONL export of dead letters."""
        return self.directory / DLQ_FILE

    def _dlq_lsns(self) -> set[int]:
        """lsns already exported; a torn last line (crash mid-write) is cut off."""
        path = self.dlq_path
        if not path.exists():
            return set()
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(path, "r+b") as fh:
                fh.truncate(keep)
                os.fsync(fh.fileno())
            data = data[:keep]
        seen: set[int] = set()
        for line in data.splitlines():
            try:
                obj = msgspec.json.decode(line)
            except msgspec.DecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("lsn"), int):
                seen.add(obj["lsn"])
        return seen

    def _reconcile_dlq(self) -> None:
        exported = self._dlq_lsns()
        missing = [rec for lsn, rec in self._state.dead.items() if lsn not in exported]
        if missing:
            self._export_dead(missing)

    def _export_dead(self, records: Sequence[DeadRecord]) -> None:
        lines = []
        for rec in records:
            entry = self._state.entries.get(rec.lsn)
            obj: dict[str, Any] = {
                "lsn": rec.lsn,
                "pcs_id": entry.pcs_id if entry else None,
                "tenant_id": entry.tenant_id if entry else None,
                "status": rec.status,
                "error": rec.error,
                "detail": rec.detail,
                "field": rec.field,
                "attempts": rec.attempts,
                "at": rec.at,
                "pcs": msgspec.Raw(entry.body.encode("utf-8")) if entry else None,
            }
            lines.append(_encode(obj) + b"\n")
        fd = os.open(self.dlq_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            buf = b"".join(lines)
            while buf:
                buf = buf[os.write(fd, buf) :]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)


def _stats(state: _State) -> OutboxStats:
    return OutboxStats(
        pending=len(state.pending),
        acked=state.acked,
        dead=len(state.dead),
        oldest_pending_lsn=min(state.pending, default=None),
    )
