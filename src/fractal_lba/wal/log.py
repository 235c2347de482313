"""A directory of WAL segment files with batched append + one fsync per batch.

Segments are named ``{first_lsn:016d}.wal`` and framed as :mod:`fractal_lba.wal.records`
describes (each record carries its lsn and a checksum salted per segment). Opening takes an
exclusive ``flock`` on the directory (one writer process) and inspects every segment
(:func:`~fractal_lba.wal.check.inspect_segment`):

* a **torn tail** (the unfinished last write of a crash: no valid record after it, last
  segment only) is cut off, logged with segment and offset, and reported in
  :class:`Recovery`;
* **corruption** (a bad record with valid ones after it, any damage in a sealed segment,
  records missing at the end of a sealed segment) stops the open with
  :class:`~fractal_lba.wal.WalCorruptError` naming segment and offset. Nothing is cut:
  ``flk wal check`` shows it, ``flk wal salvage`` copies the intact records out.

A failed or short append never leaves a partial record that a later append would sit
behind (SPEC section 5): the segment is cut back to its last durable batch first. Legacy
(format 1) segments are read; new records always go to a format-2 segment. Used by the agent
outbox and the verifier's inbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fractal_lba import failpoints
from fractal_lba.fsutil import PRIVATE_FILE_MODE, atomic_write, fsync_dir, private_dir
from fractal_lba.wal.check import SUFFIX as SUFFIX
from fractal_lba.wal.check import (
    Damage,
    inspect_segment,
    segment_files,
    segment_first_lsn,
)
from fractal_lba.wal.errors import WalCorruptError, WalError, WalLockedError
from fractal_lba.wal.records import SEGMENT_HEADER, SegmentHeader, frame_records, read_records

DEFAULT_MAX_SEGMENT = 64 * 1024 * 1024

log = logging.getLogger(__name__)


@dataclass
class Recovery:
    """What :meth:`WalLog.open` found: record count, next lsn, the torn tail it cut."""

    records: int = 0
    next_lsn: int = 1
    truncated_bytes: int = 0
    truncated_segment: str | None = None
    truncated_offset: int | None = None
    """Where the cut torn tail began (the segment keeps the bytes before it)."""
    legacy_segments: int = 0
    """Format-1 segments found (read, never appended to)."""

    def as_dict(self) -> dict[str, object]:
        """The torn-tail part for logs and ``/ready`` (no record contents)."""
        return {
            "truncated_segment": self.truncated_segment,
            "truncated_offset": self.truncated_offset,
            "truncated_bytes": self.truncated_bytes,
        }


@dataclass
class WalStats:
    """Counters for metrics: fsyncs, appended records and batches."""

    fsyncs: int = 0
    records: int = 0
    batches: int = 0
    bytes: int = 0
    last_batch: int = 0
    max_batch: int = 0
    failures: int = 0
    """Appends that failed (write, fsync or repair error): each one was answered 503."""
    extra: dict[str, int] = field(default_factory=dict)


def lock_directory(directory: Path) -> int:
    """Create ``directory`` (0700) and take its exclusive ``flock``; return the lock fd."""
    try:
        private_dir(directory)
        lock_fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    except OSError as exc:
        raise WalError(f"cannot open WAL directory {directory}: {exc.strerror}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock_fd)
        raise WalLockedError(f"WAL directory {directory} is locked by another process") from None
    return lock_fd


def corrupt_error(directory: Path, damage: Damage) -> WalCorruptError:
    """The one-line error that stops an open on a corrupt segment."""
    return WalCorruptError(
        f"WAL {directory}: {damage.describe()}; see `flk wal check`, then `flk wal salvage`",
        segment=damage.segment,
        offset=damage.offset,
    )


class WalLog:
    """Append-only, segmented, checksummed log in one directory (single writer)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT,
        fsync: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.max_segment_bytes = max_segment_bytes
        self.fsync = fsync
        self.stats = WalStats()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._seg_first = 1
        self._seg_size = 0
        self._good_size = 0
        """Size of the active segment at the end of its last completed write."""
        self._synced_size = 0
        """... and at the end of its last durable (fsync'd) batch."""
        self._next_lsn = 1
        self._synced_lsn = 1
        self._repair_to: int | None = None
        self._roll_pending = False
        self._header = SegmentHeader.new(1)
        self._last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> Recovery:
        """Lock the directory, cut a torn tail, refuse corruption, position for appends."""
        self._lock_fd = lock_directory(self.directory)
        try:
            return self._recover()
        except BaseException:
            self.close()
            raise

    def _recover(self) -> Recovery:
        rec = Recovery()
        segs = self.segments()
        last = None
        for i, seg in enumerate(segs):
            nxt = segment_first_lsn(segs[i + 1]) if i + 1 < len(segs) else None
            last = inspect_segment(seg, seg.read_bytes(), sealed=nxt is not None, next_first=nxt)
            if last.damage is not None and last.damage.kind == "corrupt":
                raise corrupt_error(self.directory, last.damage)
            if last.damage is not None:  # torn tail of the last segment
                self._cut_torn_tail(seg, last.damage, last.size, rec)
            rec.records += len(last.records)
            rec.legacy_segments += last.legacy
            rec.next_lsn = last.next_lsn
        self._next_lsn = rec.next_lsn
        if last is None:
            self._new_segment()
        elif last.header is not None:
            self._header = last.header
            self._seg_first = last.first_lsn
            self._open_segment(last.path)
        else:
            # Legacy with records: never appended to (a new segment follows). Empty, or its
            # header was torn: written anew under the same name.
            self._seg_first = last.first_lsn
            self._new_segment()
        return rec

    def _cut_torn_tail(self, seg: Path, damage: Damage, size: int, rec: Recovery) -> None:
        with open(seg, "r+b") as fh:
            fh.truncate(damage.offset)
            os.fsync(fh.fileno())
        rec.truncated_bytes = size - damage.offset
        rec.truncated_segment = seg.name
        rec.truncated_offset = damage.offset
        log.warning(
            "WAL torn tail cut on open",
            extra={
                "path": str(self.directory),
                "segment": seg.name,
                "offset": damage.offset,
                "truncated_bytes": rec.truncated_bytes,
            },
        )

    def close(self) -> None:
        """Make unsynced records durable, close the active segment, release the lock."""
        with contextlib.suppress(WalError):
            self.repair()  # else the next open finds the failed batch as a torn tail
        if self._fd is not None and self.unsynced and self.fsync:
            with contextlib.suppress(OSError):
                os.fdatasync(self._fd)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> WalLog:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- segments --------------------------------------------------------------------------
    def segments(self) -> list[Path]:
        """Segment files in lsn order."""
        return segment_files(self.directory)

    @property
    def active_segment(self) -> Path:
        """The segment currently appended to."""
        return self.directory / f"{self._seg_first:016d}{SUFFIX}"

    @property
    def next_lsn(self) -> int:
        """The lsn the next appended record gets."""
        return self._next_lsn

    def _open_segment(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._seg_size = self._good_size = self._synced_size = os.fstat(fd).st_size
        self._synced_lsn = self._next_lsn

    def _new_segment(self) -> None:
        """Seal the active segment and start the next one at ``next_lsn`` (header durable).

        Until this succeeds nothing is appended anywhere (``_roll_pending``): a half-created
        next segment must never follow records written after it.
        """
        first = self._next_lsn
        self._roll_pending = True
        name = f"{first:016d}{SUFFIX}"
        path = self.directory / name
        # The active segment itself is only ever re-created while it holds no record.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        flags |= os.O_TRUNC if first == self._seg_first else os.O_EXCL
        header = SegmentHeader.new(first)
        fd = -1
        try:
            fd = os.open(path, flags, PRIVATE_FILE_MODE)
            os.write(fd, header.encode())  # 32 bytes: never short on a regular file
            if self.fsync:
                os.fdatasync(fd)
                fsync_dir(self.directory)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
                with contextlib.suppress(OSError):
                    path.unlink()
            self._last_error = f"starting segment {name} failed: {exc.strerror}"
            raise WalError(f"cannot start WAL segment {name}: {exc.strerror}") from None
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._header = header
        self._seg_first = first
        self._seg_size = self._good_size = self._synced_size = SEGMENT_HEADER.size
        self._synced_lsn = self._next_lsn
        self._roll_pending = False

    # -- append / read ---------------------------------------------------------------------
    @property
    def last_error(self) -> str | None:
        """Why the last append failed; ``None`` once an append succeeded again."""
        return self._last_error

    @property
    def needs_repair(self) -> bool:
        """A failed append left bytes behind the last good record that are not yet cut off."""
        return self._repair_to is not None

    @property
    def unsynced(self) -> int:
        """Records written by ``append(..., sync=False)`` and not yet covered by an fsync."""
        return self._next_lsn - self._synced_lsn

    def append(self, payloads: Sequence[bytes], *, sync: bool = True) -> list[int]:
        """Append records and make them durable with one fsync; return their lsns.

        ``sync=False`` only writes (for records whose loss is harmless, e.g. the inbox's
        outcome markers when no admit is waiting): the next synced append, rotation or
        ``close`` makes them durable. If that fsync fails they are cut off with it
        (``unsynced`` drops to 0), so the caller can queue them again.

        On any failure (a short or failed ``write``, a failed ``fdatasync``) the batch is
        reported failed (``WalError``) and the segment is cut back to the end of the last
        good batch before another append is accepted, so no later record ever sits behind a
        partial one. After a failed fsync the page cache state of the batch is unknown: it is
        cut off too, and appends continue on a freshly opened descriptor (a new segment).
        """
        if self._fd is None:
            raise WalError("WAL is not open")
        if not payloads:
            return []
        if self._repair_to is not None:
            self.repair()
        full = self._seg_size >= self.max_segment_bytes and self._synced_size == self._seg_size
        if self._roll_pending or full:  # a segment is sealed only once all of it is durable
            self._new_segment()
        buf = frame_records(self._header, self._next_lsn, payloads)
        fd = self._fd
        assert fd is not None
        stage = "write"
        try:
            failpoints.hit("wal.before_write")
            written = os.write(fd, buf)
            if written < len(buf):  # short write (disk full): finish it or fail on the rest
                view = memoryview(buf)
                while written < len(buf):
                    written += os.write(fd, view[written:])
            if sync:
                stage = "fsync"
                failpoints.hit("wal.after_write")
                if self.fsync:
                    os.fdatasync(fd)
                    self.stats.fsyncs += 1
                failpoints.hit("wal.after_fsync")
        except OSError as exc:
            self._failed(stage, exc)
            raise WalError(f"WAL append failed ({stage}): {exc.strerror}") from None
        first = self._next_lsn
        n = len(payloads)
        self._next_lsn += n
        self._seg_size += len(buf)
        self._good_size = self._seg_size
        if sync:
            self._synced_size, self._synced_lsn = self._seg_size, self._next_lsn
        self._last_error = None
        st = self.stats
        st.records += n
        st.batches += 1
        st.bytes += len(buf)
        st.last_batch = n
        st.max_batch = max(st.max_batch, n)
        return list(range(first, first + n))

    def _failed(self, stage: str, exc: OSError) -> None:
        """Record a failed append and try to cut its bytes off right away."""
        self.stats.failures += 1
        self._last_error = f"{stage} failed: {exc.strerror or exc}"
        if stage == "write":  # what earlier writes put in the page cache is intact
            self._repair_to = self._good_size
        else:
            # After a failed fsync the page cache state of everything since the last good
            # fsync is unknown: cut all of it, and go on in a new segment.
            self._repair_to = self._good_size = self._synced_size
            self._next_lsn = self._synced_lsn
            self._roll_pending = True
        with contextlib.suppress(WalError):
            self.repair()

    def repair(self) -> None:
        """Cut the active segment back to its last good batch (after a failed append).

        Raises ``WalError`` while that is impossible (the next append tries again); a no-op
        when nothing needs repair. After a failed fsync, appends go on in a new segment (or
        a fresh descriptor of the same one, when the failed batch was its first).
        """
        size = self._repair_to
        if size is None or self._fd is None:
            return
        try:
            failpoints.hit("wal.repair")
            os.ftruncate(self._fd, size)
            if self.fsync:
                os.fdatasync(self._fd)
        except OSError as exc:
            self._last_error = f"cutting back {self.active_segment.name} failed: {exc.strerror}"
            raise WalError(f"WAL repair failed: {exc.strerror}") from None
        self._seg_size = size
        self._repair_to = None
        if self._roll_pending:
            self._new_segment()

    def iter_records(self) -> Iterator[tuple[int, bytes]]:
        """Every record (lsn, payload) in order, across all segments."""
        for seg in self.segments():
            yield from read_records(seg.read_bytes(), segment_first_lsn(seg)).records

    def segment_ranges(self) -> list[tuple[Path, int, int]]:
        """(path, first_lsn, end_lsn_exclusive) of each segment; the active one last."""
        segs = self.segments()
        out: list[tuple[Path, int, int]] = []
        for i, seg in enumerate(segs):
            first = int(seg.name[: -len(SUFFIX)])
            end = int(segs[i + 1].name[: -len(SUFFIX)]) if i + 1 < len(segs) else self._next_lsn
            out.append((seg, first, end))
        return out

    def remove_segment(self, path: Path) -> None:
        """Delete a sealed segment (compaction); the active segment is refused."""
        if path == self.active_segment:
            raise WalError("refusing to remove the active WAL segment")
        path.unlink()
        if self.fsync:
            fsync_dir(self.directory)

    def seal(self) -> bool:
        """Start a new segment now if the active one holds records, so that it becomes sealed
        (and can be rewritten or removed early); False when it holds none. The caller keeps
        appends out meanwhile (the inbox holds its append lock)."""
        if self._fd is None:
            raise WalError("WAL is not open")
        if self._next_lsn == self._seg_first:
            return False
        if self._repair_to is not None:
            self.repair()
        self._new_segment()
        return True

    def rewrite_segment(self, path: Path, transform: Callable[[bytes], bytes]) -> int:
        """Replace sealed segment ``path`` atomically with every payload passed through
        ``transform`` (same records, same lsns, a fresh salt); return how many changed.

        The privacy gate uses it to drop raw request bodies early (SPEC section 8). A damaged
        segment is never rewritten (that would hide the damage): ``WalCorruptError``.
        """
        if path == self.active_segment:
            raise WalError("refusing to rewrite the active WAL segment")
        data = path.read_bytes()
        sc = read_records(data, segment_first_lsn(path))
        if sc.end != len(data) or not sc.header_intact:
            raise WalCorruptError(f"WAL segment {path.name} is damaged at byte {sc.end}")
        out: list[tuple[int, bytes]] = []
        changed = 0
        for lsn, payload in sc.records:
            new = transform(payload)
            changed += new is not payload
            out.append((lsn, new))
        if not changed:
            return 0
        first = segment_first_lsn(path)
        header = SegmentHeader.new(first, sc.header.flags if sc.header is not None else 0)
        body = b"".join(frame_records(header, lsn, [p]) for lsn, p in out)
        st = path.stat()
        atomic_write(path, header.encode() + body)
        # Keep the segment's age: compaction by WAL_RETENTION goes by its last append.
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return changed
