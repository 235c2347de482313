"""The synchronous core of the WORM log: chained appends, rotation, sealing.

:class:`WormWriter` is driven by one thread at a time (the group-commit writer thread of
:class:`~fractal_lba.audit.worm.WormLog`, or a CLI command holding the directory lock).
``commit`` writes a whole batch with one ``write`` + one ``fdatasync``; chaining happens here, in
write order. A failed or short write is truncated back to the last good offset before anything
else is written, so the log recovers by itself when space returns (SPEC section 5). Sealing
computes the segment's RFC 6962 root, appends the signed checkpoint to the ledger (fsync) and
makes the segment read-only (0444); publishing to the anchor sinks happens on the
:class:`~fractal_lba.audit.publisher.AnchorPublisher` thread, never on the commit path. Crash
recovery before the first append is :mod:`fractal_lba.audit.recovery`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba import failpoints
from fractal_lba.audit.anchors import LEDGER_NAME, AnchorSink, LocalAnchorFile
from fractal_lba.audit.checkpoint import (
    ZERO_HASH,
    Checkpoint,
    note_hash,
    sign_checkpoint,
    verifier_key,
)
from fractal_lba.audit.entry import GENESIS_PREV_HASH, AuditEntry
from fractal_lba.audit.errors import AuditError, AuditLockedError
from fractal_lba.audit.index import INDEX_NAME, LineageIndex, pcs_key
from fractal_lba.audit.publisher import AnchorPublisher
from fractal_lba.audit.recovery import RecoveryReport, recover
from fractal_lba.audit.segments import (
    SegmentName,
    encode_entry,
    make_segment_name,
    utc_iso,
)
from fractal_lba.fsutil import fsync_dir
from fractal_lba.merkle import merkle_tree_hash

log = logging.getLogger(__name__)

DEFAULT_MAX_SEGMENT_BYTES = 100 * 1024 * 1024
DEFAULT_ROTATE_SECONDS = 3600.0
LOCK_NAME = "LOCK"
VKEY_NAME = "vkey"
SEAL_REQUEST_NAME = "SEAL_REQUEST"


@contextlib.contextmanager
def directory_lock(base: Path) -> Iterator[None]:
    """Hold the log's writer lock (for offline maintenance such as reindexing)."""
    fd = _lock(base)
    try:
        yield
    finally:
        os.close(fd)


