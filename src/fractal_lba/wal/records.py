"""WAL record framing (pure): ``u32 length | u32 crc32(payload) | payload``, little endian.

A torn tail (short header, short payload or checksum mismatch at the end) is detected by
:func:`scan`, which returns the offset where the valid prefix ends.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

HEADER = struct.Struct("<II")
MAX_RECORD = 16 * 1024 * 1024


def frame(payload: bytes) -> bytes:
    """One framed record."""
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def frame_many(payloads: Iterable[bytes]) -> bytes:
    """Several framed records as one buffer (one write() for a group commit)."""
    pack, crc = HEADER.pack, zlib.crc32
    return b"".join(pack(len(p), crc(p)) + p for p in payloads)


def scan(buf: bytes | memoryview) -> tuple[list[bytes], int]:
    """Decode records from ``buf``; stop at the first torn or corrupt one.

    Returns the payloads and the end offset of the valid prefix (== len(buf) when intact).
    """
    out: list[bytes] = []
    view = memoryview(buf)
    pos, end = 0, len(view)
    unpack, crc, hsize = HEADER.unpack_from, zlib.crc32, HEADER.size
    while pos + hsize <= end:
        length, checksum = unpack(view, pos)
        start = pos + hsize
        if length > MAX_RECORD or start + length > end:
            break
        payload = bytes(view[start : start + length])
        if crc(payload) != checksum:
            break
        out.append(payload)
        pos = start + length
    return out, pos
