"""The records of the agent outbox WAL and their fold into the outbox state (pure).

One record per state change, each a typed JSON payload in its own WAL record, so every
change is atomic (a torn record is cut off on open and never happened):

* ``entry``: a queued PCS (its exact JSON body, tenant, version, source file); with
  ``requeued_from`` it is a dead letter moved back into the outbox;
* ``ack``: the entry got a 200 / 202;
* ``retry``: an attempt failed transiently (status or error, when), so attempt counts and
  the last error survive a restart and ``flk agent status`` can show them;
* ``drop``: the operator dropped dead letter ``id``;
* ``dlq``: written by agents before the DLQ directory (:mod:`fractal_lba.agent.dlq`)
  existed; still read so an upgraded agent keeps those dead letters.

An entry is *pending* until an ack, a dead letter file, a requeue or a drop names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from fractal_lba.agent.errors import OutboxError


class EntryRecord(msgspec.Struct, tag="entry", kw_only=True, omit_defaults=True):
    """A queued PCS."""

    pcs_id: str
    version: str
    tenant_id: str | None = None
    queued_at: str
    body: str
    source: str | None = None
    requeued_from: int | None = None


class AckRecord(msgspec.Struct, tag="ack", kw_only=True):
    """The entry ``lsn`` was accepted by the server (200 / 202)."""

    lsn: int
    status: int
    at: str


class RetryRecord(msgspec.Struct, tag="retry", kw_only=True, omit_defaults=True):
    """Attempt ``attempt`` of entry ``lsn`` failed transiently (no status: no answer)."""

    lsn: int
    attempt: int
    status: int | None = None
    error: str
    detail: str | None = None
    at: str


class DropRecord(msgspec.Struct, tag="drop", kw_only=True):
    """Dead letter ``id`` was dropped by the operator."""

    id: int
    at: str


class LegacyDeadRecord(msgspec.Struct, tag="dlq", kw_only=True):
    """A dead-letter marker of agents before the DLQ directory (read, never written)."""

    lsn: int
    status: int | None
    error: str
    detail: str | None = None
    field: str | None = None
    attempts: int = 0
    at: str


Record = EntryRecord | AckRecord | RetryRecord | DropRecord | LegacyDeadRecord
encode_record = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Record).decode


def format_time(t: float) -> str:
    """RFC 3339 UTC with milliseconds and ``Z`` (the outbox's timestamps)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> float:
    """Seconds since the epoch of an outbox timestamp (with or without fractions)."""
    return datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True)
class Entry:
    """A pending entry: what delivery needs."""

    lsn: int
    pcs_id: str
    version: str
    tenant_id: str | None
    body: bytes
    queued_at: float
    source: str | None = None


@dataclass(frozen=True)
class Tries:
    """The failed attempts of one entry so far."""

    count: int
    first_at: str
    last_at: str
    status: int | None
    error: str
    detail: str | None


class OutboxState:
    """Fold of the records: pending entries, known pcs_ids, attempts, requeues and drops."""

    def __init__(self) -> None:
        self.pending: dict[int, Entry] = {}
        self.ids: dict[str, int] = {}
        self.acked = 0
        self.tries: dict[int, Tries] = {}
        self.closed: set[int] = set()
        self.dropped: set[int] = set()
        self.legacy_dead: dict[int, tuple[LegacyDeadRecord, Entry]] = {}

    def apply(self, lsn: int, payload: bytes) -> None:
        """Fold one record (lsn order)."""
        try:
            rec = _decode(payload)
        except msgspec.MsgspecError:
            raise OutboxError(f"outbox record {lsn} cannot be decoded") from None
        if isinstance(rec, EntryRecord):
            self.ids[rec.pcs_id] = lsn
            self.pending[lsn] = Entry(
                lsn,
                rec.pcs_id,
                rec.version,
                rec.tenant_id,
                rec.body.encode("utf-8"),
                parse_time(rec.queued_at),
                rec.source,
            )
            if rec.requeued_from is not None:
                self.closed.add(rec.requeued_from)
                self.pending.pop(rec.requeued_from, None)
                self.legacy_dead.pop(rec.requeued_from, None)
        elif isinstance(rec, AckRecord):
            # A marker for an entry that is no longer pending is ignored (cannot happen
            # with one writer; kept so a replayed marker never double counts).
            if self.pending.pop(rec.lsn, None) is not None:
                self.acked += 1
                self.tries.pop(rec.lsn, None)
        elif isinstance(rec, RetryRecord):
            if rec.lsn in self.pending:
                first = self.tries.get(rec.lsn)
                self.tries[rec.lsn] = Tries(
                    rec.attempt,
                    first.first_at if first else rec.at,
                    rec.at,
                    rec.status,
                    rec.error,
                    rec.detail,
                )
        elif isinstance(rec, DropRecord):
            self.closed.add(rec.id)
            self.dropped.add(rec.id)
            self.pending.pop(rec.id, None)
            self.legacy_dead.pop(rec.id, None)
        else:
            entry = self.pending.pop(rec.lsn, None)
            if entry is not None:
                self.legacy_dead[rec.lsn] = (rec, entry)

    def settle(self, dead_ids: set[int]) -> None:
        """Entries with a dead letter file are dead, not pending."""
        for lsn in dead_ids & self.pending.keys():
            del self.pending[lsn]
            self.tries.pop(lsn, None)
