"""In-process dedup store: a dict, optionally persisted to a snapshot file.

Only correct for a single process (one server worker). The snapshot is loaded on
:meth:`MemoryStore.open` and written atomically (temp file, fsync, rename, fsync of the
directory) by :meth:`MemoryStore.snapshot` and on :meth:`MemoryStore.close`, so a crash
leaves either the old or the new snapshot, never a torn one.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec

from fractal_lba.stores.base import Clock, StoredOutcome, check_positive
from fractal_lba.stores.errors import StoreError, StoreUnavailable

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


class MemoryStore:
    """Dict-backed :class:`~fractal_lba.stores.base.DedupStore` for one process."""

    name = "memory"

    def __init__(
        self,
        *,
        snapshot_path: Path | None = None,
        op_timeout: float = 2.0,
        clock: Clock = time.time,
    ) -> None:
        self._snapshot_path = snapshot_path
        self._op_timeout = check_positive("op_timeout", op_timeout)
        self._clock = clock
        self._data: dict[tuple[str, str], tuple[StoredOutcome, float]] = {}
        self._open = False

    async def open(self) -> None:
        """Load the snapshot file, if configured and present; expired entries are dropped."""
        if self._open:
            return
        if self._snapshot_path is not None:
            entries = await self._io("load", _load_snapshot, self._snapshot_path)
            now = self._clock()
            self._data = {
                (e.tenant_id, e.pcs_id): (e.outcome, e.expires_at)
                for e in entries
                if e.expires_at > now
            }
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
        self._data[key] = (outcome, now + ttl_s)
        return outcome

    async def ping(self) -> None:
        """Always reachable once open."""
        self._check_open()

    async def purge_expired(self) -> int:
        """Drop expired entries; return how many."""
        self._check_open()
        now = self._clock()
        dead = [key for key, (_, expires_at) in self._data.items() if expires_at <= now]
        for key in dead:
            del self._data[key]
        return len(dead)

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
        await self._io("snapshot", _write_atomically, self._snapshot_path, data)

    async def close(self) -> None:
        """Write the snapshot (when configured) and forget the data. Idempotent."""
        if not self._open:
            return
        try:
            await self.snapshot()
        finally:
            self._open = False
            self._data = {}

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


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
