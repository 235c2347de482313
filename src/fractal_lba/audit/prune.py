"""Retention: delete the oldest segments that are sealed, anchored and past retention.

Only a prefix of the log is pruned (oldest first, stopping at the first segment that does not
qualify), each pruned segment is re-verified against its checkpoint before it is deleted, and a
``prune`` record (segments, last pruned entry_hash, hash of its checkpoint) is appended to the
anchors file *before* anything is removed. Checkpoints stay in the anchors file, so the signed
chain still links the first remaining segment to the pruned history.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from pathlib import Path

from fractal_lba.audit.anchors import LEDGER_NAME, LocalAnchorFile, read_ledger
from fractal_lba.audit.checkpoint import note_hash, parse_checkpoint
from fractal_lba.audit.errors import AuditError, AuditVerifyError
from fractal_lba.audit.index import INDEX_NAME, LineageIndex
from fractal_lba.audit.segments import list_segments, scan_segment, utc_iso
from fractal_lba.fsutil import fsync_dir
from fractal_lba.merkle import merkle_tree_hash


@dataclass
class PruneResult:
    """Segments deleted (or that would be, with ``dry_run``) and why pruning stopped."""

    segments: list[str] = field(default_factory=list)
    last_entry_hash: str | None = None
    stopped_at: str | None = None
    reason: str | None = None


def _parse_time(iso: str) -> float:
    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))


def prune(
    base_dir: Path, older_than_seconds: float, *, now: float | None = None, dry_run: bool = False
) -> PruneResult:
    """Delete sealed + anchored segments sealed more than ``older_than_seconds`` ago."""
    base = Path(base_dir)
    now = time.time() if now is None else now
    cutoff = now - older_than_seconds
    led = read_ledger(base / LEDGER_NAME)
    res = PruneResult()
    last_note: str | None = None
    for seg in list_segments(base):
        rel = seg.rel
        why = None
        if rel not in led.checkpoints:
            why = "not sealed"
        elif rel not in led.anchored:
            why = "sealed but not anchored yet"
        elif (base / rel).stat().st_mode & 0o222:
            why = "sealed but still writable"
        elif _parse_time(parse_checkpoint(led.checkpoints[rel][1]).time) > cutoff:
            why = "within retention"
        if why is not None:
            res.stopped_at, res.reason = rel, why
            break
        note = led.checkpoints[rel][1]
        cp = parse_checkpoint(note)
        scan = scan_segment((base / rel).read_bytes(), rel, cp.first_prev)
        root = merkle_tree_hash(scan.leaves)
        if scan.torn or scan.entries != cp.size or root != cp.root:
            raise AuditVerifyError(
                "refusing to prune: segment does not match its checkpoint", segment=rel
            )
        res.segments.append(rel)
        res.last_entry_hash, last_note = cp.last, note
    if dry_run or not res.segments:
        return res
    assert last_note is not None
    LocalAnchorFile(base / LEDGER_NAME).append(
        {
            "type": "prune",
            "segments": res.segments,
            "last_entry_hash": res.last_entry_hash,
            "last_checkpoint_hash": note_hash(last_note),
            "time": utc_iso(now),
        }
    )
    index = LineageIndex(base / INDEX_NAME) if (base / INDEX_NAME).exists() else None
    try:
        for rel in res.segments:
            path = base / rel
            path.unlink()
            for side in path.parent.glob(path.name + ".torn*"):
                side.unlink()
            if index is not None:
                index.drop(rel)
            fsync_dir(path.parent)
            for d in (path.parent, path.parent.parent, path.parent.parent.parent):
                try:
                    d.rmdir()
                except OSError:
                    break
    except OSError as exc:
        raise AuditError(f"prune failed while deleting: {exc.strerror}") from None
    finally:
        if index is not None:
            index.close()
    return res
