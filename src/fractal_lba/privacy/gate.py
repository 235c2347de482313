"""Step 4 of the submit path (SPEC section 4): the PII gate's verdict for one PCS.

The gate sits before the signature check and never changes what is verified: the PCS object
the pipeline verifies, de-duplicates and decides on is the one decoded from the bytes as
received. What the gate returns is only what the server may *write* about the request:

- ``findings`` (type, safe field path, offset, length, confidence) for metrics and the audit
  note; paths never contain a value (a PII meta key is shown by its token);
- ``shard_id``: the copy of the shard id that stored and audited records carry, with each
  PII span replaced by a keyed-hash token (``user-[REDACTED_EMAIL:1a2b3c4d]``) so lineage
  still groups it. This is applied in every mode that scans: a value the gate has found is
  never written by the server into its own records, whatever the mode;
- ``action``: ``detect`` (proceed), ``block`` (400 ``pii_detected``) or ``redact``
  (proceed, and the raw WAL body goes early: ``scrub_wal``); ``would_have`` names the
  configured mode when ``report_only`` turned it into detect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fractal_lba.contract import PCS, ValidationError
from fractal_lba.privacy.findings import Finding
from fractal_lba.privacy.keys import KeyedHasher
from fractal_lba.privacy.policy import PiiMode, PiiSettings
from fractal_lba.privacy.scanner import Scanner, redact_text, scan_pcs

PII_DETECTED = "pii_detected"


class PiiDetected(ValidationError):
    """Block mode found PII (-> 400 ``pii_detected``); names the field and type only."""

    def __init__(self, finding: Finding, total: int) -> None:
        where = "meta key" if finding.part == "key" else "field"
        more = f" ({total - 1} more finding(s) in this PCS)" if total > 1 else ""
        super().__init__(
            finding.field,
            f"{where} contains PII of type {finding.type}; remove or mask it{more}",
            code=PII_DETECTED,
        )
        self.pii_type = finding.type


@dataclass(frozen=True, slots=True)
class PiiVerdict:
    """What the gate found in one PCS and what the server does about it."""

    findings: tuple[Finding, ...]
    action: PiiMode
    would_have: PiiMode | None
    shard_id: str
    pcs_id: str
    """The PCS's id (a hash, no PII): a blocked request's audit entry is found by it."""

    @property
    def scrub_wal(self) -> bool:
        """Block or redact for real: the raw body must leave the WAL within the retention."""
        return self.action in ("block", "redact")

    def note(self) -> str:
        """The audit note: compact JSON ``[[type, field], ...]`` (sorted, no values)."""
        pairs = sorted({(f.type, f.field) for f in self.findings})
        return json.dumps([list(p) for p in pairs], separators=(",", ":"))

    def error(self) -> PiiDetected:
        return PiiDetected(self.findings[0], len(self.findings))


@dataclass(frozen=True)
class PiiGate:
    """One tenant's prepared gate: its policy, its compiled scanner, the shared hasher."""

    tenant_id: str
    settings: PiiSettings
    scanner: Scanner
    hasher: KeyedHasher

    @classmethod
    def build(cls, tenant_id: str, settings: PiiSettings, hasher: KeyedHasher) -> PiiGate | None:
        """The gate for a tenant, or None when its mode is ``off`` (nothing to do per request)."""
        if not settings.enabled:
            return None
        return cls(tenant_id, settings, Scanner(settings.scan_config()), hasher)

    def check(self, pcs: PCS) -> PiiVerdict | None:
        """Scan ``pcs``; None when nothing was found (the common case)."""
        scan = scan_pcs(self.scanner, pcs)
        if not scan:
            return None
        s = self.settings
        shard = pcs.shard_id
        if scan.shard_id:
            tid = self.tenant_id
            shard = redact_text(shard, scan.shard_id, lambda t, v: self.hasher.token(tid, t, v))
        would = s.mode if s.report_only and s.mode in ("block", "redact") else None
        return PiiVerdict(scan.findings, s.action, would, shard, pcs.pcs_id)
