"""Lineage index: which lines of which segments belong to a pcs_id (SQLite, rebuildable).

``{base}/lineage.sqlite`` holds ``segments(id, rel, lines, bytes)`` and
``entries(pcs_key, seg, line, offset)`` where ``pcs_key`` is the first 8 bytes of
SHA-256(pcs_id) as a signed integer — 30-odd bytes a row, one B-tree lookup per query. The
index is a cache: it is written by the log writer after each durable batch without fsync,
caught up from the segments on start, and rebuilt by ``flk worm reindex``. Answers are read
back from the segment lines themselves, so a stale index can miss an entry but never invent
or alter one.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from fractal_lba.audit.errors import AuditError
from fractal_lba.audit.segments import decode_line, list_segments, parse_segment_name

INDEX_NAME = "lineage.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments(
    id INTEGER PRIMARY KEY, rel TEXT NOT NULL UNIQUE, lines INTEGER NOT NULL, bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries(
    pcs_key INTEGER NOT NULL, seg INTEGER NOT NULL, line INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (pcs_key, seg, line)
) WITHOUT ROWID;
"""


class _PcsOnly(msgspec.Struct, gc=False):
    pcs_id: str | None = None


_PCS_DECODER = msgspec.json.Decoder(_PcsOnly)


def pcs_key(pcs_id: str | None) -> int:
    """Index key of a pcs_id (64-bit, signed)."""
    raw = (pcs_id or "").encode("utf-8")
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big", signed=True)


