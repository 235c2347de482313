"""Inspect WAL segments for damage, and salvage damaged ones (``flk wal check|salvage``).

:func:`inspect_segment` is the one place that decides what a segment's bytes mean: intact,
a *torn tail* (an incomplete last write, allowed only at the end of the last segment, cut on
open) or *corruption* (a bad record followed by valid ones, any damage in a sealed segment,
records missing at the end of a sealed segment). :class:`~fractal_lba.wal.WalLog` opens
through it; ``flk wal check`` prints it.

:func:`salvage` rewrites each corrupt segment from every intact record it still holds
(found by resynchronising after each damaged region, see :mod:`fractal_lba.wal.records`),
in lsn order under the same name, and keeps the original as ``<name>.damaged``. It reports
what it recovered and which lsns are lost; nothing is dropped without a report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fractal_lba.fsutil import PRIVATE_FILE_MODE, fsync_dir
from fractal_lba.wal.records import (
    FLAG_SALVAGED,
    SegmentHeader,
    frame_records,
    read_records,
    resync,
)

SUFFIX = ".wal"
DAMAGED_SUFFIX = ".damaged"


@dataclass(frozen=True)
class Damage:
    """Where and why a segment is damaged."""

    segment: str
    offset: int
    kind: Literal["torn_tail", "corrupt"]
    reason: str

    def describe(self) -> str:
        """One line for logs and the CLI."""
        what = "torn tail" if self.kind == "torn_tail" else "corrupt"
        return f"segment {self.segment} {what} at byte {self.offset}: {self.reason}"


@dataclass
class SegmentReport:
    """What one segment holds: its valid prefix and its damage, if any."""

    path: Path
    first_lsn: int
    legacy: bool
    header: SegmentHeader | None
    records: list[tuple[int, bytes]]
    end: int
    """End of the valid prefix."""
    size: int
    damage: Damage | None = None

    @property
    def name(self) -> str:
        """File name of the segment."""
        return self.path.name

    @property
    def next_lsn(self) -> int:
        """The lsn after the last valid record (the first lsn of an empty segment)."""
        return self.records[-1][0] + 1 if self.records else self.first_lsn


def segment_first_lsn(path: Path) -> int:
    """``0000000000000042.wal`` -> 42."""
    return int(path.name[: -len(SUFFIX)])


def segment_files(directory: Path) -> list[Path]:
    """Segment files of a WAL directory in lsn order (``*.damaged`` copies are not)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))


def inspect_segment(
    path: Path, data: bytes, *, sealed: bool, next_first: int | None = None
) -> SegmentReport:
    """Decode ``data`` (the bytes of segment ``path``) and classify any damage.

    ``sealed``: a later segment exists (a sealed segment may have no torn tail);
    ``next_first``: that segment's first lsn (records missing before it are corruption).
    """
    first = segment_first_lsn(path)
    sc = read_records(data, first)
    rep = SegmentReport(path, first, sc.legacy, sc.header, sc.records, sc.end, len(data))

    def damaged(offset: int, kind: Literal["torn_tail", "corrupt"], reason: str) -> SegmentReport:
        rep.damage = Damage(path.name, offset, kind, reason)
        return rep

    if not sc.header_intact:
        if not sealed and len(data) < 32:
            return damaged(0, "torn_tail", "segment header never finished")
        return damaged(0, "corrupt", "segment header does not check")
    if sc.header is not None and sc.header.first_lsn != first:
        return damaged(0, "corrupt", f"header names lsn {sc.header.first_lsn}, not {first}")
    if sc.end < len(data):
        after = rep.next_lsn - 1
        found = resync(data, sc.end, sc.header, after)
        if found is not None:
            return damaged(
                sc.end,
                "corrupt",
                f"record {after + 1} does not check and valid records follow at byte {found[0]}",
            )
        if sealed:
            return damaged(sc.end, "corrupt", f"record {after + 1} does not check")
        return damaged(
            sc.end, "torn_tail", f"{len(data) - sc.end} bytes of an unfinished last write"
        )
    salvaged = sc.header is not None and sc.header.flags & FLAG_SALVAGED
    if next_first is not None and not salvaged and rep.next_lsn != next_first:
        missing = next_first - rep.next_lsn
        return damaged(
            sc.end,
            "corrupt",
            f"ends before lsn {rep.next_lsn} but the next segment starts at {next_first}"
            + (f" ({missing} records missing)" if missing > 0 else " (lsns overlap)"),
        )
    return rep


