"""The dead-letter queue: one JSON file per dead entry in ``OUTBOX/dlq/`` (SPEC section 5).

A dead letter is ``dlq/<id>.json`` (``id`` = the outbox lsn the entry had, zero-padded so a
listing sorts), 0600, written with :func:`~fractal_lba.fsutil.atomic_write`. It holds the PCS
as queued, why it is dead (``rejected``: a final 4xx; ``expired``: still failing
transiently at ``--max-age``), the last status and error, the attempts and their times.

Every move is one atomic step followed by clean-up, so a ``kill -9`` anywhere leaves each
entry in exactly one of the outbox and the DLQ:

* outbox -> DLQ: the file's rename is the decision (an outbox entry with a dead letter
  file is not pending; nothing is written to the WAL);
* DLQ -> outbox (requeue): an ``entry`` record with ``requeued_from = id`` is appended to
  the WAL (durable), then the file is removed;
* drop: a ``drop`` record, then the file is removed.

A file whose id a WAL record names as requeued or dropped is superseded: readers ignore it
and the next open removes it. Compaction only drops WAL segments after that clean-up, so
the record that supersedes a file never disappears while the file exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from fractal_lba.agent.errors import OutboxError
from fractal_lba.fsutil import atomic_write, fsync_dir, private_dir

DLQ_DIR = "dlq"
FORMAT = 1
_SUFFIX = ".json"


class DeadLetter(msgspec.Struct, kw_only=True):
    """One dead entry, as stored in its file."""

    format: int = FORMAT
    id: int
    pcs_id: str
    tenant_id: str | None
    version: str
    source: str | None
    reason: str
    status: int | None
    error: str
    detail: str | None = None
    field: str | None = None
    attempts: int
    queued_at: str
    first_attempt_at: str | None
    last_attempt_at: str | None
    dead_at: str
    pcs: msgspec.Raw

    @property
    def body(self) -> bytes:
        """The PCS JSON body as it was queued."""
        return bytes(self.pcs)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(DeadLetter).decode


class DeadLetterStore:
    """The ``dlq/`` directory of an outbox (the outbox's lock protects writes)."""

    def __init__(self, outbox_dir: Path, *, fsync: bool = True) -> None:
        self.directory = outbox_dir / DLQ_DIR
        self.fsync = fsync

    def path(self, letter_id: int) -> Path:
        """The file of dead letter ``letter_id``."""
        return self.directory / f"{letter_id:016d}{_SUFFIX}"

    def load(self) -> dict[int, DeadLetter]:
        """Every dead letter by id (temp files of an interrupted write are not letters)."""
        out: dict[int, DeadLetter] = {}
        if not self.directory.is_dir():
            return out
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith(".") or not name.endswith(_SUFFIX):
                continue
            try:
                letter = _decode(path.read_bytes())
            except FileNotFoundError:
                continue  # removed by a requeue while we listed
            except msgspec.MsgspecError:
                raise OutboxError(
                    f"dead letter file {path} cannot be decoded; move it out of {self.directory}"
                ) from None
            out[letter.id] = letter
        return out

    def write(self, letter: DeadLetter) -> None:
        """Make ``letter`` durable (atomic: the file is complete or absent)."""
        private_dir(self.directory)
        atomic_write(self.path(letter.id), _encode(letter) + b"\n")

    def remove(self, letter_id: int) -> None:
        """Remove dead letter ``letter_id`` durably (absent is fine: clean-up is idempotent)."""
        try:
            self.path(letter_id).unlink()
        except FileNotFoundError:
            return
        if self.fsync:
            fsync_dir(self.directory)

    def remove_temp_files(self) -> None:
        """Remove temp files an interrupted write left behind (writer only)."""
        if not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                os.unlink(path)
