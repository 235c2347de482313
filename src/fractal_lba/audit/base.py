"""The audit log interface the verifier's submit path and replay depend on."""

from __future__ import annotations

from collections.abc import Set
from typing import Protocol

from fractal_lba.audit.entry import AuditEntry


class AuditStats(Protocol):
    """Write counters of an audit log that the server exports."""

    @property
    def fsyncs(self) -> int:
        """fdatasync calls so far (``flk_audit_fsyncs_total``)."""
        ...


class AuditLog(Protocol):
    """Durable, chained audit log (step 10 of the submit path)."""

    @property
    def stats(self) -> AuditStats:
        """Write counters (read after each request to export the fsync count)."""
        ...

    async def start(self) -> None:
        """Open/recover the log; start the group-commit writer. Call inside the event loop."""
        ...

    async def append(self, entry: AuditEntry) -> AuditEntry:
        """Chain and durably write ``entry``; return it with prev_hash/entry_hash set.

        Returns only after the entry is fsync'd (group commit shares fsyncs across requests).
        """
        ...

    def find_requests(self, request_ids: Set[str], since: float) -> set[str]:
        """Which of ``request_ids`` already have an entry written at or after ``since``
        (unix seconds). Replay uses it to avoid auditing a request twice after a crash."""
        ...

    def check_writable(self) -> None:
        """Raise AuditError when the log cannot accept entries (for GET /ready)."""
        ...

    async def close(self) -> None:
        """Flush, seal what must be sealed, stop the writer."""
        ...
