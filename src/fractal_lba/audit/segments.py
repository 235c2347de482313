"""Segment files: names, listing, the line codec and the fast segment scanner.

A segment is ``{base}/YYYY/MM/DD/HHmmss.jsonl`` (UTC time it was opened; ``HHmmss-N.jsonl``
when several open within one second or the clock stepped back). Each line is the canonical JSON
(``json.dumps(sort_keys=True, separators=(",", ":"))``, ASCII) of one :class:`AuditEntry`,
``entry_hash`` included, followed by ``\\n``.

The scanner checks every line without re-serialising it with ``json.dumps`` on the fast path:
a whole segment is decoded with msgspec into a struct whose fields are in sorted order and
re-encoded; if that re-encoding is byte-identical to the file, every byte is printable ASCII
(so no escapes) and no number is in a form where msgspec's float text can differ from
``repr`` (exponents, or below 1e-4), the lines are canonical and ``entry_hash`` is checked by
hashing each line with the ``,"entry_hash":"…"`` field sliced out. Anything else falls back to
the definition, line by line (decode, ``json.dumps``, compare), so a non-canonical line is
still reported.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from fractal_lba.audit.entry import (
    AuditEntry,
    chain_entry,
    compute_entry_hash,
)
from fractal_lba.audit.errors import AuditError, AuditVerifyError
from fractal_lba.canonical_json import canonical_json

SEGMENT_GLOB = "[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*.jsonl"
_SEGMENT_RE = re.compile(r"(\d{4})/(\d{2})/(\d{2})/(\d{2})(\d{2})(\d{2})(?:-([1-9]\d*))?\.jsonl")
_HASH_KEY = b',"entry_hash":"'
_PRINTABLE_NL = bytes(range(0x20, 0x7F)) + b"\n"
# Numbers msgspec spells differently from repr(): exponents, and fixed-notation values < 1e-4
# (msgspec writes 1e-05 as 0.00001). Checked against repr() over millions of random doubles.
_NOT_REPR_SAFE = re.compile(rb'":-?(?:[0-9][0-9.]*[eE]|0\.0000)')

# The same fields as AuditEntry, all required, declared in sorted (canonical JSON) order.
_CanonEntry: Any = msgspec.defstruct(
    "_CanonEntry",
    [(f.name, f.type) for f in sorted(msgspec.structs.fields(AuditEntry), key=lambda f: f.name)],
    forbid_unknown_fields=True,
    gc=False,  # millions of short-lived structs: GC tracking costs more than decoding
)
_CANON_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_CanonEntry)
_ENCODER = msgspec.json.Encoder()


class _RequestOnly(msgspec.Struct):
    request_id: str = ""


_REQ_DECODER = msgspec.json.Decoder(_RequestOnly)


@dataclass(frozen=True, order=True)
class SegmentName:
    """A segment path relative to the base dir, ordered by (date, time, suffix)."""

    key: tuple[int, int, int, int, int, int, int]
    rel: str = field(compare=False)

    @property
    def start(self) -> float:
        """Unix time (seconds) encoded in the name."""
        y, mo, d, h, mi, s, _ = self.key
        return float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))

    @property
    def date(self) -> str:
        """``YYYY-MM-DD`` of the segment."""
        y, mo, d = self.key[:3]
        return f"{y:04d}-{mo:02d}-{d:02d}"


def parse_segment_name(rel: str) -> SegmentName | None:
    """The :class:`SegmentName` of a relative path, or None if it is not a segment path."""
    m = _SEGMENT_RE.fullmatch(rel)
    if m is None:
        return None
    parts = [int(g) if g else 0 for g in m.groups()]
    return SegmentName((parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]), rel)


def make_segment_name(now: float, last: SegmentName | None) -> SegmentName:
    """Name for a new segment opened at ``now``: strictly after ``last`` (suffix on clash)."""
    t = time.gmtime(int(now))
    key = (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, 0)
    if last is not None and key[:6] <= last.key[:6]:
        key = (*last.key[:6], last.key[6] + 1)
    y, mo, d, h, mi, s, n = key
    rel = f"{y:04d}/{mo:02d}/{d:02d}/{h:02d}{mi:02d}{s:02d}" + (f"-{n}" if n else "") + ".jsonl"
    return SegmentName(key, rel)


def list_segments(base: Path) -> list[SegmentName]:
    """Every segment under ``base`` in log order."""
    out = []
    for p in base.glob(SEGMENT_GLOB):
        name = parse_segment_name(p.relative_to(base).as_posix())
        if name is not None:
            out.append(name)
    return sorted(out)


def utc_iso(ts: float) -> str:
    """RFC 3339 UTC with seconds (``2025-01-01T00:00:00Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))


# -- line codec ------------------------------------------------------------------------------
def check_entry(entry: AuditEntry) -> None:
    """Refuse entries that cannot be written as canonical JSON (non-finite floats)."""
    for name in ("D_hat", "coh_star", "r", "budget"):
        v = getattr(entry, name)
        if isinstance(v, float) and not math.isfinite(v):
            raise AuditError(f"audit entry field {name} is not finite")


