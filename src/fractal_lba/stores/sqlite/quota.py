"""Daily quota counters in ``<DATA_DIR>/quota.sqlite3``, shared safely by one host's workers."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from fractal_lba.stores.errors import StoreUnavailable
from fractal_lba.stores.sqlite import schema
from fractal_lba.stores.sqlite.connection import connect
from fractal_lba.stores.sqlite.errors import map_exceptions


class SqliteQuotaStore:
    """:class:`~fractal_lba.tenancy.quota.QuotaStore` on a SQLite file (calls run in a thread)."""

    name = "sqlite"

    def __init__(self, path: Path, *, namespace: str = "flk", op_timeout: float = 2.0) -> None:
        self._path = path
        self._namespace = namespace
        self._table = schema.table_name(namespace, "quota")
        self._timeout = op_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._sql_add = (
            f"INSERT INTO {self._table} (day, tenant_id, used) VALUES (?, ?, ?) "
            "ON CONFLICT (day, tenant_id) DO UPDATE SET used = used + excluded.used "
            "RETURNING used"
        )

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self._path, timeout=self._timeout)
            try:
                schema.create(conn, self._namespace, "quota")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _add_sync(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        with self._lock, map_exceptions("quota add"):
            conn = self._connect()
            out: dict[str, int] = {}
            conn.execute("BEGIN IMMEDIATE")
            try:
                for tid, n in deltas.items():
                    row = conn.execute(self._sql_add, (day, tid, n)).fetchone()
                    out[tid] = int(row[0])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return out

    async def _run(self, day: str, deltas: dict[str, int]) -> dict[str, int]:
        try:
            async with asyncio.timeout(self._timeout + 1.0):
                return await asyncio.to_thread(self._add_sync, day, deltas)
        except TimeoutError:
            raise StoreUnavailable("sqlite quota add timed out") from None

    async def open(self) -> None:
        await self._run("0000-00-00", {})

    async def add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        return await self._run(day, dict(deltas))

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
