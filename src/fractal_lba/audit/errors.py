"""Audit errors.

Tree::

    AuditError                  the audit log could not be written or read
    ├── AuditLockedError        another process holds the log directory
    ├── CheckpointError         a checkpoint / signed note is malformed or its signature fails
    └── AuditVerifyError        tamper evidence (names the first broken entry)
"""

from __future__ import annotations

from fractal_lba.errors import FlkError


class AuditError(FlkError):
    """The audit log could not be written or read."""

    code = "audit_error"


class AuditLockedError(AuditError):
    """The log directory is locked by another writer process."""

    code = "audit_locked"


class CheckpointError(AuditError):
    """A checkpoint (C2SP signed note) is malformed or does not verify."""

    code = "checkpoint_invalid"


class AuditVerifyError(AuditError):
    """Tamper evidence: names the first broken entry (segment path and line).

    ``segment`` is the segment path relative to the base dir (or ``anchors.log``), ``line`` the
    1-based line number (``None`` when the failure concerns the whole segment), ``what`` the
    check that failed.
    """

    code = "audit_tampered"

    def __init__(self, what: str, *, segment: str | None = None, line: int | None = None) -> None:
        where = segment or "?"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {what}")
        self.what = what
        self.segment = segment
        self.line = line
