"""Crash recovery of a WORM log directory, before its writer appends again.

:func:`recover` runs with the directory lock held and puts the files back into a state the
writer can continue from, loudly (a structured log line and a ledger record for every repair;
nothing is dropped silently):

1. a torn last record of the ledger (``anchors.log``) is moved to a sidecar file;
2. the segment set must be "sealed ones, then at most one open one" (else: refuse to start;
   an empty unsealed file before the last, left by a failed segment creation, is removed);
3. a sealed segment still writable (crash between checkpoint and chmod) is made 0444;
4. the open segment is re-verified line by line; a torn last line is moved to a sidecar; a
   segment holding fewer lines than the lineage index recorded for it lost entries that were
   once durable (truncated): that is logged as an error and recorded as a ``truncation``
   record, which ``flk worm verify`` reports from then on.

The writer then seals what survived, so the recovered segment is checkpointed before
anything new is written.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from fractal_lba.audit.anchors import LEDGER_NAME, LocalAnchorFile, read_ledger
from fractal_lba.audit.checkpoint import ZERO_HASH, note_hash, parse_checkpoint
from fractal_lba.audit.entry import GENESIS_PREV_HASH
from fractal_lba.audit.errors import AuditError
from fractal_lba.audit.index import indexed_segments
from fractal_lba.audit.segments import (
    SegmentName,
    SegmentScan,
    list_segments,
    scan_segment,
    utc_iso,
)
from fractal_lba.fsutil import fsync_dir

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    """What :func:`recover` found and did (and what the writer did after it)."""

    torn_segment: str | None = None
    torn_bytes: int = 0
    torn_sidecar: str | None = None
    truncated_segment: str | None = None
    missing_lines: int = 0
    sealed_on_recovery: str | None = None
    ledger_torn_bytes: int = 0
    indexed: int = 0
    republished: int = 0


@dataclass
class Recovered:
    """Where the writer continues: chain tip, last checkpoint, the open segment (if any)."""

    tip: str = GENESIS_PREV_HASH
    prev_note: str = ZERO_HASH
    last_name: SegmentName | None = None
    open_segment: SegmentName | None = None
    scan: SegmentScan | None = None
    unanchored: list[tuple[str, str]] = field(default_factory=list)
    report: RecoveryReport = field(default_factory=RecoveryReport)


def recover(base: Path, ledger: LocalAnchorFile, now: float) -> Recovered:
    """Repair ``base`` after a crash (see the module docstring); raise AuditError when the
    directory is in a state no crash can produce (it needs a human)."""
    out = Recovered()
    rep = out.report
    led = read_ledger(ledger.path)
    if led.torn:
        rep.ledger_torn_bytes = len(led.torn)
        sidecar = _save_torn(base, LEDGER_NAME, led.torn)
        _truncate(ledger.path, led.good_bytes)
        ledger.append(_torn_record(LEDGER_NAME, led.good_bytes, led.torn, sidecar, now))
        log.warning(
            "audit recovery: torn last record of the anchors file moved aside",
            extra={"segment": LEDGER_NAME, "offset": led.good_bytes, "bytes": len(led.torn),
                   "sidecar": sidecar},
        )  # fmt: skip
    notes = [note for _, note in sorted(led.checkpoints.values())]
    if notes:
        last_cp = parse_checkpoint(notes[-1])
        out.tip, out.prev_note = last_cp.last, note_hash(notes[-1])
    segs = list_segments(base)
    out.last_name = segs[-1] if segs else None
    for s in [s for s in segs[:-1] if s.rel not in led.checkpoints]:
        if (base / s.rel).stat().st_size == 0:  # created, then its directory fsync failed
            (base / s.rel).unlink()
            segs.remove(s)
            log.warning("audit recovery: removed an empty unsealed segment",
                        extra={"segment": s.rel})  # fmt: skip
    unsealed = [s for s in segs if s.rel not in led.checkpoints]
    if len(unsealed) > 1 or (unsealed and unsealed[-1] != segs[-1]):
        raise AuditError(
            f"segments without checkpoint before the last one ({unsealed[0].rel}); "
            "run `flk worm verify` and investigate before restarting"
        )
    for s in segs:  # crash between checkpoint and chmod
        if s.rel in led.checkpoints and (base / s.rel).stat().st_mode & 0o222:
            os.chmod(base / s.rel, 0o444)
    if unsealed:
        out.open_segment = unsealed[0]
        out.scan = _recover_open_segment(base, ledger, unsealed[0], out.tip, rep, now)
    led = read_ledger(ledger.path)
    out.unanchored = [
        (seg, note)
        for seg, (_, note) in sorted(led.checkpoints.items(), key=lambda kv: kv[1][0])
        if seg not in led.anchored
    ]
    return out


def _recover_open_segment(
    base: Path, ledger: LocalAnchorFile, seg: SegmentName, tip: str, rep: RecoveryReport,
    now: float,
) -> SegmentScan:  # fmt: skip
    path = base / seg.rel
    if path.stat().st_mode & 0o200 == 0:
        os.chmod(path, 0o644)  # chmod'd but its checkpoint record was torn: reseal it
    data = path.read_bytes()
    scan = scan_segment(data, seg.rel, tip)
    recorded = indexed_segments(base).get(seg.rel)
    if scan.torn:
        rep.torn_segment, rep.torn_bytes = seg.rel, len(scan.torn)
        rep.torn_sidecar = _save_torn(base, seg.rel, scan.torn)
        _truncate(path, scan.good_bytes)
        ledger.append(_torn_record(seg.rel, scan.good_bytes, scan.torn, rep.torn_sidecar, now))
        log.warning(
            "audit recovery: torn last line of the open segment moved aside",
            extra={"segment": seg.rel, "offset": scan.good_bytes, "bytes": len(scan.torn),
                   "sidecar": rep.torn_sidecar},
        )  # fmt: skip
    if recorded is not None and recorded[0] > scan.entries:
        rep.truncated_segment, rep.missing_lines = seg.rel, recorded[0] - scan.entries
        ledger.append(
            {
                "type": "truncation",
                "segment": seg.rel,
                "lines": scan.entries,
                "expected_lines": recorded[0],
                "offset": scan.good_bytes,
                "expected_bytes": recorded[1],
                "time": utc_iso(now),
            }
        )
        log.error(
            "audit recovery: the open segment lost entries that were durable: it holds %d "
            "lines, %d were written (truncated or damaged); recorded in the anchors file, "
            "`flk worm verify` reports it",
            scan.entries, recorded[0],
            extra={"segment": seg.rel, "offset": scan.good_bytes,
                   "missing_lines": rep.missing_lines},
        )  # fmt: skip
    return scan


def _save_torn(base: Path, rel: str, torn: bytes) -> str:
    n = 0
    while (base / (side := f"{rel}.torn" + (f".{n}" if n else ""))).exists():
        n += 1
    with open(base / side, "xb") as fh:
        fh.write(torn)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(base / side, 0o444)
    fsync_dir((base / side).parent)
    return side


def _torn_record(rel: str, offset: int, torn: bytes, sidecar: str, now: float) -> dict[str, object]:
    return {
        "type": "recovery",
        "segment": rel,
        "offset": offset,
        "length": len(torn),
        "sha256": hashlib.sha256(torn).hexdigest(),
        "sidecar": sidecar,
        "time": utc_iso(now),
    }


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)
        os.fsync(fh.fileno())
