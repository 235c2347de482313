"""Write-ahead logging: checksummed segment files and async group commit (SPEC section 5)."""

from fractal_lba.wal.errors import WalCorruptError, WalError, WalLockedError
from fractal_lba.wal.group import GroupCommitter
from fractal_lba.wal.log import Recovery, WalLog, WalStats
from fractal_lba.wal.records import frame, frame_many, scan

__all__ = [
    "GroupCommitter",
    "Recovery",
    "WalCorruptError",
    "WalError",
    "WalLockedError",
    "WalLog",
    "WalStats",
    "frame",
    "frame_many",
    "scan",
]
