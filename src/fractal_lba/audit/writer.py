"""The synchronous core of the WORM log: recovery, chained appends, rotation, sealing.

:class:`WormWriter` is driven by one thread at a time (the group-commit writer thread of
:class:`~fractal_lba.audit.worm.WormLog`, or a CLI command holding the directory lock).
``commit`` writes a whole batch with one ``write`` + one ``fdatasync``; chaining happens here, in
write order. Sealing computes the segment's RFC 6962 root, appends the signed checkpoint to the
ledger (fsync), makes the segment read-only (0444) and publishes the checkpoint to the sinks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.anchors import (
    LEDGER_NAME,
    AnchorSink,
    LocalAnchorFile,
    read_ledger,
    sink_name,
)
from fractal_lba.audit.checkpoint import (
    ZERO_HASH,
    Checkpoint,
    note_hash,
    parse_checkpoint,
    sign_checkpoint,
    verifier_key,
)
from fractal_lba.audit.entry import GENESIS_PREV_HASH, AuditEntry
from fractal_lba.audit.errors import AuditError, AuditLockedError
from fractal_lba.audit.index import INDEX_NAME, LineageIndex, pcs_key
from fractal_lba.audit.segments import (
    SegmentName,
    encode_entry,
    list_segments,
    make_segment_name,
    scan_segment,
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
class RecoveryReport:
    """What :meth:`WormWriter.open` found and did."""

    torn_segment: str | None = None
    torn_bytes: int = 0
    torn_sidecar: str | None = None
    sealed_on_recovery: str | None = None
    ledger_torn_bytes: int = 0
    indexed: int = 0
    republished: int = 0


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
        self.sinks = list(anchor_sinks)
        self.clock = clock
        self.ledger = LocalAnchorFile(self.base / LEDGER_NAME)
        self.stats = WormStats()
        self._use_index = lineage_index
        self._index: LineageIndex | None = None
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._seg: SegmentName | None = None
        self._last_name: SegmentName | None = None
        self._seg_opened = 0.0
        self._seg_size = 0
        self._seg_lines = 0
        self._seg_leaves: list[bytes] = []
        self._seg_first_prev = GENESIS_PREV_HASH
        self._tip = GENESIS_PREV_HASH
        self._prev_note = ZERO_HASH
        self._unanchored: list[tuple[str, str]] = []
        self._broken: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> RecoveryReport:
        """Lock the directory, recover after a crash, catch up the index, re-anchor."""
        self._lock_fd = _lock(self.base)
        try:
            return self._recover()
        except BaseException:
            self.close(seal=False)
            raise

    def _recover(self) -> RecoveryReport:
        rep = RecoveryReport()
        led = read_ledger(self.ledger.path)
        if led.torn:
            rep.ledger_torn_bytes = len(led.torn)
            sidecar = self._save_torn(LEDGER_NAME, led.torn)
            self._truncate(self.ledger.path, led.good_bytes)
            rec = self._recovery_record(LEDGER_NAME, led.good_bytes, led.torn, sidecar)
            self.ledger.append(rec)
        notes = [note for _, note in sorted(led.checkpoints.values())]
        if notes:
            last_cp = parse_checkpoint(notes[-1])
            self._tip, self._prev_note = last_cp.last, note_hash(notes[-1])
        segs = list_segments(self.base)
        self._last_name = segs[-1] if segs else None
        unsealed = [s for s in segs if s.rel not in led.checkpoints]
        if len(unsealed) > 1 or (unsealed and unsealed[-1] != segs[-1]):
            raise AuditError(
                f"segments without checkpoint before the last one ({unsealed[0].rel}); "
                "run `flk worm verify` and investigate before restarting"
            )
        for s in segs:  # crash between checkpoint and chmod
            if s.rel in led.checkpoints and (self.base / s.rel).stat().st_mode & 0o222:
                os.chmod(self.base / s.rel, 0o444)
        if unsealed:
            self._recover_open_segment(unsealed[0], rep)
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
        led = read_ledger(self.ledger.path)
        self._unanchored = [
            (seg, note)
            for seg, (_, note) in sorted(led.checkpoints.items(), key=lambda kv: kv[1][0])
            if seg not in led.anchored
        ]
        before = len(self._unanchored)
        self._publish_pending()
        rep.republished = before - len(self._unanchored)
        return rep

    def _recover_open_segment(self, seg: SegmentName, rep: RecoveryReport) -> None:
        path = self.base / seg.rel
        if path.stat().st_mode & 0o200 == 0:
            os.chmod(path, 0o644)  # chmod'd but its checkpoint record was torn: reseal it
        data = path.read_bytes()
        scan = scan_segment(data, seg.rel, self._tip)
        if scan.torn:
            rep.torn_segment, rep.torn_bytes = seg.rel, len(scan.torn)
            rep.torn_sidecar = self._save_torn(seg.rel, scan.torn)
            self._truncate(path, scan.good_bytes)
            rec = self._recovery_record(seg.rel, scan.good_bytes, scan.torn, rep.torn_sidecar)
            self.ledger.append(rec)
            log.warning(
                "audit recovery: torn last line of %s (%d bytes) moved to %s",
                seg.rel,
                len(scan.torn),
                rep.torn_sidecar,
            )
        # Seal what survived: the recovered segment is anchored before anything new is written.
        self._seg, self._seg_size, self._seg_lines = seg, scan.good_bytes, scan.entries
        self._seg_leaves = scan.leaves
        self._seg_first_prev = scan.first_prev if scan.first_prev is not None else self._tip
        self._tip = scan.last_hash if scan.last_hash is not None else self._tip
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._seal()
        rep.sealed_on_recovery = seg.rel

    def _save_torn(self, rel: str, torn: bytes) -> str:
        n = 0
        while (self.base / (side := f"{rel}.torn" + (f".{n}" if n else ""))).exists():
            n += 1
        with open(self.base / side, "xb") as fh:
            fh.write(torn)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(self.base / side, 0o444)
        fsync_dir((self.base / side).parent)
        return side

    def _recovery_record(
        self, rel: str, offset: int, torn: bytes, sidecar: str
    ) -> dict[str, object]:
        return {
            "type": "recovery",
            "segment": rel,
            "offset": offset,
            "length": len(torn),
            "sha256": hashlib.sha256(torn).hexdigest(),
            "sidecar": sidecar,
            "time": utc_iso(self.clock()),
        }

    @staticmethod
    def _truncate(path: Path, size: int) -> None:
        with open(path, "r+b") as fh:
            fh.truncate(size)
            os.fsync(fh.fileno())

    def close(self, *, seal: bool = True) -> None:
        """Seal the open segment (unless ``seal`` is False), close files, release the lock."""
        try:
            if seal and self._seg is not None and self._broken is None:
                self._seal()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
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
        return self._seg.rel if self._seg is not None else None

    def check_writable(self) -> None:
        """Raise AuditError when appends cannot succeed."""
        if self._lock_fd is None:
            raise AuditError("audit log is not open")
        if self._broken is not None:
            raise AuditError(f"audit log failed and needs a restart: {self._broken}")
        if not os.access(self.base, os.W_OK):
            raise AuditError(f"audit directory {self.base} is not writable")

    # -- writing -----------------------------------------------------------------------------
    def commit(self, items: Sequence[AuditEntry | Control]) -> list[AuditEntry | str | None]:
        """Write a batch durably (one write + fsync per segment touched); results in order.

        Entries come back chained (``prev_hash``/``entry_hash`` set); a ``SEAL`` item returns
        the checkpoint note (or None when nothing was open); ``TICK`` returns None.
        """
        self.check_writable()
        out: list[AuditEntry | str | None] = []
        buf: list[bytes] = []
        rows: list[tuple[int, int, int]] = []
        try:
            for item in items:
                if isinstance(item, Control):
                    self._flush(buf, rows)
                    out.append(self._control(item))
                    continue
                chained, line = encode_entry(item, self._tip)
                if self._seg is not None and self._rotation_due(len(line)):
                    self._flush(buf, rows)
                    self._seal()
                if self._seg is None:
                    self._new_segment()
                rows.append((pcs_key(chained.pcs_id), self._seg_lines + 1, self._seg_size))
                buf.append(line)
                self._seg_size += len(line)
                self._seg_lines += 1
                self._seg_leaves.append(bytes.fromhex(chained.entry_hash))
                self._tip = chained.entry_hash
                out.append(chained)
            self._flush(buf, rows)
        except OSError as exc:
            self._broken = f"{exc.strerror or exc}"
            raise AuditError(f"audit write failed: {self._broken}") from None
        self.stats.batches += 1
        return out

    def _rotation_due(self, next_line: int) -> bool:
        if self._seg_lines == 0:
            return False
        if self._seg_size + next_line > self.max_segment_bytes:
            return True
        return self.clock() - self._seg_opened >= self.rotate_seconds

    def _control(self, item: Control) -> str | None:
        if item.kind == "seal":
            return self._seal() if self._seg is not None else None
        if self._seg is not None and self.clock() - self._seg_opened >= self.rotate_seconds:
            self._seal()
        self._publish_pending()
        return None

    def _flush(self, buf: list[bytes], rows: list[tuple[int, int, int]]) -> None:
        if not buf:
            return
        assert self._fd is not None and self._seg is not None
        data = memoryview(b"".join(buf))
        while data:
            data = data[os.write(self._fd, data) :]
        os.fdatasync(self._fd)
        self.stats.fsyncs += 1
        self.stats.entries += len(buf)
        buf.clear()
        if self._index is not None:
            try:
                self._index.add(self._seg.rel, rows, self._seg_lines, self._seg_size)
            except AuditError as exc:  # the index is a cache; the log stays correct
                self.stats.index_failures += 1
                log.warning("lineage index update failed (rebuilt on restart): %s", exc)
        rows.clear()

    def _new_segment(self) -> None:
        now = self.clock()
        name = make_segment_name(now, self._last_name)
        path = self.base / name.rel
        day = path.parent
        created = [d for d in (day.parent.parent, day.parent, day) if not d.exists()]
        day.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        fsync_dir(day)
        for d in created:
            fsync_dir(d.parent)
        self._seg, self._last_name, self._seg_opened = name, name, now
        self._seg_size = self._seg_lines = 0
        self._seg_leaves = []
        self._seg_first_prev = self._tip

    def _seal(self) -> str:
        """Checkpoint the open segment, make it read-only, publish; return the note."""
        seg, fd = self._seg, self._fd
        assert seg is not None and fd is not None
        root = merkle_tree_hash(self._seg_leaves)
        cp = Checkpoint(
            origin=self.origin,
            size=self._seg_lines,
            root=root,
            segment=seg.rel,
            time=utc_iso(self.clock()),
            first_prev=self._seg_first_prev,
            last=self._tip,
            prev=self._prev_note,
        )
        note = sign_checkpoint(cp, self.signing_key, self.origin)
        os.fsync(fd)
        os.close(fd)
        self._fd, self._seg = None, None
        self.ledger.publish(note)
        os.chmod(self.base / seg.rel, 0o444)
        self._prev_note = note_hash(note)
        self.stats.seals += 1
        self._unanchored.append((seg.rel, note))
        self._publish_pending()
        return note

    def _publish_pending(self) -> None:
        """Publish unanchored checkpoints to every sink; record the ones that all accepted."""
        done: list[str] = []
        for seg, note in self._unanchored:
            try:
                for sink in self.sinks:
                    sink.publish(note)
            except AuditError as exc:
                self.stats.anchor_failures += 1
                log.warning("checkpoint of %s not anchored yet (will retry): %s", seg, exc)
                break
            done.append(seg)
        if not done:
            return
        names = [sink_name(s) for s in self.sinks] or ["local"]
        now = utc_iso(self.clock())
        self.ledger.append_many(
            [{"type": "anchored", "segment": s, "sinks": names, "time": now} for s in done]
        )
        self._unanchored = self._unanchored[len(done) :]
