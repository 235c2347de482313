"""Audit errors."""

from __future__ import annotations

from fractal_lba.errors import FlkError


class AuditError(FlkError):
    """The audit log could not be written or read."""

    code = "audit_error"


class AuditVerifyError(AuditError):
    """Tamper evidence: names the first broken entry (segment path and line)."""

    code = "audit_tampered"
