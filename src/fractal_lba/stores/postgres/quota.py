"""Daily quota counters in table ``{namespace}_quota`` of the dedup store's PostgreSQL."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from fractal_lba.stores.postgres import schema
from fractal_lba.stores.postgres.errors import DRIVER_ERRORS, timed_out, translate

_Conn = psycopg.AsyncConnection[TupleRow]


class PostgresQuotaStore:
    """:class:`~fractal_lba.tenancy.quota.QuotaStore` on one PostgreSQL connection."""

    name = "postgres"

    def __init__(self, dsn: str, *, namespace: str = "flk", op_timeout: float = 2.0) -> None:
        self._dsn = dsn
        self._namespace = namespace
        self._timeout = op_timeout
        t = sql.Identifier(schema.table_name(namespace, "quota"))
        self._sql_add = sql.SQL(
            "INSERT INTO {t} AS q (day, tenant_id, used) VALUES (%s, %s, %s) "
            "ON CONFLICT (day, tenant_id) DO UPDATE SET used = q.used + EXCLUDED.used "
            "RETURNING used"
        ).format(t=t)
        self._conn: _Conn | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> _Conn:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=max(1, math.ceil(self._timeout))
            )
            try:
                await schema.create(conn, self._namespace, "quota")
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._conn

    async def _add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        async with self._lock:
            conn = await self._connection()
            out: dict[str, int] = {}
            try:
                async with conn.transaction():
                    for tid, n in deltas.items():
                        row = await (await conn.execute(self._sql_add, (day, tid, n))).fetchone()
                        out[tid] = int(row[0]) if row is not None else 0
            except psycopg.Error:
                await conn.close()
                raise
            return out

    async def open(self) -> None:
        await self.add("0000-00-00", {})

    async def add(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._add(day, deltas)
        except TimeoutError:
            raise timed_out("quota add", self._timeout) from None
        except DRIVER_ERRORS as exc:
            raise translate(exc, "quota add", self._timeout) from None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