class LineageIndex:
    """Read-write handle on the index (one writer; used from one thread at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise AuditError(f"cannot open lineage index {self.path}: {exc}") from None

    def state(self) -> dict[str, tuple[int, int]]:
        """rel -> (indexed lines, indexed bytes)."""
        rows = self._db.execute("SELECT rel, lines, bytes FROM segments").fetchall()
        return {r: (n, b) for r, n, b in rows}

    def add(self, rel: str, rows: Sequence[tuple[int, int, int]], lines: int, nbytes: int) -> None:
        """Add ``(pcs_key, line, offset)`` rows of ``rel`` and set its indexed totals."""
        db = self._db
        try:
            db.execute("BEGIN")
            cur = db.execute(
                "INSERT INTO segments(rel, lines, bytes) VALUES (?, ?, ?) "
                "ON CONFLICT(rel) DO UPDATE SET lines=excluded.lines, bytes=excluded.bytes "
                "RETURNING id",
                (rel, lines, nbytes),
            )
            seg_id = cur.fetchone()[0]
            db.executemany(
                "INSERT OR REPLACE INTO entries(pcs_key, seg, line, offset) VALUES (?, ?, ?, ?)",
                [(k, seg_id, ln, off) for k, ln, off in rows],
            )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise AuditError(f"lineage index update failed: {exc}") from None

    def drop(self, rel: str) -> None:
        """Forget a segment (pruned, or to be re-indexed)."""
        try:
            row = self._db.execute("SELECT id FROM segments WHERE rel=?", (rel,)).fetchone()
            if row is None:
                return
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM entries WHERE seg=?", (row[0],))
            self._db.execute("DELETE FROM segments WHERE id=?", (row[0],))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise AuditError(f"lineage index update failed: {exc}") from None

    def index_file(self, base: Path, rel: str) -> int:
        """Bring ``rel`` up to date with its file (append, or rebuild if it shrank); rows added."""
        indexed = self.state().get(rel)
        path = base / rel
        size = path.stat().st_size
        lines, start = indexed if indexed is not None else (0, 0)
        if start > size:
            self.drop(rel)
            lines, start = 0, 0
        if start == size and indexed is not None:
            return 0
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(size - start)
        data = data[: data.rfind(b"\n") + 1]
        rows: list[tuple[int, int, int]] = []
        off = start
        for raw in data.split(b"\n")[:-1]:
            lines += 1
            try:
                pid = _PCS_DECODER.decode(raw).pcs_id
            except (msgspec.DecodeError, msgspec.ValidationError):
                pid = None
            rows.append((pcs_key(pid), lines, off))
            off += len(raw) + 1
        self.add(rel, rows, lines, off)
        return len(rows)

    def catch_up(self, base: Path) -> int:
        """Index what the segments hold and the index lacks; forget vanished segments."""
        present = {s.rel for s in list_segments(base)}
        for rel in set(self.state()) - present:
            self.drop(rel)
        return sum(self.index_file(base, rel) for rel in sorted(present, key=_order))

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def _order(rel: str) -> tuple[int, ...]:
    name = parse_segment_name(rel)
    return name.key if name is not None else (0,)


def reindex(base: Path) -> int:
    """Rebuild the index from scratch; return the number of entries indexed."""
    path = Path(base) / INDEX_NAME
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    idx = LineageIndex(path)
    try:
        return idx.catch_up(Path(base))
    finally:
        idx.close()


def _has_schema(db: sqlite3.Connection) -> bool:
    """Whether the index tables exist (a worker that is starting creates them after the file)."""
    row = db.execute(
        "SELECT count(*) FROM sqlite_master "
        "WHERE type = 'table' AND name IN ('entries', 'segments')"
    ).fetchone()
    return bool(row and row[0] == 2)


def indexed_segments(base_dir: Path) -> dict[str, tuple[int, int]]:
    """rel -> (lines, bytes) the index recorded for each segment ({} without an index).

    The writer records these after every durable batch, so a segment file with fewer lines
    than its row here lost entries that were once durable (truncated).
    """
    path = Path(base_dir) / INDEX_NAME
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if not _has_schema(db):
                return {}
            rows = db.execute("SELECT rel, lines, bytes FROM segments").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}  # a cache that cannot be read proves nothing either way
    return {r: (n, b) for r, n, b in rows}


def lineage(base_dir: Path, pcs_id: str, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Every audit entry of ``pcs_id`` (optionally of one tenant), in log order.

    Each dict is the entry as written (timestamp, tenant_id, verify_outcome, reason, status,
    policy_version, verify_params_hash, region_id, request_id, prev_hash, entry_hash, ...) plus
    ``segment`` (path relative to the base dir), ``line`` (1-based), ``offset`` (byte) and
    ``sealed``. Raises AuditError when there is no index or it is stale.
    """
    base = Path(base_dir)
    path = base / INDEX_NAME
    if not path.exists():
        raise AuditError(f"no lineage index at {path}; run `flk worm reindex`")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if not _has_schema(db):
                return []  # the writer is creating the index right now: nothing indexed yet
            rows = db.execute(
                "SELECT s.rel, e.line, e.offset FROM entries e JOIN segments s ON s.id = e.seg "
                "WHERE e.pcs_key = ?",
                (pcs_key(pcs_id),),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise AuditError(f"cannot read lineage index {path}: {exc}") from None
    out: list[dict[str, Any]] = []
    for rel, line, offset in sorted(rows, key=lambda r: (_order(r[0]), r[1])):
        seg_path = base / rel
        try:
            with open(seg_path, "rb") as fh:
                fh.seek(offset)
                raw = fh.readline()
            mode = os.stat(seg_path).st_mode
        except FileNotFoundError:
            continue  # pruned since it was indexed
        if not raw.endswith(b"\n"):
            raise AuditError(f"lineage index is stale at {rel}:{line}; run `flk worm reindex`")
        entry = decode_line(raw)
        if pcs_key(entry.get("pcs_id")) != pcs_key(pcs_id):
            raise AuditError(f"lineage index is stale at {rel}:{line}; run `flk worm reindex`")
        if entry.get("pcs_id") != pcs_id:
            continue  # 64-bit key collision
        if tenant_id is not None and entry.get("tenant_id") != tenant_id:
            continue
        entry.update(segment=rel, line=line, offset=offset, sealed=not mode & 0o222)
        out.append(entry)
    return out


def audit_chains(base_dir: Path) -> list[Path]:
    """The audit directories of one server: ``base`` (worker 0) and ``base-<i>`` (worker i).

    Each is its own hash chain with one writer; lineage must look in all of them.
    """
    base = Path(base_dir)
    extra = [
        p
        for p in base.parent.glob(f"{base.name}-*")
        if p.is_dir() and p.name[len(base.name) + 1 :].isdigit()
    ]
    extra.sort(key=lambda p: int(p.name[len(base.name) + 1 :]))
    return [base, *extra] if base.is_dir() else extra


def lineage_all(base_dir: Path, pcs_id: str, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """:func:`lineage` over every chain of a server (see :func:`audit_chains`), in time order.

    Each entry also names its ``chain`` (the audit directory's name).
    """
    out: list[dict[str, Any]] = []
    for chain in audit_chains(base_dir):
        if not (chain / INDEX_NAME).exists():
            continue
        for entry in lineage(chain, pcs_id, tenant_id):
            entry["chain"] = chain.name
            out.append(entry)
    out.sort(key=lambda e: (str(e.get("timestamp")), e["chain"], e["line"]))
    return out
