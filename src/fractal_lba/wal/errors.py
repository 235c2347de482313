"""WAL errors."""

from __future__ import annotations

from fractal_lba.errors import FlkError


class WalError(FlkError):
    """The write-ahead log could not be written or read (-> 503 on the submit path)."""

    code = "wal_error"


class WalCorruptError(WalError):
    """A record failed its checksum somewhere other than the torn tail of the last segment."""

    code = "wal_corrupt"


class WalLockedError(WalError):
    """Another process holds the WAL directory."""

    code = "wal_locked"
