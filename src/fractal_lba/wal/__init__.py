"""Write-ahead logging: checksummed segment files and async group commit (SPEC section 5)."""

from fractal_lba.wal.check import (
    Damage,
    SalvagedSegment,
    SegmentReport,
    inspect_directory,
    salvage,
)
from fractal_lba.wal.errors import WalCorruptError, WalError, WalLockedError
from fractal_lba.wal.group import GroupCommitter
from fractal_lba.wal.log import Recovery, WalLog, WalStats, lock_directory
from fractal_lba.wal.records import frame, frame_many, scan

__all__ = [
    "Damage",
    "GroupCommitter",
    "Recovery",
    "SalvagedSegment",
    "SegmentReport",
    "WalCorruptError",
    "WalError",
    "WalLockedError",
    "WalLog",
    "WalStats",
    "frame",
    "frame_many",
    "inspect_directory",
    "lock_directory",
    "salvage",
    "scan",
]
