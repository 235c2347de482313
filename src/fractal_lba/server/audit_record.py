"""What the submit path writes about a request: its audit entry (SPEC section 7), the notes
appended to an audit reason, and the bounded reason labels of the rejection metric.

Pure functions of the :class:`~fractal_lba.server.submission.Submission` and the clock; the
pipeline appends the entry (durably) and answers.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime

from fractal_lba.audit import AuditEntry
from fractal_lba.audit.entry import Outcome
from fractal_lba.contract import PCS
from fractal_lba.decision import Decision
from fractal_lba.server.submission import Submission


def audit_entry(
    s: Submission,
    pcs: PCS | None,
    outcome: Outcome,
    status: int,
    reason: str | None,
    *,
    now: float,
    region_id: str,
) -> AuditEntry:
    """The entry of one outcome: the record's claimed values (``pcs``; None before it parsed),
    the tenant's policy version and params hash, and what happened.

    With a PII verdict the entry carries the gate's copy of ``shard_id`` (keyed tokens in
    place of found values) and its ``pii`` note; a found value never enters an entry.
    """
    ctx, adm, pii = s.ctx, s.adm, s.pii
    shard_id = None
    if pcs is not None and status != 401:  # a forger's claims never enter the lineage
        shard_id = pcs.shard_id if pii is None else pii.shard_id
    return AuditEntry(
        timestamp=iso_timestamp(now),
        pcs_id=pcs.pcs_id if pcs else pii.pcs_id if pii else None,
        tenant_id=ctx.tenant.id,
        merkle_root=pcs.merkle_root if pcs else None,
        D_hat=pcs.D_hat if pcs else None,
        coh_star=pcs.coh_star if pcs else None,
        r=pcs.r if pcs else None,
        budget=pcs.budget if pcs else None,
        regime=pcs.regime if pcs else None,
        verify_outcome=outcome,
        reason=reason,
        status=status,
        verify_params_hash=ctx.policy_hash,
        policy_version=ctx.tenant.policy.version,
        region_id=region_id,
        request_id=adm.request_id,
        shard_id=shard_id,
        pii=None if pii is None else pii.note(),
    )


def iso_timestamp(ts: float) -> str:
    """RFC 3339 UTC with milliseconds (``2026-11-28T15:31:06.123Z``), as ``datetime`` writes it
    (microseconds rounded half-even, then truncated to milliseconds); the date-time part is
    formatted once per second, not per request."""
    frac, whole = math.modf(ts)  # the same split and rounding as datetime.fromtimestamp
    us = round(frac * 1e6)
    sec = int(whole)
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    elif us < 0:
        sec, us = sec - 1, us + 1_000_000
    return f"{_second(sec)}.{us // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second(sec: int) -> str:
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")


REASON_LABELS = frozenset(
    {
        "malformed_json", "invalid_number", "invalid_field", "missing_field", "unknown_field",
        "unknown_schema", "unsupported_version", "pcs_id_mismatch", "invalid_pcs",
        "schema_version_mismatch", "signature_invalid", "duplicate_key", "pii_detected",
        "version_below_minimum",
    }
)  # fmt: skip


def reason_label(reason: str | None) -> str:
    """Bounded label values: unknown codes collapse to ``other`` (no cardinality blow-up)."""
    if reason is None:
        return "other"
    if reason in REASON_LABELS or reason.startswith(("sanity:", "vrf_invalid:")):
        return reason
    return "other"


def noted(reason: str | None, *notes: str | None) -> str | None:
    """The audit reason with notes appended: a report-only VRF failure, an anomaly alert
    (``regime_mismatch;vrf_invalid:seed_mismatch;anomaly_alert``)."""
    parts = [p for p in (reason, *notes) if p is not None]
    return ";".join(parts) if parts else None


def alert_note(decision: Decision) -> str | None:
    """``anomaly_alert`` when the score reached the alert threshold without deciding."""
    return "anomaly_alert" if decision.alert and decision.result.reason != "anomaly" else None
