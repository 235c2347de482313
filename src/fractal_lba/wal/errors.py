"""WAL errors."""

from __future__ import annotations

from fractal_lba.errors import FlkError


class WalError(FlkError):
    """The write-ahead log could not be written or read (-> 503 on the submit path)."""

    code = "wal_error"


class WalCorruptError(WalError):
    """A segment is damaged somewhere other than a torn tail of the last segment."""

    code = "wal_corrupt"

    def __init__(self, message: str, *, segment: str | None = None, offset: int | None = None):
        super().__init__(message)
        self.segment = segment
        self.offset = offset


class WalLockedError(WalError):
    """Another process holds the WAL directory."""

    code = "wal_locked"
