"""``verify_log``: re-derive every hash, chain link, segment root and checkpoint; fail closed.

Order of checks (the first failure is raised as :class:`AuditVerifyError`):

1. the anchors file: each checkpoint parses, is signed by the audit key, links to the previous
   checkpoint (``prev``) and continues its entry chain (``chain``); recovery sidecars match;
   no crash recovery recorded lost entries (``truncation`` records);
2. the segment set: every checkpointed segment exists (or was pruned), only the last segment
   may lack a checkpoint, segment order equals checkpoint order;
3. every selected segment, line by line: canonical JSON, ``entry_hash``, ``prev_hash`` links
   (the first line links to the previous segment's signed last hash), then entry count, chain
   ends and RFC 6962 root against the segment's checkpoint; the open segment holds at least as
   many lines as the lineage index recorded durable in it (a cut is not a torn tail).

Segments are scanned in worker processes when the work is large enough to pay for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fractal_lba.audit.anchors import LEDGER_NAME, read_ledger
from fractal_lba.audit.checkpoint import (
    ZERO_HASH,
    Checkpoint,
    note_hash,
    verify_checkpoint,
)
from fractal_lba.audit.entry import GENESIS_PREV_HASH
from fractal_lba.audit.errors import AuditError, AuditVerifyError, CheckpointError
from fractal_lba.audit.index import indexed_segments
from fractal_lba.audit.segments import (
    SegmentName,
    list_segments,
    parse_segment_name,
    scan_segment,
)
from fractal_lba.merkle import merkle_tree_hash

PARALLEL_MIN_BYTES = 64 * 1024 * 1024


@dataclass
class VerifyReport:
    """Counts of what was verified (the log is intact if this is returned)."""

    entries: int = 0
    segments: int = 0
    sealed_segments: int = 0
    open_segment: str | None = None
    checkpoints: int = 0
    pruned_segments: int = 0
    recoveries: int = 0
    unanchored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _ScanResult:
    rel: str
    entries: int
    first_prev: str | None
    last_hash: str | None
    root: bytes
    torn: int
    error: tuple[str, int | None] | None


def _scan_file(base: str, rel: str, expected_prev: str) -> _ScanResult:
    try:
        data = (Path(base) / rel).read_bytes()
        scan = scan_segment(data, rel, expected_prev)
    except AuditVerifyError as exc:
        return _ScanResult(rel, 0, None, None, b"", 0, (exc.what, exc.line))
    except OSError as exc:
        return _ScanResult(rel, 0, None, None, b"", 0, (f"cannot read: {exc.strerror}", None))
    root = merkle_tree_hash(scan.leaves)
    return _ScanResult(
        rel, scan.entries, scan.first_prev, scan.last_hash, root, len(scan.torn), None
    )


def _fail(what: str, segment: str | None, line: int | None = None) -> AuditVerifyError:
    return AuditVerifyError(what, segment=segment, line=line)


def verify_log(
    base_dir: Path,
    public_key: Ed25519PublicKey | None,
    *,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    allow_unsigned: bool = False,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """Verify the log under ``base_dir``; raise AuditVerifyError at the first break.

    ``date_from``/``date_to`` (inclusive, UTC) select the segments whose lines are re-hashed;
    the checkpoint chain is always verified whole, so a selected range still links to the
    signed history before it. ``progress`` is called with the entry count of each scanned
    segment. ``allow_unsigned`` (unsafe) accepts checkpoints written without a key.
    """
    base = Path(base_dir)
    if not base.is_dir():
        raise AuditError(f"audit directory {base} does not exist")
    rep = VerifyReport()
    led = read_ledger(base / LEDGER_NAME)
    if led.torn:
        rep.warnings.append(
            f"{LEDGER_NAME} ends with an incomplete record ({len(led.torn)} bytes); "
            "the writer recovers it on its next start"
        )
    # 1. checkpoint chain
    cps: dict[str, Checkpoint] = {}
    order: list[str] = []
    prev_note, prev_last = ZERO_HASH, GENESIS_PREV_HASH
    for seg, (ln, note) in sorted(led.checkpoints.items(), key=lambda kv: kv[1][0]):
        try:
            cp = verify_checkpoint(note, public_key, allow_unsigned=allow_unsigned)
        except CheckpointError as exc:
            raise _fail(f"checkpoint of {seg}: {exc}", LEDGER_NAME, ln) from None
        if cp.segment != seg:
            raise _fail(
                f"checkpoint names segment {cp.segment}, record says {seg}", LEDGER_NAME, ln
            )
        if cp.prev != prev_note:
            raise _fail(
                f"checkpoint of {seg} does not link to the previous checkpoint "
                "(a checkpoint was removed, altered or reordered)",
                LEDGER_NAME,
                ln,
            )
        if cp.first_prev != prev_last:
            raise _fail(
                f"checkpoint of {seg} does not continue the entry chain of the previous one",
                LEDGER_NAME,
                ln,
            )
        if order and _key(seg) <= _key(order[-1]):
            raise _fail(f"checkpoint of {seg} is out of segment order", LEDGER_NAME, ln)
        cps[seg] = cp
        order.append(seg)
        prev_note, prev_last = note_hash(note), cp.last
    rep.checkpoints = len(order)
    rep.unanchored = [s for s in order if s not in led.anchored]
    pruned = led.pruned
    for ln, rec in led.prunes:
        segs = rec.get("segments") or []
        if not segs or any(s not in cps for s in segs):
            raise _fail("prune record names a segment without checkpoint", LEDGER_NAME, ln)
        if rec.get("last_entry_hash") != cps[segs[-1]].last:
            raise _fail("prune record's last_entry_hash does not match", LEDGER_NAME, ln)
    for ln, rec in led.truncations:
        lost = int(rec.get("expected_lines", 0)) - int(rec.get("lines", 0))
        raise _fail(
            f"{lost} durable entries were lost from {rec.get('segment')} before a restart: it "
            f"held {rec.get('lines')} of {rec.get('expected_lines')} lines (truncated or "
            "damaged; recorded by crash recovery)",
            LEDGER_NAME,
            ln,
        )
    for ln, rec in led.recoveries:
        rel, side = str(rec.get("segment")), str(rec.get("sidecar"))
        rep.recoveries += 1
        if rel in pruned:
            continue
        try:
            torn = (base / side).read_bytes()
        except OSError:
            raise _fail(f"torn-line sidecar {side} is missing", LEDGER_NAME, ln) from None
        if hashlib.sha256(torn).hexdigest() != rec.get("sha256") or len(torn) != rec.get("length"):
            raise _fail(f"torn-line sidecar {side} does not match its record", LEDGER_NAME, ln)

    # 2. segment set
    files = list_segments(base)
    present = {s.rel for s in files}
    for seg in order:
        if seg not in present:
            if seg in pruned:
                rep.pruned_segments += 1
                continue
            raise _fail("sealed segment is missing (deleted, not pruned)", seg)
        if seg in pruned:
            rep.warnings.append(f"{seg} was pruned but is still present")
    last_sealed = _key(order[-1]) if order else None
    open_seg: SegmentName | None = None
    for s in files:
        if s.rel in cps:
            continue
        if open_seg is not None or (last_sealed is not None and s.key <= last_sealed):
            raise _fail("segment has no checkpoint but is not the open (last) segment", s.rel)
        open_seg = s
    rep.open_segment = open_seg.rel if open_seg is not None else None

    # 3. segment contents
    expected_prev: dict[str, str] = {}
    prev = GENESIS_PREV_HASH
    for seg in order:
        expected_prev[seg] = prev
        prev = cps[seg].last
    if open_seg is not None:
        expected_prev[open_seg.rel] = prev
    selected = [s for s in files if _in_range(s, date_from, date_to) and s.rel not in pruned]
    jobs = [(str(base), s.rel, expected_prev[s.rel]) for s in selected]
    indexed = indexed_segments(base) if open_seg is not None else {}
    for res in _run(jobs, base, progress, workers):
        seg_cp = cps.get(res.rel)
        if res.error is not None:
            raise _fail(res.error[0], res.rel, res.error[1])
        rep.entries += res.entries
        rep.segments += 1
        if seg_cp is None:
            recorded = indexed.get(res.rel)
            if recorded is not None and recorded[0] > res.entries:
                raise _fail(
                    f"open segment holds {res.entries} entries, {recorded[0]} were written "
                    f"(lineage index): {recorded[0] - res.entries} entries missing from here on "
                    "(truncated or deleted)",
                    res.rel,
                    res.entries + 1,
                )
            if res.torn:
                rep.warnings.append(
                    f"{res.rel} (open) ends with an incomplete line of {res.torn} bytes "
                    "(a write in progress, or a crash the writer recovers on start)"
                )
            continue
        _check_sealed(res, seg_cp, base)
        rep.sealed_segments += 1
    return rep


def _check_sealed(res: _ScanResult, cp: Checkpoint, base: Path) -> None:
    if res.torn:
        raise _fail(
            "incomplete last line in a sealed segment (truncated)", res.rel, res.entries + 1
        )
    if res.entries < cp.size:
        raise _fail(
            f"segment has {res.entries} entries, its checkpoint {cp.size}: entries from here on "
            "are missing (truncated or deleted)",
            res.rel,
            res.entries + 1,
        )
    if res.entries > cp.size:
        raise _fail(
            f"entries beyond the checkpointed tree of {cp.size} (appended after sealing)",
            res.rel,
            cp.size + 1,
        )
    if res.root != cp.root or res.last_hash != cp.last:
        raise _fail(
            "Merkle root does not match the signed checkpoint: the segment was rewritten "
            "(entries re-hashed consistently, but not the ones that were anchored)",
            res.rel,
        )
    if (base / res.rel).stat().st_mode & 0o222:
        raise _fail("sealed segment is writable (expected mode 0444)", res.rel)


def _run(
    jobs: list[tuple[str, str, str]],
    base: Path,
    progress: Callable[[int], None] | None,
    workers: int | None,
) -> list[_ScanResult]:
    total = sum((base / rel).stat().st_size for _, rel, _ in jobs)
    n = workers if workers is not None else min(os.cpu_count() or 1, len(jobs))
    results: list[_ScanResult] = []
    if n <= 1 or total < PARALLEL_MIN_BYTES:
        for job in jobs:
            res = _scan_file(*job)
            results.append(res)
            if progress is not None:
                progress(res.entries)
            if res.error is not None:
                break
        return results
    with ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_scan_file, *job) for job in jobs]
        for fut in futures:  # in log order: the first error reported is the earliest
            res = fut.result()
            results.append(res)
            if progress is not None:
                progress(res.entries)
            if res.error is not None:
                for f in futures:
                    f.cancel()
                break
    return results


def _key(rel: str) -> tuple[int, ...]:
    name = parse_segment_name(rel)
    if name is None:
        raise _fail("checkpoint names a path that is not a segment", rel)
    return name.key


def _in_range(seg: SegmentName, lo: dt.date | None, hi: dt.date | None) -> bool:
    day = dt.date(*seg.key[:3])
    return (lo is None or day >= lo) and (hi is None or day <= hi)
