"""Tables of the PostgreSQL backend, created by name with the namespace prefix.

Every feature that keeps state in PostgreSQL declares its tables here (``TABLES[name]``:
statements with ``{t}`` for the table ``{namespace}_{name}``, ``{expires_idx}`` for
``{t}_expires_idx``) and creates them with :func:`create`, which takes a transaction-scoped
advisory lock per table first, so replicas starting together never race on ``CREATE TABLE``
(the one strategy for every table; a new one, e.g. the policy registry's, is one entry).
"""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

TABLES: dict[str, tuple[str, ...]] = {
    "dedup": (
        "CREATE TABLE IF NOT EXISTS {t} (tenant_id text NOT NULL, pcs_id text NOT NULL, "
        "status integer NOT NULL, body bytea NOT NULL, payload_hash text NOT NULL, "
        "request_id text NOT NULL, created_at double precision NOT NULL, "
        "expires_at double precision NOT NULL, PRIMARY KEY (tenant_id, pcs_id))",
        "CREATE INDEX IF NOT EXISTS {expires_idx} ON {t} (expires_at)",
    ),
    "quota": (
        "CREATE TABLE IF NOT EXISTS {t} (day text NOT NULL, tenant_id text NOT NULL, "
        "used bigint NOT NULL, PRIMARY KEY (day, tenant_id))",
    ),
}


def table_name(namespace: str, name: str) -> str:
    """``{namespace}_{name}``."""
    return f"{namespace}_{name}"


def lock_id(table: str) -> int:
    """The advisory lock key of ``table`` (stable across versions and replicas)."""
    digest = hashlib.sha256(f"fractal_lba.stores:{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def create(conn: psycopg.AsyncConnection[TupleRow], namespace: str, name: str) -> str:
    """Create table ``name`` (and its indexes) if missing, under its advisory lock."""
    table = table_name(namespace, name)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id(table),))
        for statement in TABLES[name]:
            await conn.execute(
                sql.SQL(statement).format(
                    t=sql.Identifier(table), expires_idx=sql.Identifier(f"{table}_expires_idx")
                )
            )
    return table
