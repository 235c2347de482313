"""Tamper-evident audit log (SPEC section 7): WORM segments, Merkle checkpoints, lineage."""

from fractal_lba.audit.base import AuditLog
from fractal_lba.audit.entry import (
    GENESIS_PREV_HASH,
    AuditEntry,
    compute_entry_hash,
    entry_to_dict,
)
from fractal_lba.audit.errors import AuditError, AuditVerifyError

__all__ = [
    "GENESIS_PREV_HASH",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "AuditVerifyError",
    "compute_entry_hash",
    "entry_to_dict",
]
