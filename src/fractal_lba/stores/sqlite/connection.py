"""Connections of the SQLite backend: one place for the pragmas every user of a file needs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fractal_lba.stores.sqlite.checkpoint import WAL_SIZE_LIMIT


def connect(path: Path, *, timeout: float, checkpointer: bool = False) -> sqlite3.Connection:
    """Open ``path`` (creating its directory) in WAL mode, autocommit (explicit BEGINs).

    ``synchronous = NORMAL``: a commit is atomic and survives a process crash; the inbox WAL
    covers a power loss. With ``checkpointer`` the connection never checkpoints inside a
    commit: a :class:`~fractal_lba.stores.sqlite.checkpoint.Checkpointer` thread does it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if checkpointer:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    except BaseException:
        conn.close()
        raise
    return conn