def inspect_directory(directory: Path) -> list[SegmentReport]:
    """Every segment of ``directory``, inspected in order (read-only, no lock)."""
    segs = segment_files(directory)
    out: list[SegmentReport] = []
    for i, seg in enumerate(segs):
        nxt = segment_first_lsn(segs[i + 1]) if i + 1 < len(segs) else None
        out.append(inspect_segment(seg, seg.read_bytes(), sealed=nxt is not None, next_first=nxt))
    return out


@dataclass
class SalvagedSegment:
    """What :func:`salvage` did with one corrupt segment."""

    segment: str
    damage: Damage
    kept_as: str
    recovered: int
    lost: list[tuple[int, int]] = field(default_factory=list)
    """lsn ranges (inclusive) that are gone: they were in the damaged regions."""
    unreadable_bytes: int = 0
    """Bytes that held no recoverable record (damaged regions, an unfinished tail)."""
    unplaced: int = 0
    """Legacy segments only: intact records found after the damage whose lsn the legacy
    format cannot tell; they stay in the ``.damaged`` copy."""
    tail_unknown: bool = False
    """The last segment: records after the last recovered one may have been lost unseen."""

    def describe(self) -> str:
        """One line for the CLI."""
        lost = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.lost) or "none"
        parts = [
            f"{self.segment}: recovered {self.recovered} records, lost lsns {lost}",
            f"{self.unreadable_bytes} unreadable bytes",
        ]
        if self.unplaced:
            parts.append(f"{self.unplaced} legacy records after the damage not placed")
        if self.tail_unknown:
            parts.append("records after the last recovered one cannot be counted")
        return "; ".join(parts) + f" (original kept as {self.kept_as})"


def salvage(directory: Path) -> list[SalvagedSegment]:
    """Rewrite every corrupt segment of ``directory`` from its intact records.

    The caller holds the directory's lock (no writer may run). Torn tails are left alone:
    opening the log cuts them (and logs it).
    """
    reports = inspect_directory(directory)
    out: list[SalvagedSegment] = []
    for i, rep in enumerate(reports):
        if rep.damage is None or rep.damage.kind != "corrupt":
            continue
        nxt = reports[i + 1].first_lsn if i + 1 < len(reports) else None
        out.append(_salvage_segment(rep, rep.path.read_bytes(), nxt))
    return out


def _salvage_segment(rep: SegmentReport, data: bytes, next_first: int | None) -> SalvagedSegment:
    assert rep.damage is not None
    records, unreadable, unplaced = _intact_records(rep, data)
    lost: list[tuple[int, int]] = []
    expect = rep.first_lsn
    for lsn, _ in records:
        if lsn > expect:
            lost.append((expect, lsn - 1))
        expect = lsn + 1
    if next_first is not None and next_first > expect:
        lost.append((expect, next_first - 1))
    header = SegmentHeader.new(rep.first_lsn, FLAG_SALVAGED)
    body = b"".join(frame_records(header, lsn, [p]) for lsn, p in records)
    kept = _keep_damaged(rep.path)
    tmp = rep.path.with_name(f".{rep.path.name}.salvage")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    try:
        view = memoryview(header.encode() + body)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, rep.path)
    fsync_dir(rep.path.parent)
    return SalvagedSegment(
        rep.path.name,
        rep.damage,
        kept.name,
        len(records),
        lost,
        unreadable,
        unplaced,
        tail_unknown=next_first is None,
    )


def _intact_records(rep: SegmentReport, data: bytes) -> tuple[list[tuple[int, bytes]], int, int]:
    """(records in lsn order, unreadable bytes, legacy records that cannot be placed).

    After each damaged region the scan resynchronises on the next valid record and goes on.
    A damaged header is tried with the salt it still holds.
    """
    records = list(rep.records)
    header = None if rep.legacy else rep.header
    pos = max(rep.end, 0 if header is None else 32)
    after = records[-1][0] if records else rep.first_lsn - 1
    unreadable = pos - rep.end
    unplaced = 0
    while pos < len(data):
        found = resync(data, pos - 1, header, after)
        if found is None:
            unreadable += len(data) - pos
            break
        off, lsn = found
        unreadable += off - pos
        if header is None:
            sc = read_records(data, 0, start=off)
            unplaced += len(sc.records)
        else:
            sc = read_records(data, rep.first_lsn, start=off, expect=lsn, header=header)
            records.extend(sc.records)
            after = sc.records[-1][0]
        pos = max(sc.end, off + 1)
    return records, unreadable, unplaced


def _keep_damaged(path: Path) -> Path:
    """Hard-link ``path`` to ``<name>.damaged`` (``.damaged.N`` if taken); return the link."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    n = 1
    while target.exists():
        if os.path.samefile(target, path):  # an interrupted earlier salvage of this file
            return target
        target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}.{n}")
        n += 1
    os.link(path, target)
    return target
