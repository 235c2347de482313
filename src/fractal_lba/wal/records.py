"""WAL segment and record framing (pure: bytes in, bytes out).

Format 2 (every segment written now), little endian::

    segment header (32 bytes): b"FLKWAL2\\n" | u64 first_lsn | salt (8 random bytes)
                               | u32 flags | u32 crc32(the 28 bytes before it)
    record:                    u32 crc | u32 length | u64 lsn | payload
                               crc = crc32(salt | length | lsn | payload)

A record names its own lsn, and its checksum covers the length, the lsn and a salt that
only this segment's header holds. So a reader can tell, at any offset, whether a real record
of this segment starts there: a request body that happens to contain bytes shaped like a
record (the WAL stores raw bodies) cannot pass, since its author never saw the salt.

**Torn tail versus corruption.** Scanning stops at the first record that does not check
(short header, length past the end, wrong lsn, checksum mismatch). :func:`resync` then looks
for the next offset where a valid record with a later lsn starts. If there is none, the bad
bytes are the unfinished last write of a crash: a *torn tail*, which only the last segment
may have and which open cuts off (and logs). If there is one, records were lost in the
middle: *corruption*, never cut silently (``flk wal check`` / ``flk wal salvage``).

Format 1 (legacy, read only, no header): ``u32 length | u32 crc32(payload) | payload``,
record ``i`` has lsn ``first_lsn + i`` (from the file name). :func:`frame` and
:func:`frame_many` write it (tests build legacy segments with them).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

MAGIC = b"FLKWAL2\n"
SEGMENT_HEADER = struct.Struct("<8sQ8sII")
RECORD_HEADER = struct.Struct("<IIQ")
LEGACY_HEADER = struct.Struct("<II")
HEADER = LEGACY_HEADER
"""Legacy name of :data:`LEGACY_HEADER`."""
MAX_RECORD = 16 * 1024 * 1024
FLAG_SALVAGED = 1
"""Set on a segment that ``flk wal salvage`` rewrote: its lsns may have gaps (lost records
were reported then), so a gap is not reported again."""

_LENLSN = struct.Struct("<IQ")
_CRC = struct.Struct("<I")
_RESYNC_CHUNK = 1 << 20


@dataclass(frozen=True)
class SegmentHeader:
    """The 32-byte header of a format-2 segment."""

    first_lsn: int
    salt: bytes
    flags: int = 0

    @property
    def seed(self) -> int:
        """crc32 state after the salt: every record's checksum continues from it."""
        return zlib.crc32(self.salt)

    def encode(self) -> bytes:
        """The header bytes."""
        head = SEGMENT_HEADER.pack(MAGIC, self.first_lsn, self.salt, self.flags, 0)[:-4]
        return head + _CRC.pack(zlib.crc32(head))

    @staticmethod
    def new(first_lsn: int, flags: int = 0) -> SegmentHeader:
        """A header with a fresh random salt."""
        return SegmentHeader(first_lsn, os.urandom(8), flags)


def decode_header(buf: bytes | memoryview) -> tuple[SegmentHeader | None, bool]:
    """(header, intact) of a segment's bytes; ``(None, True)`` for a legacy segment.

    A damaged header still returns its fields (its salt may be fine) with ``intact`` False.
    A segment shorter than the header that starts like one is ``(None, False)``.
    """
    size = SEGMENT_HEADER.size
    if len(buf) < size:
        return None, not (len(buf) and MAGIC.startswith(bytes(buf[: len(MAGIC)])))
    magic, first, salt, flags, crc = SEGMENT_HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        # A legacy record starts with its length, which is never as large as the magic.
        if LEGACY_HEADER.unpack_from(buf, 0)[0] <= MAX_RECORD:
            return None, True
        return SegmentHeader(first, salt, flags), False
    return SegmentHeader(first, salt, flags), zlib.crc32(bytes(buf[: size - 4])) == crc


def frame_records(header: SegmentHeader, first_lsn: int, payloads: Sequence[bytes]) -> bytes:
    """Format-2 records for ``payloads`` with lsns from ``first_lsn``, as one buffer."""
    seed, crc, lenlsn, pack_crc = header.seed, zlib.crc32, _LENLSN.pack, _CRC.pack
    parts: list[bytes] = []
    append = parts.append
    for lsn, p in enumerate(payloads, first_lsn):
        head = lenlsn(len(p), lsn)
        append(pack_crc(crc(p, crc(head, seed))))
        append(head)
        append(p)
    return b"".join(parts)


def frame(payload: bytes) -> bytes:
    """One legacy (format 1) record."""
    return LEGACY_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def frame_many(payloads: Iterable[bytes]) -> bytes:
    """Several legacy (format 1) records as one buffer."""
    pack, crc = LEGACY_HEADER.pack, zlib.crc32
    return b"".join(pack(len(p), crc(p)) + p for p in payloads)


@dataclass
class Scan:
    """The valid prefix of a segment: records (lsn, payload) and where the prefix ends."""

    records: list[tuple[int, bytes]]
    end: int
    """Offset where the valid prefix ends (== file size when the segment is intact)."""
    header: SegmentHeader | None
    header_intact: bool

    @property
    def legacy(self) -> bool:
        """A format-1 segment (no header)."""
        return self.header is None and self.header_intact


