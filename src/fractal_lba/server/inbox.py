"""The verifier's inbox WAL (SPEC section 4 step 2 and section 5).

Every admitted request is appended as an :class:`Admit` record (raw body, tenant, receive
time, request id) and made durable before its body is parsed. When the request has its final
outcome (after the audit append) an :class:`Outcome` marker is queued; markers ride along
with the next group commit of admits (no fsync of their own). When no admit is waiting, the
writer is nudged and writes the markers alone without an fsync (the next admit's fsync, or
shutdown, makes them durable), so the files show every answered request as finished
(``flk wal status``). A lost marker costs nothing but a replay that finds the request
audited. After a crash, an admit without a marker is *pending* and is replayed.

Layout: ``<DATA_DIR>/wal/inbox-<i>``, one directory per worker process, chosen by taking
the first free ``flock`` (i = 0, 1, 2 ...). Directories nobody holds are *orphans* (their
worker died); any worker may adopt one at startup, replay it and release it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass
from pathlib import Path

import msgspec

from fractal_lba.fsutil import private_dir
from fractal_lba.wal import GroupCommitter, Recovery, WalError, WalLockedError, WalLog, scan

INBOX_PREFIX = "inbox-"
PROBE_BYTES = 4096
_PROBE = b"\0" * PROBE_BYTES


class Admit(msgspec.Struct, tag="A", array_like=True, frozen=True):
    """A request as it arrived, durable before parsing."""

    request_id: str
    tenant: str
    received_at: float
    body: bytes
    schema_header: str | None = None
    """The ``X-PCS-Schema-Version`` header (checked at step 3, so replay needs it too)."""


class Outcome(msgspec.Struct, tag="O", array_like=True, frozen=True):
    """Marks a request as finished: outcome stored (if any) and audited."""

    request_id: str
    status: int
    scrub: bool = False
    """The admit's raw body held PII under block/redact: it is removed from disk within
    ``PII_WAL_RETENTION`` (:meth:`Inbox.scrub_bodies`), also after a restart."""


Record = Admit | Outcome

_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(Record)


def encode_record(record: Record) -> bytes:
    """msgpack bytes of a record (the WAL payload)."""
    return _encode(record)


def decode_record(payload: bytes) -> Record:
    """Inverse of :func:`encode_record`; raises ``WalError`` on a foreign payload."""
    try:
        record: Record = _decoder.decode(payload)
    except msgspec.DecodeError:
        raise WalError("inbox WAL holds a record that is not an inbox record") from None
    return record


def pending_admits(records: Iterable[tuple[int, bytes]]) -> list[Admit]:
    """Admits without an outcome marker, in WAL order."""
    admits: dict[str, Admit] = {}
    for _, payload in records:
        rec = decode_record(payload)
        if isinstance(rec, Admit):
            admits[rec.request_id] = rec
        else:
            admits.pop(rec.request_id, None)
    return list(admits.values())


def scrub_backlog(records: Iterable[tuple[int, bytes]]) -> dict[str, float]:
    """``request_id -> received_at`` of finished admits marked ``scrub`` whose raw body is
    still on disk (what a restart must still remove)."""
    bodies: dict[str, float] = {}
    marked: set[str] = set()
    for _, payload in records:
        rec = decode_record(payload)
        if isinstance(rec, Admit):
            if rec.body:
                bodies[rec.request_id] = rec.received_at
        elif rec.scrub:
            marked.add(rec.request_id)
    return {rid: at for rid, at in bodies.items() if rid in marked}


def _without_body(ids: Set[str], payload: bytes) -> bytes:
    """``payload`` with its body emptied when it is the admit of one of ``ids``; else the
    very same object (so the caller can tell nothing changed)."""
    rec = decode_record(payload)
    if isinstance(rec, Admit) and rec.body and rec.request_id in ids:
        return _encode(msgspec.structs.replace(rec, body=b""))
    return payload


def inbox_index(path: Path) -> int:
    """``inbox-3`` -> 3."""
    return int(path.name[len(INBOX_PREFIX) :] or 0)


def inbox_dirs(root: Path) -> list[Path]:
    """Existing inbox directories under ``root``, by index."""
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(INBOX_PREFIX) and p.name[len(INBOX_PREFIX) :].isdigit()
    ]
    return sorted(found, key=inbox_index)


@dataclass
class OrphanLog:
    """An adopted directory of a dead worker: its pending admits and its (locked) log."""

    log: WalLog
    pending: list[Admit]

    @property
    def index(self) -> int:
        """The dead worker's index (its audit directory has the same index)."""
        return inbox_index(self.log.directory)

    def write_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Durably mark ``outcomes`` in the orphan's own log (one fsync)."""
        if outcomes:
            self.log.append([encode_record(o) for o in outcomes])


