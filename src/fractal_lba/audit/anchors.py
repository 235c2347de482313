"""Where checkpoints go: the local anchors file (the log's ledger) and pluggable sinks.

The ledger ``{base}/anchors.log`` is append-only canonical JSON, one record a line, fsync'd:

- ``{"type":"checkpoint","segment":REL,"note":TEXT}`` — a segment was sealed (TEXT is the
  C2SP signed note, see :mod:`fractal_lba.audit.checkpoint`);
- ``{"type":"anchored","segment":REL,"sinks":[NAME,...],"time":ISO}`` — these sinks accepted
  that checkpoint (``["local"]`` when the ledger is the only sink);
- ``{"type":"recovery","segment":REL,"offset":N,"length":N,"sha256":HEX,"sidecar":REL,
  "time":ISO}`` — a torn last line found after a crash was moved to ``sidecar``;
- ``{"type":"truncation","segment":REL,"lines":N,"expected_lines":N,"offset":N,
  "expected_bytes":N,"time":ISO}`` — recovery found the open segment shorter than what was
  once durable in it (entries lost; ``flk worm verify`` reports it);
- ``{"type":"prune","segments":[REL,...],"last_entry_hash":HEX,"last_checkpoint_hash":HEX,
  "time":ISO}`` — retention removed these sealed, anchored segments.

An :class:`AnchorSink` publishes a checkpoint note somewhere else (HTTP witness, second disk).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from fractal_lba import failpoints
from fractal_lba.audit.checkpoint import parse_checkpoint
from fractal_lba.audit.errors import AuditError, CheckpointError
from fractal_lba.canonical_json import canonical_json
from fractal_lba.fsutil import atomic_write, fsync_dir

LEDGER_NAME = "anchors.log"


class AnchorSink(Protocol):
    """Publishes a sealed segment's checkpoint; raises AuditError when it could not."""

    @property
    def name(self) -> str:
        """Short stable name of the sink, recorded in its ``anchored`` records."""
        ...

    def publish(self, note: str) -> None:
        """Make ``note`` (a signed checkpoint) durable at this sink; idempotent."""
        ...


def sink_name(sink: AnchorSink) -> str:
    """Human name of a sink for the ``anchored`` record."""
    return sink.name


class LocalAnchorFile:
    """Append-only JSONL anchors file (fsync'd, ``flock``-serialised across processes)."""

    name = "local"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._repair_at: int | None = None

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record durably."""
        self.append_many([record])

    def append_many(self, records: list[Mapping[str, Any]]) -> None:
        """Append records with one write + fsync.

        A failed or short write (ENOSPC, EIO) is truncated back to where it started, so no
        partial record is left for later appends to sit behind (SPEC section 5); when even
        that fails, the truncation is retried before the next append.
        """
        buf = b"".join(canonical_json(r) + b"\n" for r in records)
        with self._lock:
            try:
                created = not self.path.exists()
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise AuditError(f"cannot open anchors file {self.path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if self._repair_at is not None:
                    os.ftruncate(fd, self._repair_at)
                    os.fsync(fd)
                    self._repair_at = None
                start = os.fstat(fd).st_size
                try:
                    failpoints.hit("audit.ledger_write")
                    view = memoryview(buf)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError:
                    self._truncate_back(fd, start)
                    raise
                if created:
                    fsync_dir(self.path.parent)
            except OSError as exc:
                raise AuditError(
                    f"cannot append to anchors file {self.path}: {exc.strerror or exc}"
                ) from None
            finally:
                os.close(fd)

    def _truncate_back(self, fd: int, size: int) -> None:
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError:
            self._repair_at = size

    def publish(self, note: str) -> None:
        """Record a checkpoint note (the ledger is itself a sink)."""
        try:
            segment = parse_checkpoint(note).segment
        except CheckpointError as exc:
            raise AuditError(f"refusing to anchor a malformed checkpoint: {exc}") from None
        self.append({"type": "checkpoint", "segment": segment, "note": note})


class HttpAnchorSink:
    """POSTs the checkpoint text (``text/plain``) to a URL; any 2xx is success."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._headers = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}

    def publish(self, note: str) -> None:
        """POST the note; raise AuditError on a transport error or a non-2xx answer."""
        try:
            resp = self._client.post(self.url, content=note.encode(), headers=self._headers)
        except httpx.HTTPError as exc:
            raise AuditError(f"anchor POST to {self.url} failed: {type(exc).__name__}") from None
        if not 200 <= resp.status_code < 300:
            raise AuditError(f"anchor POST to {self.url} answered {resp.status_code}")

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


class DirectoryAnchorSink:
    """Writes each checkpoint to ``{dir}/{segment}.checkpoint`` (e.g. on a second disk).

    Files are written atomically (temp + fsync + rename) and never overwritten with a
    different text.
    """

    name = "directory"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def publish(self, note: str) -> None:
        """Write the note file for its segment; refuse to replace a different one."""
        try:
            segment = parse_checkpoint(note).segment
        except CheckpointError as exc:
            raise AuditError(f"refusing to anchor a malformed checkpoint: {exc}") from None
        target = self.directory / f"{segment}.checkpoint"
        try:
            if target.exists():
                if target.read_text("utf-8") == note:
                    return
                raise AuditError(f"anchor file {target} exists with a different checkpoint")
            atomic_write(target, note.encode("utf-8"), mode=0o644)
        except OSError as exc:
            raise AuditError(f"cannot write anchor {target}: {exc.strerror}") from None


@dataclass
class Ledger:
    """Parsed anchors file. ``checkpoints`` maps segment -> (ledger line, note), in order."""

    checkpoints: dict[str, tuple[int, str]] = field(default_factory=dict)
    anchored: set[str] = field(default_factory=set)
    recoveries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    prunes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    truncations: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    good_bytes: int = 0
    torn: bytes = b""

    @property
    def pruned(self) -> set[str]:
        """Segments removed by retention."""
        return {s for _, rec in self.prunes for s in rec.get("segments", [])}


def read_ledger(path: Path) -> Ledger:
    """Parse the anchors file; a record that is not valid JSON is an AuditError.

    Bytes after the last newline (a crash while appending) are returned in ``torn``.
    """
    led = Ledger()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return led
    end = data.rfind(b"\n") + 1
    led.good_bytes, led.torn = end, data[end:]
    for n, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
        try:
            rec = json.loads(raw)
            kind = rec["type"]
        except (ValueError, KeyError, TypeError):
            raise AuditError(f"{path.name}:{n}: not a valid anchors record") from None
        if kind == "checkpoint":
            seg = rec.get("segment")
            note = rec.get("note")
            if not isinstance(seg, str) or not isinstance(note, str):
                raise AuditError(f"{path.name}:{n}: checkpoint record lacks segment/note")
            if seg in led.checkpoints:
                raise AuditError(f"{path.name}:{n}: second checkpoint for segment {seg}")
            led.checkpoints[seg] = (n, note)
        elif kind == "anchored":
            led.anchored.add(str(rec.get("segment")))
        elif kind == "recovery":
            led.recoveries.append((n, rec))
        elif kind == "prune":
            led.prunes.append((n, rec))
        elif kind == "truncation":
            led.truncations.append((n, rec))
    return led
