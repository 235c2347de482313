"""Canonical event rows and the signals over them (SPEC section 3): ``r`` and ``merkle_root``.

A canonical row is ``f"{t!r},{x!r},{y!r},{z!r}"`` (Python ``repr`` of each float, ``.`` as the
decimal separator); rows are joined with ``\\n`` and encoded UTF-8 (repr is ASCII).
:func:`row_summary` computes both signals in one streaming pass and is the fast path; the
small functions beside it are the reference definitions it is tested against.
"""

from __future__ import annotations

import hashlib
import operator
import queue
import threading
import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fractal_lba.merkle import merkle_tree_hash, root_from_leaf_hashes
from fractal_lba.signals.errors import SignalError

ZLIB_LEVEL = 6
_CHUNK_ROWS = 2048
_BATCH_BYTES = 8 << 20
# Each row is formatted with a leading NUL so the split rows are the RFC 6962 leaf inputs
# (0x00 || row) directly; the NULs are removed again before compression.
_LEAF_ROW = "\x00%r,%r,%r,%r\n"
_digest = operator.methodcaller("digest")


def _columns(timestamps: npt.ArrayLike, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
    t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) != len(t):
        raise SignalError("timestamps must be (n,) and points (n, 3)")
    rows = np.column_stack((t, p))
    if not np.isfinite(rows).all():
        raise SignalError("timestamps and points must be finite")
    return rows


def canonical_rows(timestamps: npt.ArrayLike, points: npt.ArrayLike) -> list[bytes]:
    """The canonical rows ``t,x,y,z`` as bytes (no newline), in input order."""
    return [
        f"{t!r},{x!r},{y!r},{z!r}".encode("ascii")
        for t, x, y, z in _columns(timestamps, points).tolist()
    ]


def canonical_text(timestamps: npt.ArrayLike, points: npt.ArrayLike) -> bytes:
    """The canonical rows joined with ``\\n`` (no trailing newline)."""
    return b"\n".join(canonical_rows(timestamps, points))


def compression_ratio(raw: bytes) -> float:
    """``r = len(zlib.compress(raw, 6)) / len(raw)`` clamped to [0, 1]; empty input -> 1.0."""
    if not raw:
        return 1.0
    return min(1.0, max(0.0, len(zlib.compress(raw, ZLIB_LEVEL)) / len(raw)))


def merkle_root(rows: Sequence[bytes]) -> str:
    """RFC 6962 Merkle Tree Hash (hex) over the rows as leaves; empty -> sha256(b"")."""
    return merkle_tree_hash(rows).hex()


class _Compressor(threading.Thread):
    """Counts the zlib output length of a byte stream fed through a queue.

    zlib releases the GIL, so compression overlaps the formatting and hashing done by the
    caller. Without intermediate flushes deflate's output does not depend on how the input is
    split, so the length equals ``len(zlib.compress(whole, 6))`` (tested). Input arrives in
    large batches because every deflate call must re-take the GIL from a busy caller.
    """

    def __init__(self) -> None:
        super().__init__(name="flk-zlib", daemon=True)
        self.inbox: queue.Queue[bytes | None] = queue.Queue(
            maxsize=8
        )  # bounds memory to ~8 batches
        self.raw_len = 0
        self.out_len = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        comp = zlib.compressobj(ZLIB_LEVEL)
        try:
            while (chunk := self.inbox.get()) is not None:
                self.raw_len += len(chunk)
                self.out_len += len(comp.compress(chunk))
            self.out_len += len(comp.flush())
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc
            while self.inbox.get() is not None:
                pass


class PendingRowSummary:
    """:func:`row_summary` split in two: the constructor does the GIL-bound work (formatting,
    hashing) while compression continues in a worker; :meth:`result` joins it.

    Callers can run GIL-free numpy work between the two calls (see ``compute_signals``).
    """

    def __init__(
        self,
        timestamps: npt.ArrayLike,
        points: npt.ArrayLike,
        *,
        chunk_rows: int = _CHUNK_ROWS,
        batch_bytes: int = _BATCH_BYTES,
    ) -> None:
        if chunk_rows < 1 or batch_bytes < 1:
            raise SignalError("chunk_rows and batch_bytes must be positive")
        cols = _columns(timestamps, points)
        n = len(cols)
        self._worker: _Compressor | None = None
        if n == 0:
            self._root = merkle_root([])
            return
        flat = cols.reshape(-1).tolist()
        leaves: list[bytes] = []
        worker = _Compressor()
        worker.start()
        self._worker = worker
        sha = hashlib.sha256
        batch: list[bytes] = []
        size = 0
        try:
            for start in range(0, n, chunk_rows):
                k = min(chunk_rows, n - start)
                text = (_LEAF_ROW * k) % tuple(flat[4 * start : 4 * (start + k)])
                data = text.encode("ascii")
                parts = data.split(b"\n")
                parts.pop()
                leaves.extend(map(_digest, map(sha, parts)))
                raw = data.replace(b"\x00", b"")
                batch.append(raw if start + k < n else raw[:-1])
                size += len(raw)
                if size >= batch_bytes:
                    worker.inbox.put(b"".join(batch))
                    batch, size = [], 0
            if batch:
                worker.inbox.put(b"".join(batch))
        finally:
            worker.inbox.put(None)
        self._root = root_from_leaf_hashes(leaves).hex()

    def result(self) -> tuple[str, float]:
        """``(merkle_root, r)``; waits for the compression worker."""
        worker = self._worker
        if worker is None:
            return self._root, 1.0
        worker.join()
        if worker.error is not None:
            raise SignalError(f"compression failed: {worker.error}")
        r = min(1.0, max(0.0, worker.out_len / worker.raw_len)) if worker.raw_len else 1.0
        return self._root, r


def row_summary(
    timestamps: npt.ArrayLike,
    points: npt.ArrayLike,
    *,
    chunk_rows: int = _CHUNK_ROWS,
    batch_bytes: int = _BATCH_BYTES,
) -> tuple[str, float]:
    """``(merkle_root, r)`` of the canonical rows, equal to the reference functions.

    Rows are formatted in chunks with one ``%`` operation each (C speed), leaves hashed with
    ``map`` (no Python frame per row), and the text compressed in a worker thread.
    """
    return PendingRowSummary(
        timestamps, points, chunk_rows=chunk_rows, batch_bytes=batch_bytes
    ).result()