def adopt_orphans(root: Path, *, own: Path, max_segment_bytes: int) -> list[OrphanLog]:
    """Lock every inbox directory nobody holds; return those with pending admits.

    Directories without pending admits are released immediately.
    """
    out: list[OrphanLog] = []
    for path in inbox_dirs(root):
        if path == own:
            continue
        log = WalLog(path, max_segment_bytes=max_segment_bytes)
        try:
            log.open()
        except WalLockedError:
            continue
        try:
            pending = pending_admits(log.iter_records())
        except BaseException:
            log.close()
            raise
        if pending:
            out.append(OrphanLog(log, pending))
        else:
            log.close()
    return out


class Inbox:
    """This worker's inbox WAL with group commit and piggybacked outcome markers."""

    def __init__(
        self,
        root: Path,
        *,
        max_segment_bytes: int = 64 * 1024 * 1024,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.root = root
        self.max_segment_bytes = max_segment_bytes
        self._on_batch = on_batch
        self._log: WalLog | None = None
        self._outcomes: collections.deque[bytes] = collections.deque()
        self._committer: GroupCommitter[bytes, int] | None = None
        self._append_lock = threading.Lock()
        self._scrub: dict[str, float] = {}
        """request_id -> received_at of finished admits whose raw body must leave the disk."""
        self.recovery: Recovery | None = None
        """What opening this worker's log found (a cut torn tail is logged there too)."""
        self._nudged = False
        self._unsynced: list[bytes] = []
        """Markers written without an fsync: queued again if a later fsync fails."""
        self._probe_lock = threading.Lock()

    @property
    def directory(self) -> Path:
        """The directory this worker holds."""
        if self._log is None:
            raise WalError("inbox is not open")
        return self._log.directory

    @property
    def index(self) -> int:
        """``i`` of the ``inbox-<i>`` directory this worker holds (names its audit directory)."""
        return inbox_index(self.directory)

    @property
    def log(self) -> WalLog:
        """The underlying log (stats, compaction)."""
        if self._log is None:
            raise WalError("inbox is not open")
        return self._log

    @property
    def fsyncs(self) -> int:
        """fdatasync calls of this worker's log so far (0 before open)."""
        return 0 if self._log is None else self._log.stats.fsyncs

    def open(self) -> list[Admit]:
        """Take the first free ``inbox-<i>`` directory; return its pending admits."""
        private_dir(self.root)
        i = 0
        while True:
            log = WalLog(self.root / f"{INBOX_PREFIX}{i}", max_segment_bytes=self.max_segment_bytes)
            try:
                self.recovery = log.open()
            except WalLockedError:
                i += 1
                continue
            break
        try:
            pending = pending_admits(log.iter_records())
            self._scrub = scrub_backlog(log.iter_records())
        except BaseException:
            log.close()
            raise
        self._log = log
        return pending

    def start(self) -> None:
        """Start the group-commit writer; call inside the serving event loop."""
        self._committer = GroupCommitter(self._commit, name="inbox-wal", on_batch=self._on_batch)
        self._committer.start()

    async def admit(self, admit: Admit) -> None:
        """Append ``admit``; return once it is on disk (raises ``WalError`` otherwise)."""
        committer = self._committer
        if committer is None:
            raise WalError("inbox is not running")
        await committer.submit(_encode(admit))

    def mark_outcome(
        self, request_id: str, status: int, *, scrub: bool = False, received_at: float = 0.0
    ) -> None:
        """Queue an outcome marker for the next group commit (no fsync of its own).

        ``scrub``: the raw body held PII (block/redact); :meth:`scrub_bodies` removes it.
        ``received_at`` (the admit's) bounds which segments that has to read.
        """
        self._outcomes.append(_encode(Outcome(request_id, status, scrub)))
        if scrub:
            self._scrub[request_id] = received_at
        if not self._nudged:  # one wake-up per batch, not per marker
            self._nudged = True
            committer = self._committer
            if committer is not None:
                committer.nudge()

    @property
    def scrub_pending(self) -> int:
        """Finished admits whose raw body is still to be removed from disk."""
        return len(self._scrub)

    def scrub_bodies(self) -> int:
        """Remove the raw bodies of the admits marked ``scrub`` from disk; return how many.

        Their outcome markers are made durable first, the active segment is sealed when it
        may hold one of them, and every sealed segment written since the oldest of them was
        received is rewritten with those bodies emptied (the admit stays, finished, so replay
        and compaction work as before). Blocking (file I/O): run it in a thread.
        """
        todo = dict(self._scrub)
        if not todo:
            return 0
        log = self.log
        with self._append_lock:
            markers = self._drain()
            try:
                if markers:
                    log.append(markers)
                log.seal()
            except WalError:
                self._outcomes.extendleft(reversed(markers))
                raise
        since = min(todo.values()) - 1.0
        ids = set(todo)
        done = 0
        for path, _, _ in log.segment_ranges()[:-1]:
            if path.stat().st_mtime < since:
                continue
            done += log.rewrite_segment(path, lambda p: _without_body(ids, p))
        for rid in ids:
            self._scrub.pop(rid, None)
        return done

    def flush_outcomes(self) -> int:
        """Write queued markers now (one fsync); used at shutdown. Returns how many."""
        with self._append_lock:
            markers = self._drain()
            if markers:
                self._append(markers, markers, sync=True)
            return len(markers)

    async def close(self) -> None:
        """Stop the writer, flush markers, release the directory."""
        if self._committer is not None:
            await self._committer.close()
            self._committer = None
        if self._log is not None:
            with contextlib.suppress(WalError):
                await asyncio.to_thread(self.flush_outcomes)
            self._log.close()
            self._log = None

    def check_writable(self) -> None:
        """Raise ``WalError`` when the inbox cannot take appends (``GET /ready``; blocking).

        A real write test: ``PROBE_BYTES`` written and fdatasync'd next to the segments (a
        0-byte file is created even on a full disk), and a cut-back that a failed append
        left pending is done now. The writer's last error alone does not keep /ready down:
        only a successful append clears it, and an unready instance gets no traffic, so
        space coming back must be enough. It is named in the message when the test fails.
        """
        log = self.log
        if self._committer is None:
            raise WalError("inbox WAL writer is not running")
        last = log.last_error
        why = f" (last append: {last})" if last else ""
        with self._probe_lock:
            probe = log.directory / ".ready-probe"
            try:
                fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                try:
                    view = memoryview(_PROBE)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
                    with contextlib.suppress(OSError):
                        probe.unlink()
            except OSError as exc:
                raise WalError(f"write test failed: {exc.strerror}{why}") from None
        if log.needs_repair:
            with self._append_lock:
                log.repair()  # raises WalError naming what fails

    def _drain(self) -> list[bytes]:
        out: list[bytes] = []
        pop = self._outcomes.popleft
        with contextlib.suppress(IndexError):
            while True:
                out.append(pop())
        return out

    def _commit(self, items: Sequence[bytes]) -> Sequence[int]:
        """Writer thread: admits of this batch + all queued markers, one write + one fsync.

        No admits (a nudge): the markers alone, written without an fsync.
        """
        with self._append_lock:
            self._nudged = False  # before the drain: a marker queued after it nudges again
            markers = self._drain()
            if not items and not markers:
                return []
            lsns = self._append([*items, *markers], markers, sync=bool(items))
        return lsns[: len(items)]

    def _append(self, records: list[bytes], markers: list[bytes], *, sync: bool) -> list[int]:
        """``log.append`` that queues ``markers`` again on failure, and with them the
        unsynced markers when the failure cut those off too. Holds ``_append_lock``."""
        log = self.log
        try:
            lsns = log.append(records, sync=sync)
        except WalError:
            if log.unsynced == 0 and self._unsynced:
                markers = [*self._unsynced, *markers]
                self._unsynced = []
            self._outcomes.extendleft(reversed(markers))
            raise
        if sync:
            self._unsynced = []
        else:
            self._unsynced.extend(markers)
        return lsns


@dataclass(frozen=True)
class CompactReport:
    """What :func:`compact` removed and why it stopped."""

    removed: list[Path]
    kept: int
    stopped_at: str | None


def compact(log: WalLog, *, retention_s: float, now: float | None = None) -> CompactReport:
    """Delete the oldest sealed segments whose admits all have outcome markers and whose last
    write is older than ``retention_s``.

    Only a *prefix* of segments is removed (it stops at the first segment that must stay), so
    an outcome marker is never deleted while the admit it closes survives. The active segment
    is never removed. ``log`` must be open (its lock held).
    """
    now = time.time() if now is None else now
    ranges = log.segment_ranges()
    finished: set[str] = set()
    admits_by_seg: list[list[str]] = []
    for path, _, _ in ranges:
        ids: list[str] = []
        for _, payload in _scan_file(path):
            rec = decode_record(payload)
            if isinstance(rec, Admit):
                ids.append(rec.request_id)
            else:
                finished.add(rec.request_id)
        admits_by_seg.append(ids)
    removed: list[Path] = []
    stopped: str | None = None
    for (path, _, _), ids in zip(ranges[:-1], admits_by_seg[:-1], strict=True):
        if any(i not in finished for i in ids):
            stopped = f"{path.name} has requests without an outcome"
            break
        if now - path.stat().st_mtime < retention_s:
            stopped = f"{path.name} is younger than the retention"
            break
        log.remove_segment(path)
        removed.append(path)
    else:
        if ranges:
            stopped = f"{ranges[-1][0].name} is the active segment"
    return CompactReport(removed, len(ranges) - len(removed), stopped)


def _scan_file(path: Path) -> list[tuple[int, bytes]]:
    payloads, _ = scan(path.read_bytes())
    return list(enumerate(payloads))
