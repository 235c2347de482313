"""Tables of the SQLite backend, created by name with the namespace prefix.

Every feature that keeps state in SQLite declares its tables here (``TABLES[name]``: the
statements, with ``{t}`` for the table name ``{namespace}_{name}``) and creates them with
:func:`create` inside its first write transaction, so a new one (the policy registry's
``policy`` table, say) is one entry, not another copy of connection and schema code.
"""

from __future__ import annotations

import sqlite3

TABLES: dict[str, tuple[str, ...]] = {
    "dedup": (
        "CREATE TABLE IF NOT EXISTS {t} (tenant_id TEXT NOT NULL, pcs_id TEXT NOT NULL, "
        "status INTEGER NOT NULL, body BLOB NOT NULL, payload_hash TEXT NOT NULL, "
        "request_id TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL, "
        "PRIMARY KEY (tenant_id, pcs_id)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires_at)",
    ),
    "quota": (
        "CREATE TABLE IF NOT EXISTS {t} (day TEXT NOT NULL, tenant_id TEXT NOT NULL, "
        "used INTEGER NOT NULL, PRIMARY KEY (day, tenant_id))",
    ),
}


def table_name(namespace: str, name: str) -> str:
    """``{namespace}_{name}`` (the namespace is validated by the caller's settings)."""
    return f"{namespace}_{name}"


def create(conn: sqlite3.Connection, namespace: str, name: str) -> str:
    """Create table ``name`` (and its indexes) if missing; return its full name."""
    table = table_name(namespace, name)
    for statement in TABLES[name]:
        conn.execute(statement.format(t=table))
    return table
