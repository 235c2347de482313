"""A directory of WAL segment files with batched append + one fsync per batch.

Segments are named ``{first_lsn:016d}.wal``; record ``i`` of a segment has lsn
``first_lsn + i``. Opening takes an exclusive ``flock`` on the directory (one writer process),
truncates a torn tail of the last segment (recorded in :class:`Recovery`) and refuses a
corrupt record anywhere else. Used by the agent outbox and the verifier's inbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fractal_lba import failpoints
from fractal_lba.fsutil import PRIVATE_FILE_MODE, fsync_dir, private_dir
from fractal_lba.wal.errors import WalCorruptError, WalError, WalLockedError
from fractal_lba.wal.records import frame_many, scan

SUFFIX = ".wal"
DEFAULT_MAX_SEGMENT = 64 * 1024 * 1024


@dataclass
class Recovery:
    """What :meth:`WalLog.open` found: record count, next lsn, torn bytes dropped."""

    records: int = 0
    next_lsn: int = 1
    truncated_bytes: int = 0
    truncated_segment: str | None = None


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
        """Size of the active segment at the end of its last durable batch."""
        self._next_lsn = 1
        self._repair_to: int | None = None
        self._reopen = False
        self._last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> Recovery:
        """Lock the directory, recover the tail and position for appends."""
        try:
            private_dir(self.directory)
            lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        except OSError as exc:
            raise WalError(f"cannot open WAL directory {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise WalLockedError(
                f"WAL directory {self.directory} is locked by another process"
            ) from None
        self._lock_fd = lock_fd
        rec = Recovery()
        segs = self.segments()
        for i, seg in enumerate(segs):
            data = seg.read_bytes()
            payloads, good = scan(data)
            first = int(seg.name[: -len(SUFFIX)])
            if good != len(data):
                if i != len(segs) - 1:
                    raise WalCorruptError(
                        f"corrupt record in sealed WAL segment {seg.name} at byte {good}"
                    )
                with open(seg, "r+b") as fh:
                    fh.truncate(good)
                    os.fsync(fh.fileno())
                rec.truncated_bytes = len(data) - good
                rec.truncated_segment = seg.name
            rec.records += len(payloads)
            rec.next_lsn = first + len(payloads)
        self._next_lsn = rec.next_lsn
        if segs:
            last = segs[-1]
            self._seg_first = int(last.name[: -len(SUFFIX)])
            self._open_segment(last)
        else:
            self._seg_first = self._next_lsn
            self._open_segment(self.active_segment)
            if self.fsync:
                fsync_dir(self.directory)
        return rec

    def close(self) -> None:
        """Close the active segment and release the directory lock."""
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
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX))

    @property
    def active_segment(self) -> Path:
        """The segment currently appended to."""
        return self.directory / f"{self._seg_first:016d}{SUFFIX}"

    @property
    def next_lsn(self) -> int:
        """The lsn the next appended record gets."""
        return self._next_lsn

    def _open_segment(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._seg_size = self._good_size = os.fstat(fd).st_size

    def _new_segment(self) -> None:
        """Seal the active segment and start the next one at ``next_lsn``."""
        first = self._next_lsn
        try:
            self._open_segment(self.directory / f"{first:016d}{SUFFIX}")
            if self.fsync:
                fsync_dir(self.directory)
        except OSError as exc:
            raise WalError(
                f"cannot start WAL segment {first:016d}{SUFFIX}: {exc.strerror}"
            ) from None
        self._seg_first = first

    # -- append / read ---------------------------------------------------------------------
    @property
    def last_error(self) -> str | None:
        """Why the last append failed; ``None`` once an append succeeded again."""
        return self._last_error

    @property
    def needs_repair(self) -> bool:
        """A failed append left bytes behind the last good record that are not yet cut off."""
        return self._repair_to is not None

    def append(self, payloads: Sequence[bytes]) -> list[int]:
        """Append records and make them durable with one fsync; return their lsns.

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
        if self._seg_size >= self.max_segment_bytes:
            self._new_segment()
        buf = frame_many(payloads)
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
        self._repair_to = self._good_size
        self._reopen = stage != "write"
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
        if self._reopen:
            self._reopen = False
            if size == 0:
                try:
                    self._open_segment(self.active_segment)
                except OSError as exc:
                    raise WalError(f"cannot reopen WAL segment: {exc.strerror}") from None
            else:
                self._new_segment()

    def iter_records(self) -> Iterator[tuple[int, bytes]]:
        """Every record (lsn, payload) in order, across all segments."""
        for seg in self.segments():
            first = int(seg.name[: -len(SUFFIX)])
            payloads, _ = scan(seg.read_bytes())
            for i, payload in enumerate(payloads):
                yield first + i, payload

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
