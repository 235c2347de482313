"""In-process dedup store: a dict, optionally persisted to a snapshot file.

Only correct for a single process (one server worker). The snapshot is loaded on
:meth:`MemoryStore.open` and written atomically (:func:`fractal_lba.fsutil.atomic_write`) by
:meth:`MemoryStore.snapshot` and on :meth:`MemoryStore.close`, so a crash leaves either the
old or the new snapshot, never a torn one.

Bounded: at most ``max_entries`` records. Expiry order is kept in a heap of
``(expires_at, key)``, so purging and making room cost O(log n) a record, never a scan. When
the store is full, a new record first takes the place of an expired one; when none has
expired, the write is refused with :class:`StoreFull` (a ``StoreUnavailable``: the request
is answered 503 with ``Retry-After`` and stays in the inbox WAL). A live record is never
evicted: forgetting an outcome inside its TTL would let a duplicate be verified and audited
a second time, which is the one thing a dedup store exists to prevent.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import msgspec

from fractal_lba.fsutil import atomic_write
from fractal_lba.stores.base import Clock, StoredOutcome, check_limit, check_positive
from fractal_lba.stores.errors import StoreError, StoreUnavailable

DEFAULT_MAX_ENTRIES = 1_000_000

_SNAPSHOT_VERSION = 1

T = TypeVar("T")


class _Entry(msgspec.Struct, array_like=True):
    tenant_id: str
    pcs_id: str
    outcome: StoredOutcome
    expires_at: float


class _Snapshot(msgspec.Struct):
    version: int
    entries: list[_Entry]


class MemoryQuotaStore:
    """Quota counters in this process only (``DEDUP_BACKEND=memory``: nothing survives)."""

    name = "memory"

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    async def open(self) -> None:
        return None

    async def add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for tid, n in deltas.items():
            out[tid] = self._counts[(day, tid)] = self._counts.get((day, tid), 0) + n
        return out

    async def close(self) -> None:
        return None


class StoreFull(StoreUnavailable):
    """The memory store holds ``max_entries`` live records: a new one is refused (503)."""

    code = "store_full"


class MemoryStore:
    """Dict-backed :class:`~fractal_lba.stores.base.DedupStore` for one process."""

    name = "memory"

    def __init__(
        self,
        *,
        snapshot_path: Path | None = None,
        op_timeout: float = 2.0,
        clock: Clock = time.time,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._snapshot_path = snapshot_path
        self._op_timeout = check_positive("op_timeout", op_timeout)
        self._clock = clock
        self._max_entries = max_entries
        self._data: dict[tuple[str, str], tuple[StoredOutcome, float]] = {}
        # (expires_at, key) of every record; an item whose record was since overwritten
        # (another expires_at) is stale and skipped when it comes up.
        self._expiry: list[tuple[float, tuple[str, str]]] = []
        self._open = False
        self.refused = 0
        """Writes refused because the store was full of live records."""

    @property
    def max_entries(self) -> int:
        """The bound on stored records."""
        return self._max_entries

    async def open(self) -> None:
        """Load the snapshot file, if configured and present; expired entries are dropped."""
        if self._open:
            return
        if self._snapshot_path is not None:
            entries = await self._io("load", _load_snapshot, self._snapshot_path)
            now = self._clock()
            live = [e for e in entries if e.expires_at > now]
            # A snapshot of a larger store keeps the records that expire last.
            live.sort(key=lambda e: e.expires_at)
            live = live[len(live) - self._max_entries :] if len(live) > self._max_entries else live
            self._data = {(e.tenant_id, e.pcs_id): (e.outcome, e.expires_at) for e in live}
            self._expiry = [(e.expires_at, (e.tenant_id, e.pcs_id)) for e in live]  # sorted
        self._open = True

    async def get(self, tenant_id: str, pcs_id: str) -> StoredOutcome | None:
        """Return the live outcome for the key, or ``None``."""
        self._check_open()
        found = self._data.get((tenant_id, pcs_id))
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    async def put_if_absent(
        self, tenant_id: str, pcs_id: str, outcome: StoredOutcome, ttl_s: float
    ) -> StoredOutcome:
        """Store ``outcome`` unless a live record exists; return the winner.

        Atomic because there is no ``await`` between the lookup and the write.
        """
        check_positive("ttl_s", ttl_s)
        self._check_open()
        now = self._clock()
        key = (tenant_id, pcs_id)
        found = self._data.get(key)
        if found is not None and found[1] > now:
            return found[0]
        if found is None and len(self._data) >= self._max_entries and not self._purge(now, 1):
            self.refused += 1
            raise StoreFull(f"memory store is full ({self._max_entries} live records)")
        expires_at = now + ttl_s
        self._data[key] = (outcome, expires_at)
        heapq.heappush(self._expiry, (expires_at, key))
        return outcome

    async def ping(self) -> None:
        """Always reachable once open."""
        self._check_open()

    async def purge_expired(self, limit: int | None = None) -> int:
        """Drop expired entries (at most ``limit``, oldest first); return how many."""
        self._check_open()
        return self._purge(self._clock(), check_limit(limit))

    def _purge(self, now: float, limit: int | None) -> int:
        """Pop expired records off the expiry heap; no ``await``, so atomic on the loop."""
        heap, data, deleted = self._expiry, self._data, 0
        while heap and heap[0][0] <= now and (limit is None or deleted < limit):
            expires_at, key = heapq.heappop(heap)
            found = data.get(key)
            if found is not None and found[1] == expires_at:
                del data[key]
                deleted += 1
        # Stale items (overwritten records) accumulate only as fast as records do; rebuild
        # when they outnumber the records so the heap stays O(records).
        if len(heap) > 2 * len(data) + 1024:
            self._expiry = [(exp, key) for key, (_, exp) in data.items()]
            heapq.heapify(self._expiry)
        return deleted

    async def snapshot(self) -> None:
        """Write live entries to the snapshot file atomically (no-op without a path)."""
        self._check_open()
        if self._snapshot_path is None:
            return
        now = self._clock()
        entries = [
            _Entry(tenant_id, pcs_id, outcome, expires_at)
            for (tenant_id, pcs_id), (outcome, expires_at) in self._data.items()
            if expires_at > now
        ]
        data = msgspec.msgpack.encode(_Snapshot(version=_SNAPSHOT_VERSION, entries=entries))
        await self._io("snapshot", atomic_write, self._snapshot_path, data)

    async def close(self) -> None:
        """Write the snapshot (when configured) and forget the data. Idempotent."""
        if not self._open:
            return
        try:
            await self.snapshot()
        finally:
            self._open = False
            self._data = {}
            self._expiry = []

    def __len__(self) -> int:
        return len(self._data)

    def _check_open(self) -> None:
        if not self._open:
            raise StoreError("memory store is not open")

    async def _io(self, op: str, fn: Callable[..., T], *args: object) -> T:
        """Run snapshot file I/O off the event loop, bounded by ``op_timeout``."""
        try:
            async with asyncio.timeout(self._op_timeout):
                return await asyncio.to_thread(fn, *args)
        except TimeoutError:
            raise StoreUnavailable(
                f"memory store {op} timed out after {self._op_timeout:g}s"
            ) from None
        except OSError as exc:
            raise StoreUnavailable(f"memory store {op} failed: {_errno_name(exc)}") from None


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _load_snapshot(path: Path) -> list[_Entry]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
    except msgspec.DecodeError:
        raise StoreError("memory store snapshot is corrupt") from None
    if snap.version != _SNAPSHOT_VERSION:
        raise StoreError(f"memory store snapshot has unknown version {snap.version}")
    return snap.entries
