"""Tamper-evident audit log (SPEC section 7): WORM segments, Merkle checkpoints, lineage."""

from fractal_lba.audit.anchors import (
    AnchorSink,
    DirectoryAnchorSink,
    HttpAnchorSink,
    LocalAnchorFile,
)
from fractal_lba.audit.base import AuditLog
from fractal_lba.audit.checkpoint import Checkpoint, parse_checkpoint, verify_checkpoint
from fractal_lba.audit.entry import (
    GENESIS_PREV_HASH,
    AuditEntry,
    compute_entry_hash,
    entry_to_dict,
)
from fractal_lba.audit.errors import (
    AuditError,
    AuditLockedError,
    AuditVerifyError,
    CheckpointError,
)
from fractal_lba.audit.index import audit_chains, lineage, lineage_all, reindex
from fractal_lba.audit.integrity import VerifyReport, verify_log
from fractal_lba.audit.proof import build_proofs, check_proof
from fractal_lba.audit.prune import PruneResult, prune
from fractal_lba.audit.worm import WormLog, load_or_create_audit_key, open_worm_from_settings

__all__ = [
    "GENESIS_PREV_HASH",
    "AnchorSink",
    "AuditEntry",
    "AuditError",
    "AuditLockedError",
    "AuditLog",
    "AuditVerifyError",
    "Checkpoint",
    "CheckpointError",
    "DirectoryAnchorSink",
    "HttpAnchorSink",
    "LocalAnchorFile",
    "PruneResult",
    "VerifyReport",
    "WormLog",
    "audit_chains",
    "build_proofs",
    "check_proof",
    "compute_entry_hash",
    "entry_to_dict",
    "lineage",
    "lineage_all",
    "load_or_create_audit_key",
    "open_worm_from_settings",
    "parse_checkpoint",
    "prune",
    "reindex",
    "verify_checkpoint",
    "verify_log",
]
