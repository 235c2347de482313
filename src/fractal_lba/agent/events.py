"""Event files -> arrays: CSV (``timestamp,x,y,z`` header) or JSONL (objects with those keys).

The fast paths hand the whole file to C parsers (``np.loadtxt``, one msgspec call); only when
they refuse does a line-by-line pass run, to name the first bad line. Error messages never
echo event values or unknown keys.
"""

from __future__ import annotations

import io
import itertools
import math
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from fractal_lba.agent.errors import EventFileError

Format = Literal["csv", "jsonl"]
COLUMNS: tuple[str, ...] = ("timestamp", "x", "y", "z")
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class Events:
    """Parsed events in file order: ``timestamps`` (n,) and ``points`` (n, 3), all finite."""

    timestamps: npt.NDArray[np.float64]
    points: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.timestamps)


def detect_format(path: str | Path, fmt: str | None = None) -> Format:
    """``fmt`` if given, else from the extension (.csv, .jsonl, .ndjson)."""
    if fmt is not None:
        if fmt not in ("csv", "jsonl"):
            raise EventFileError(path, f"unknown format {fmt!r} (expected csv or jsonl)")
        return "csv" if fmt == "csv" else "jsonl"
    found = _EXTENSIONS.get(Path(path).suffix.lower())
    if found is None:
        raise EventFileError(path, "cannot tell the format from the extension; use --format")
    return found


def load_events(path: str | Path, fmt: str | None = None) -> Events:
    """Read and validate an event file. Raises EventFileError naming file and line."""
    kind = detect_format(path, fmt)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise EventFileError(path, "no such file") from None
    except IsADirectoryError:
        raise EventFileError(path, "is a directory") from None
    except OSError as exc:
        raise EventFileError(path, f"cannot read: {exc.strerror}") from None
    return parse_events(data, kind, name=str(path))


def parse_events(data: bytes, fmt: Format, *, name: str = "<events>") -> Events:
    """Parse event-file bytes of the given format."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise EventFileError(name, "file is empty")
    table = _parse_csv(data, name) if fmt == "csv" else _parse_jsonl(data, name)
    if len(table) == 0:
        raise EventFileError(name, "no events")
    return Events(np.ascontiguousarray(table[:, 0]), np.ascontiguousarray(table[:, 1:]))


# -- CSV -------------------------------------------------------------------------------------
def _header_order(first: bytes, name: str) -> list[int]:
    """Column permutation that maps the file's header onto ``COLUMNS``."""
    try:
        cols = [c.strip() for c in first.decode("utf-8").rstrip("\r").split(",")]
    except UnicodeDecodeError:
        raise EventFileError(name, "header is not valid UTF-8", line=1) from None
    if sorted(cols) != sorted(COLUMNS):
        if cols and all(_is_number(c.encode()) for c in cols):
            detail = "missing header (expected timestamp,x,y,z)"
        else:
            detail = "header must name exactly the columns timestamp,x,y,z"
        raise EventFileError(name, detail, line=1)
    return [cols.index(c) for c in COLUMNS]


def _is_number(field: bytes) -> bool:
    """What the fast parser accepts: a float literal (no underscores), blanks around it."""
    if b"_" in field:
        return False
    try:
        float(field)
    except ValueError:
        return False
    return True


def _parse_csv(data: bytes, name: str) -> npt.NDArray[np.float64]:
    nl = data.find(b"\n")
    first, body = (data, b"") if nl < 0 else (data[:nl], data[nl + 1 :])
    order = _header_order(first, name)
    if not body.strip():
        return np.empty((0, 4))
    try:
        table = np.loadtxt(
            io.BytesIO(body),
            delimiter=",",
            dtype=np.float64,
            comments=None,
            quotechar=None,
            ndmin=2,
            encoding="utf-8",
        )
    except ValueError:  # includes UnicodeDecodeError; numpy's message echoes values
        _diagnose_csv(body, name)
        raise EventFileError(name, "malformed CSV") from None
    if table.shape[1] != 4 or not np.isfinite(table).all():
        _diagnose_csv(body, name)
        raise EventFileError(name, "malformed CSV")
    return np.ascontiguousarray(table[:, order])


def _diagnose_csv(body: bytes, name: str) -> None:
    """Raise EventFileError for the first bad data line (line 2 is the first data line)."""
    for lineno, line in enumerate(body.split(b"\n"), start=2):
        if not line or line == b"\r":
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            raise EventFileError(name, "not valid UTF-8", line=lineno) from None
        fields = line.rstrip(b"\r").split(b",")
        if len(fields) != 4:
            raise EventFileError(
                name, f"malformed row: expected 4 fields, found {len(fields)}", line=lineno
            )
        for col, field in enumerate(fields, start=1):
            if not _is_number(field):
                raise EventFileError(name, f"column {col} is not a number", line=lineno)
            if not math.isfinite(float(field)):
                raise EventFileError(name, f"column {col} is not finite", line=lineno)


# -- JSONL -----------------------------------------------------------------------------------
class _Event(msgspec.Struct, gc=False):
    timestamp: float
    x: float
    y: float
    z: float


_one = msgspec.json.Decoder(_Event)
_many = msgspec.json.Decoder(list[_Event])
_fields = operator.attrgetter(*COLUMNS)


def _parse_jsonl(data: bytes, name: str) -> npt.NDArray[np.float64]:
    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    try:
        events = _many.decode(b"[" + b",".join(lines) + b"]")
    except msgspec.MsgspecError:
        _diagnose_jsonl(data, name)
        raise EventFileError(name, "malformed JSONL") from None
    if len(events) != len(lines):
        _diagnose_jsonl(data, name)
        raise EventFileError(name, "malformed JSONL")
    flat = itertools.chain.from_iterable(map(_fields, events))
    table = np.fromiter(flat, np.float64, count=4 * len(events)).reshape(-1, 4)
    if not np.isfinite(table).all():
        _diagnose_jsonl(data, name)
        raise EventFileError(name, "malformed JSONL")
    return table


def _diagnose_jsonl(data: bytes, name: str) -> None:
    """Raise EventFileError for the first bad line, naming only our own field names."""
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            event = _one.decode(line)
        except msgspec.ValidationError as exc:
            raise EventFileError(name, _explain(str(exc)), line=lineno) from None
        except msgspec.DecodeError:
            raise EventFileError(name, "not a JSON object on one line", line=lineno) from None
        for col in COLUMNS:
            if not math.isfinite(getattr(event, col)):
                raise EventFileError(name, f"field {col!r} is not finite", line=lineno)


def _explain(msg: str) -> str:
    for col in COLUMNS:
        if f"required field `{col}`" in msg:
            return f"missing field {col!r}"
        if msg.endswith(f"`$.{col}`"):
            if msg.startswith("Number out of range"):
                return f"field {col!r} is not finite"
            return f"field {col!r} must be a number"
    if "Expected `object`" in msg:
        return "each line must be a JSON object"
    return "invalid event object"