def read_records(
    buf: bytes | memoryview,
    first_lsn: int,
    *,
    start: int | None = None,
    expect: int | None = None,
    header: SegmentHeader | None = None,
) -> Scan:
    """Decode the valid prefix of a segment (either format) from ``start``.

    ``first_lsn`` comes from the file name; ``expect`` is the lsn the first record must
    have (default: the next in sequence). In a salvaged segment, lsns need only increase.
    """
    view = memoryview(buf)
    if header is None:
        header, intact = decode_header(view)
    else:
        intact = True
    if header is None:
        if not intact:
            return Scan([], 0, None, False)
        return _read_legacy(view, first_lsn, 0 if start is None else start)
    pos = SEGMENT_HEADER.size if start is None else start
    if not intact and start is None:
        return Scan([], 0, header, False)
    nxt = header.first_lsn if expect is None else expect
    gaps = bool(header.flags & FLAG_SALVAGED)
    out: list[tuple[int, bytes]] = []
    end = len(view)
    unpack, crc, seed, hsize = RECORD_HEADER.unpack_from, zlib.crc32, header.seed, 16
    while pos + hsize <= end:
        checksum, length, lsn = unpack(view, pos)
        stop = pos + hsize + length
        if length > MAX_RECORD or stop > end or (lsn != nxt if not gaps else lsn < nxt):
            break
        if crc(view[pos + 4 : stop], seed) != checksum:
            break
        out.append((lsn, bytes(view[pos + hsize : stop])))
        pos, nxt = stop, lsn + 1
    return Scan(out, pos, header, intact)


def _read_legacy(view: memoryview, first_lsn: int, pos: int) -> Scan:
    out: list[tuple[int, bytes]] = []
    end = len(view)
    unpack, crc, hsize = LEGACY_HEADER.unpack_from, zlib.crc32, LEGACY_HEADER.size
    lsn = first_lsn
    while pos + hsize <= end:
        length, checksum = unpack(view, pos)
        start = pos + hsize
        if length > MAX_RECORD or start + length > end:
            break
        payload = bytes(view[start : start + length])
        if crc(payload) != checksum:
            break
        out.append((lsn, payload))
        pos, lsn = start + length, lsn + 1
    return Scan(out, pos, None, True)


def resync(
    buf: bytes | memoryview, bad: int, header: SegmentHeader | None, after_lsn: int
) -> tuple[int, int] | None:
    """The first offset after ``bad`` where a valid record starts, and its lsn; else None.

    Format 2: the record must check against this segment's salt and have an lsn above
    ``after_lsn`` and at most one per 16 skipped bytes beyond it (a record takes at least 16).
    Legacy: any non-empty record whose checksum matches (its lsn is unknown: returned as -1).
    Candidates are filtered with numpy over every offset, then checked one by one.
    """
    view = memoryview(buf)
    end = len(view)
    hsize = RECORD_HEADER.size if header is not None else LEGACY_HEADER.size
    arr = np.frombuffer(view, dtype=np.uint8)
    pos = bad + 1
    while pos + hsize <= end:
        n = min(_RESYNC_CHUNK, end - hsize - pos + 1)
        offsets = np.arange(pos, pos + n, dtype=np.int64)
        if header is not None:
            length = _field(arr, pos + 4, n, "<u4")
            lsn = _field(arr, pos + 8, n, "<u8")
            most = after_lsn + 2 + (offsets - bad) // hsize
            mask = (lsn > after_lsn) & (lsn <= most.astype(np.uint64))
            mask &= length <= np.minimum(MAX_RECORD, end - offsets - hsize)
        else:
            length = _field(arr, pos, n, "<u4")
            mask = (length > 0) & (length <= np.minimum(MAX_RECORD, end - offsets - hsize))
        for off in (pos + np.flatnonzero(mask)).tolist():
            found = _check_at(view, off, header)
            if found is not None:
                return off, found
        pos += n
    return None


def _field(arr: np.ndarray, at: int, n: int, dtype: str) -> np.ndarray:
    """The (unaligned) integer of ``dtype`` starting at each of ``n`` offsets from ``at``."""
    width = np.dtype(dtype).itemsize
    window = np.lib.stride_tricks.as_strided(arr[at:], shape=(n, width), strides=(1, 1))
    return np.ascontiguousarray(window).view(dtype).reshape(n)


def _check_at(view: memoryview, off: int, header: SegmentHeader | None) -> int | None:
    if header is None:
        length, checksum = LEGACY_HEADER.unpack_from(view, off)
        start = off + LEGACY_HEADER.size
        return -1 if zlib.crc32(view[start : start + length]) == checksum else None
    checksum, length, lsn = RECORD_HEADER.unpack_from(view, off)
    stop = off + RECORD_HEADER.size + length
    return lsn if zlib.crc32(view[off + 4 : stop], header.seed) == checksum else None


def scan(buf: bytes | memoryview) -> tuple[list[bytes], int]:
    """Payloads of a segment's valid prefix (either format) and the offset where it ends.

    The reader for tools that only look (status, tests); :class:`~fractal_lba.wal.WalLog`
    and :func:`~fractal_lba.wal.check.inspect_segment` also tell a torn tail from corruption.
    """
    header, _ = decode_header(buf)
    result = read_records(buf, header.first_lsn if header is not None else 1)
    return [p for _, p in result.records], result.end