def _lock(base: Path) -> int:
    try:
        base.mkdir(parents=True, exist_ok=True)
        fd = os.open(base / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise AuditError(f"cannot open audit directory {base}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise AuditLockedError(f"audit log {base} is locked by another process") from None
    return fd


class Control:
    """A non-entry item for the writer queue (seal now / periodic maintenance)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


SEAL = Control("seal")
TICK = Control("tick")


@dataclass
class WormStats:
    """Counters for metrics and tests."""

    entries: int = 0
    batches: int = 0
    fsyncs: int = 0
    seals: int = 0
    anchor_failures: int = 0
    index_failures: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass
class _Segment:
    """The open segment: what of it is durable (size, lines, leaves) and its file."""

    name: SegmentName
    fd: int
    opened: float
    first_prev: str
    size: int = 0
    lines: int = 0
    leaves: list[bytes] = field(default_factory=list)


class WormWriter:
    """Single-writer WORM segment log under ``base_dir`` (see the module docstring)."""

    def __init__(
        self,
        base_dir: Path,
        *,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
        signing_key: Ed25519PrivateKey | None = None,
        origin: str = "fractal-lba/audit",
        anchor_sinks: Sequence[AnchorSink] = (),
        clock: Callable[[], float] = time.time,
        lineage_index: bool = True,
    ) -> None:
        if max_segment_bytes <= 0 or rotate_seconds <= 0:
            raise AuditError("max_segment_bytes and rotate_seconds must be positive")
        self.base = Path(base_dir)
        self.max_segment_bytes = max_segment_bytes
        self.rotate_seconds = rotate_seconds
        self.signing_key = signing_key
        self.origin = origin
        self.clock = clock
        self.ledger = LocalAnchorFile(self.base / LEDGER_NAME)
        self.stats = WormStats()
        self.publisher = AnchorPublisher(
            self.ledger, anchor_sinks, clock=clock, on_failure=self._anchor_failed
        )
        self._use_index = lineage_index
        self._index: LineageIndex | None = None
        self._index_lag = False
        self._lock_fd: int | None = None
        self._seg: _Segment | None = None
        self._last_name: SegmentName | None = None
        self._tip = GENESIS_PREV_HASH
        self._prev_note = ZERO_HASH
        self._repair_at: int | None = None
        self._last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> RecoveryReport:
        """Lock the directory, recover after a crash, catch up the index, re-anchor."""
        self._lock_fd = _lock(self.base)
        try:
            return self._open()
        except BaseException:
            self.close(seal=False)
            raise

    def _open(self) -> RecoveryReport:
        rec = recover(self.base, self.ledger, self.clock())
        rep = rec.report
        self._tip, self._prev_note, self._last_name = rec.tip, rec.prev_note, rec.last_name
        self.publisher.start()
        for seg, note in rec.unanchored:
            self.publisher.offer(seg, note)
        rep.republished = len(rec.unanchored)
        if rec.open_segment is not None and rec.scan is not None:
            # Seal what survived: it is checkpointed before anything new is written.
            scan, name = rec.scan, rec.open_segment
            fd = os.open(self.base / name.rel, os.O_WRONLY | os.O_APPEND)
            self._seg = _Segment(
                name,
                fd,
                self.clock(),
                first_prev=scan.first_prev if scan.first_prev is not None else self._tip,
                size=scan.good_bytes,
                lines=scan.entries,
                leaves=scan.leaves,
            )
            self._tip = scan.last_hash if scan.last_hash is not None else self._tip
            self._seal()
            rep.sealed_on_recovery = name.rel
        if self._use_index:
            try:
                self._index = LineageIndex(self.base / INDEX_NAME)
                rep.indexed = self._index.catch_up(self.base)
            except (AuditError, OSError) as exc:
                log.warning("lineage index unavailable (run `flk worm reindex`): %s", exc)
                self._index = None
        if self.signing_key is not None:
            vkey = verifier_key(self.origin, self.signing_key.public_key()) + "\n"
            vpath = self.base / VKEY_NAME
            if not vpath.exists() or vpath.read_text() != vkey:
                vpath.write_text(vkey)
        else:
            log.warning("audit checkpoints are UNSIGNED (no audit signing key configured)")
        return rep

    def close(self, *, seal: bool = True, publish_timeout: float = 5.0) -> None:
        """Seal the open segment (unless ``seal`` is False), give the anchor publisher up to
        ``publish_timeout`` seconds, close files, release the lock."""
        try:
            if seal and self._seg is not None and self._repair_at is None:
                self._seal()
        finally:
            if self._seg is not None:
                os.close(self._seg.fd)
                self._seg = None
            self.publisher.close(publish_timeout)
            if self._index is not None:
                self._index.close()
                self._index = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- state -------------------------------------------------------------------------------
    @property
    def tip(self) -> str:
        """entry_hash of the last written entry (GENESIS_PREV_HASH for an empty log)."""
        return self._tip

    @property
    def open_segment(self) -> str | None:
        """Relative path of the segment being written, if any."""
        return self._seg.name.rel if self._seg is not None else None

    @property
    def last_error(self) -> str | None:
        """Why the latest append failed, until one succeeds again."""
        return self._last_error

    def check_writable(self) -> None:
        """Raise AuditError unless an append can succeed now (GET /ready).

        Besides the writer's own state this writes and fsyncs a 4 KiB probe file next to the
        segments: a 0-byte probe succeeds on a full disk, this does not.
        """
        if self._lock_fd is None:
            raise AuditError("audit log is not open")
        if self._repair_at is not None:
            raise AuditError(
                f"audit log: a failed write could not be truncated back yet ({self._last_error})"
            )
        probe = self.base / PROBE_NAME
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(_PROBE_BYTES)
                while view:
                    view = view[os.write(fd, view) :]
                os.fdatasync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        except OSError as exc:
            raise AuditError(
                f"audit directory {self.base} cannot take writes: {exc.strerror or exc}"
            ) from None

    # -- writing -----------------------------------------------------------------------------
    def commit(
        self, items: Sequence[AuditEntry | Control]
    ) -> list[AuditEntry | str | AuditError | None]:
        """Write a batch durably (one write + fsync per segment touched); results in order.

        Entries come back chained (``prev_hash``/``entry_hash`` set); a ``SEAL`` item returns
        the checkpoint note (or None when nothing was open); ``TICK`` returns None. When a
        write fails, the failed bytes are truncated back (SPEC section 5) and that item and
        every later one of the batch get an :class:`AuditError` as their result; what was
        durable before it keeps its success, so nothing is reported failed that was written.
        """
        if self._lock_fd is None:
            raise AuditError("audit log is not open")
        out: list[AuditEntry | str | AuditError | None] = []
        unit: list[AuditEntry] = []
        lines: list[bytes] = []
        unit_bytes = 0
        tip = self._tip
        try:
            self._repair()
            for item in items:
                if isinstance(item, Control):
                    self._flush(unit, lines, out)
                    unit_bytes = 0
                    out.append(self._control(item))
                    continue
                chained, line = encode_entry(item, tip)
                if self._seg is not None and self._rotation_due(unit_bytes + len(line), unit):
                    self._flush(unit, lines, out)
                    unit_bytes = 0
                    self._seal()
                if self._seg is None:
                    self._new_segment()
                unit.append(chained)
                lines.append(line)
                unit_bytes += len(line)
                tip = chained.entry_hash
            self._flush(unit, lines, out)
        except (OSError, AuditError) as exc:
            self._last_error = _reason(exc)
            err = AuditError(f"audit write failed: {self._last_error}")
            out.extend([err] * (len(items) - len(out)))
        self.stats.batches += 1
        return out

    def _rotation_due(self, pending_bytes: int, pending: list[AuditEntry]) -> bool:
        seg = self._seg
        assert seg is not None
        if seg.lines == 0 and not pending:
            return False
        if seg.size + pending_bytes > self.max_segment_bytes:
            return True
        return self.clock() - seg.opened >= self.rotate_seconds

    def _control(self, item: Control) -> str | None:
        if item.kind == "seal":
            return self._seal() if self._seg is not None else None
        seg = self._seg
        if seg is not None and self.clock() - seg.opened >= self.rotate_seconds:
            self._seal()
        return None

    def _flush(
        self,
        unit: list[AuditEntry],
        lines: list[bytes],
        out: list[AuditEntry | str | AuditError | None],
    ) -> None:
        """Write ``lines`` (the entries ``unit``) with one write + fdatasync; on failure cut
        the file back to its last good offset and raise. Clears both lists on success."""
        if not lines:
            return
        seg = self._seg
        assert seg is not None
        data = b"".join(lines)
        good = seg.size
        try:
            failpoints.hit("audit.before_write")
            view = memoryview(data)
            while view:
                view = view[os.write(seg.fd, view) :]
            failpoints.hit("audit.after_write")
            os.fdatasync(seg.fd)
            failpoints.hit("audit.after_fsync")
        except OSError:
            self._truncate_back(seg, good)
            raise
        rows: list[tuple[int, int, int]] = []
        off = good
        for k, (entry, line) in enumerate(zip(unit, lines, strict=True)):
            rows.append((pcs_key(entry.pcs_id), seg.lines + k + 1, off))
            off += len(line)
        seg.size += len(data)
        seg.lines += len(unit)
        seg.leaves.extend(bytes.fromhex(e.entry_hash) for e in unit)
        self._tip = unit[-1].entry_hash
        self._last_error = None
        self.stats.fsyncs += 1
        self.stats.entries += len(unit)
        out.extend(unit)
        unit.clear()
        lines.clear()
        self._index_rows(seg, rows)

    def _index_rows(self, seg: _Segment, rows: list[tuple[int, int, int]]) -> None:
        if self._index is None:
            return
        try:
            if self._index_lag:  # an earlier update failed: catch up from the files
                self._index.catch_up(self.base)
                self._index_lag = False
            else:
                self._index.add(seg.name.rel, rows, seg.lines, seg.size)
        except (AuditError, OSError) as exc:  # the index is a cache; the log stays correct
            self._index_lag = True
            self.stats.index_failures += 1
            log.warning("lineage index update failed (caught up after the next write): %s", exc)

    def _truncate_back(self, seg: _Segment, good: int) -> None:
        """Cut a failed write off the segment (O_APPEND: the next write lands at ``good``)."""
        try:
            failpoints.hit("audit.before_truncate")
            os.ftruncate(seg.fd, good)
            os.fsync(seg.fd)
        except OSError as exc:
            self._repair_at = good
            log.error(
                "audit: cannot truncate a failed write back yet; retried before the next append",
                extra={"segment": seg.name.rel, "offset": good, "error": _reason(exc)},
            )

    def _repair(self) -> None:
        """Finish a truncation that failed earlier; raise OSError while it still fails."""
        if self._repair_at is None or self._seg is None:
            self._repair_at = None
            return
        os.ftruncate(self._seg.fd, self._repair_at)
        os.fsync(self._seg.fd)
        log.info(
            "audit: failed write truncated back",
            extra={"segment": self._seg.name.rel, "offset": self._repair_at},
        )
        self._repair_at = None

    def _new_segment(self) -> None:
        now = self.clock()
        name = make_segment_name(now, self._last_name)
        path = self.base / name.rel
        day = path.parent
        created = [d for d in (day.parent.parent, day.parent, day) if not d.exists()]
        day.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        self._last_name = name
        try:
            fsync_dir(day)
            for d in created:
                fsync_dir(d.parent)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):  # an empty unsealed file: recovery removes it
                path.unlink()
            raise
        self._seg = _Segment(name, fd, now, first_prev=self._tip)

    def _seal(self) -> str:
        """Checkpoint the open segment, make it read-only, hand the note to the publisher.

        Nothing changes unless the checkpoint is durable in the ledger: a failure leaves the
        segment open (the next append or tick seals it).
        """
        seg = self._seg
        assert seg is not None
        cp = Checkpoint(
            origin=self.origin,
            size=seg.lines,
            root=merkle_tree_hash(seg.leaves),
            segment=seg.name.rel,
            time=utc_iso(self.clock()),
            first_prev=seg.first_prev,
            last=self._tip,
            prev=self._prev_note,
        )
        note = sign_checkpoint(cp, self.signing_key, self.origin)
        os.fsync(seg.fd)
        self.ledger.publish(note)
        os.close(seg.fd)
        self._seg = None
        try:
            os.chmod(self.base / seg.name.rel, 0o444)
        except OSError as exc:  # recovery makes sealed segments read-only again
            log.warning("cannot make sealed segment %s read-only: %s", seg.name.rel, exc)
        self._prev_note = note_hash(note)
        self.stats.seals += 1
        self.publisher.offer(seg.name.rel, note)
        return note

    def _anchor_failed(self, sink: str) -> None:
        self.stats.anchor_failures += 1


PROBE_NAME = ".ready-probe"
_PROBE_BYTES = b"\0" * 4096


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