def encode_entry(entry: AuditEntry, prev_hash: str) -> tuple[AuditEntry, bytes]:
    """Chain ``entry`` after ``prev_hash``; return it with its hashes and its line (``\\n``)."""
    h, line = chain_entry(entry, prev_hash)
    return msgspec.structs.replace(entry, prev_hash=prev_hash, entry_hash=h), line


# -- scanning ----------------------------------------------------------------------------------
@dataclass
class SegmentScan:
    """Result of scanning one segment's bytes."""

    entries: int = 0
    first_prev: str | None = None
    last_hash: str | None = None
    leaves: list[bytes] = field(default_factory=list)  # raw 32-byte entry hashes, in order
    good_bytes: int = 0  # length of the complete lines
    torn: bytes = b""  # bytes after the last newline


def check_line(line: bytes, rel: str, lineno: int) -> tuple[str, str]:
    """Check one line (no newline) against the definition: valid JSON object, canonical form,
    schema, entry_hash; return (prev_hash, entry_hash) or raise AuditVerifyError."""
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError:
        raise AuditVerifyError("not valid JSON", segment=rel, line=lineno) from None
    if not isinstance(obj, dict):
        raise AuditVerifyError("not a JSON object", segment=rel, line=lineno)
    try:
        canon = canonical_json(obj)
    except (TypeError, ValueError):
        canon = b""
    if canon != line:
        raise AuditVerifyError("line is not canonical JSON", segment=rel, line=lineno)
    try:
        entry = msgspec.convert(obj, AuditEntry)
    except msgspec.ValidationError as exc:
        raise AuditVerifyError(f"schema: {exc}", segment=rel, line=lineno) from None
    if compute_entry_hash(obj) != entry.entry_hash:
        raise AuditVerifyError("entry_hash does not match content", segment=rel, line=lineno)
    return entry.prev_hash, entry.entry_hash


def _fast_entries(body: bytes) -> list[Any] | None:
    """Decoded entries when every line of ``body`` is provably canonical, else None."""
    if body.translate(None, _PRINTABLE_NL) or _NOT_REPR_SAFE.search(body) is not None:
        return None
    try:
        structs = _CANON_DECODER.decode_lines(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return structs if _ENCODER.encode_lines(structs) == body else None


def scan_segment(
    data: bytes, rel: str, expected_prev: str | None, *, first_line: int = 1
) -> SegmentScan:
    """Check every complete line of ``data`` (hash, canonical form, chain); fail closed.

    ``expected_prev`` is the entry_hash the first line must chain to (None: not checked).
    Raises :class:`AuditVerifyError` naming the first broken line. Bytes after the last newline
    are returned in ``torn``; the caller decides whether that is allowed.
    """
    end = data.rfind(b"\n") + 1
    body = data[:end]
    res = SegmentScan(good_bytes=end, torn=data[end:])
    if not body:
        return res
    lines = body.split(b"\n")
    lines.pop()
    structs = _fast_entries(body)
    if structs is not None and len(structs) != len(lines):
        structs = None  # an empty line: let the slow path name it
    sha = hashlib.sha256
    prev = expected_prev
    leaves = res.leaves
    for i, line in enumerate(lines):
        if structs is not None:
            s = structs[i]
            p, h = s.prev_hash, s.entry_hash
            k = line.find(_HASH_KEY)
            if k < 0 or sha(line[:k] + line[k + 80 :]).hexdigest() != h:
                raise AuditVerifyError(
                    "entry_hash does not match content", segment=rel, line=first_line + i
                )
        else:
            p, h = check_line(line, rel, first_line + i)
        if prev is not None and p != prev:
            what = "prev_hash does not match the previous entry's entry_hash"
            if i == 0:
                what = "prev_hash does not link to the previous segment's last entry"
            raise AuditVerifyError(what, segment=rel, line=first_line + i)
        if i == 0:
            res.first_prev = p
        leaves.append(bytes.fromhex(h))
        prev = h
    res.entries = len(lines)
    res.last_hash = prev
    return res


def iter_lines(path: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line without newline) of each complete line from ``start``."""
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    off = start
    for line in data.split(b"\n")[:-1]:
        yield off, line
        off += len(line) + 1


def request_ids(data: bytes) -> Iterator[str]:
    """request_id of every complete line of a segment (lines that do not parse are skipped)."""
    for line in data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]:
        try:
            yield _REQ_DECODER.decode(line).request_id
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue


def decode_line(line: bytes) -> dict[str, Any]:
    """A line as a plain dict (raises AuditError when it is not a JSON object)."""
    try:
        obj = json.loads(line)
    except ValueError:
        raise AuditError("audit line is not valid JSON") from None
    if not isinstance(obj, dict):
        raise AuditError("audit line is not a JSON object")
    return obj
