"""Steps 3-10 of the submit path (SPEC section 4), shared by live requests and WAL replay.

The order is data: :data:`PIPELINE_STEPS`, one :class:`~fractal_lba.server.step.Step` per
SPEC item, run in that order by :meth:`Pipeline.process`:

3. ``parse``: parse + validate (and ``X-PCS-Schema-Version`` == body version)    -> 400
4. ``pii_gate`` (tenants that scan): block -> 400 ``pii_detected``; never changes the PCS
   that is verified, only what is written about it
5. ``signature_verification`` with the tenant's active keys, at receive time     -> 401
6. ``vrf_verification`` (tenants that require VRF) -> 401 ``vrf_invalid`` (enforce), or
   counted and noted in the audit reason (report_only); never a signature error
7. ``dedup_lookup`` ``(tenant_id, pcs_id)``: replay the stored outcome, or 422 on a different
   signed payload
8. ``verification``: ``decide`` under the tenant's policy
9. ``dedup_write``: ``put_if_absent`` (first write wins; a loser answers with the winner's)
10. ``audit_append`` (durable), metrics; the caller then answers and marks the WAL outcome

A step raising :class:`ValidationError` (3-4) is answered 400 and one raising
:class:`SignatureError` (5) 401, both audited as ``rejected``. Nothing touches the dedup
store before step 5 passed. A store or audit failure yields a non-final 503 :class:`Reply`:
the request stays pending in the WAL and is retried later, so every admitted request still
ends with exactly one outcome and one audit entry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fractal_lba.adversarial.vrf_gate import GateRunner
from fractal_lba.audit import AuditError, AuditLog
from fractal_lba.audit.entry import Outcome as AuditOutcome
from fractal_lba.config import Settings
from fractal_lba.contract import (
    PCS,
    SignatureError,
    ValidationError,
    decode_record,
    decode_signature,
)
from fractal_lba.contract.model import VERSION_ORDER, record_identity, signed_bytes
from fractal_lba.decision import SanityRejected, VerifyResult, encode_result, evaluate
from fractal_lba.privacy.gate import PiiVerdict
from fractal_lba.server.audit_record import alert_note, audit_entry, noted, reason_label
from fractal_lba.server.inbox import Admit
from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba.server.metrics import Metrics
from fractal_lba.server.step import Step
from fractal_lba.server.submission import JSON_HEADERS as JSON_HEADERS
from fractal_lba.server.submission import REPLAYED_HEADERS, PipelineStepFn, Submission
from fractal_lba.server.submission import Reply as Reply
from fractal_lba.server.submission import TenantContext as TenantContext
from fractal_lba.server.submission import error_body as error_body
from fractal_lba.stores import DedupStore, StoredOutcome, StoreError
from fractal_lba_client.contract import FULL_RECORD_VERSIONS

log = logging.getLogger(LOGGER_NAME)

RETRY_AFTER_S = 1


# --- the steps -------------------------------------------------------------------------------


async def parse(p: Pipeline, s: Submission) -> Reply | None:
    """Step 3: strict decode and schema validation (the tenant's ``min_pcs_version`` too);
    the signature's bytes decoded too."""
    adm = s.adm
    pcs, s.record = decode_record(adm.body)
    if adm.schema_header is not None and adm.schema_header != pcs.version:
        raise ValidationError(
            "X-PCS-Schema-Version",
            "header must equal the body's version",
            code="schema_version_mismatch",
        )
    if VERSION_ORDER[pcs.version] < s.ctx.min_version:
        raise ValidationError(
            "version",
            f"this tenant accepts version {s.ctx.tenant.min_pcs_version} or later",
            code="version_below_minimum",
        )
    s.sig = decode_signature(pcs.sig) if s.ctx.tenant.keyring is not None else b""
    s.pcs = pcs
    return None


async def pii_gate(p: Pipeline, s: Submission) -> Reply | None:
    """Step 4 (:mod:`fractal_lba.privacy.gate`): block -> 400 ``pii_detected``; the verdict
    shapes only what is written about the record (``s.pcs`` stays as received)."""
    gate, pcs = s.ctx.pii, s.pcs
    assert gate is not None and pcs is not None
    verdict = gate.check(pcs)
    if verdict is None:
        return None
    s.pii = verdict
    p.count_pii(verdict)
    if verdict.action == "block":
        err = verdict.error()
        return await p.rejected(s, None, 400, error_body(err.code, err.field, err.detail), err.code)
    return None


def _pii_applies(ctx: TenantContext) -> bool:
    """Tenants whose PII scanning is on (their ``pii`` table, else PII_SCAN_MODE)."""
    return ctx.pii is not None


async def signature_verification(p: Pipeline, s: Submission) -> Reply | None:
    """Step 5: the tenant's active keys at the request's receive time (raises SignatureError).

    0.1/0.2 sign the 8-field payload; 0.3 the whole record as received, bound to the tenant
    it is submitted as."""
    pcs = s.pcs
    assert pcs is not None
    tenant = s.ctx.tenant
    keyring = tenant.keyring
    payload = signed_bytes(pcs, s.record, tenant.id)
    full = pcs.version in FULL_RECORD_VERSIONS
    if keyring is None:
        p.metrics.unsigned.inc()
        log.warning(
            "UNSAFE: signature verification is disabled (PCS_SIGN_ALG=none)",
            extra={"pcs_id": pcs.pcs_id, "tenant_id": tenant.id},
        )
    elif keyring.verify(payload, s.sig, s.adm.received_at, full_record=full).legacy_digest:
        p.metrics.legacy_digest.inc()
    s.payload = payload
    s.payload_hash = record_identity(pcs, s.record, payload)
    return None


async def vrf_verification(p: Pipeline, s: Submission) -> Reply | None:
    """Step 6 (:mod:`fractal_lba.adversarial.vrf_gate`): 401 ``vrf_invalid`` in enforce mode;
    in report_only counted and noted in the audit reason. Never a signature error."""
    gate = s.ctx.vrf
    pcs = s.pcs
    assert gate is not None and pcs is not None
    failure = await p.vrf_runner.check(gate, pcs)
    if failure is None:
        p.metrics.vrf_verified.inc()
        return None
    p.metrics.vrf_invalid.labels(reason=failure.reason, mode=gate.mode).inc()
    s.ctx.counters.vrf_invalid.inc()
    if gate.enforce:
        body = error_body("vrf_invalid", failure.field, failure.detail)
        return await p.rejected(s, pcs, 401, body, failure.audit_reason)
    s.note = failure.audit_reason
    return None


def _vrf_applies(ctx: TenantContext) -> bool:
    """Only tenants that require VRF run the gate."""
    return ctx.vrf is not None


async def dedup_lookup(p: Pipeline, s: Submission) -> Reply | None:
    """Step 7: a stored outcome answers (replay, duplicate or 422 conflict)."""
    pcs = s.pcs
    assert pcs is not None
    try:
        hit = await p.store.get(s.ctx.tenant.id, pcs.pcs_id)
    except StoreError:
        return p.unavailable("get")
    if hit is not None:
        return await p.stored(s, hit)
    return None


async def verification(p: Pipeline, s: Submission) -> Reply | None:
    """Step 8: the decision table under the tenant's policy (a sanity 400 is stored too)."""
    pcs = s.pcs
    assert pcs is not None
    ctx = s.ctx
    try:
        decision = evaluate(
            pcs, ctx.tenant.id, ctx.tenant.policy, strict=p.settings.strict_mode,
            params=ctx.params,
        )  # fmt: skip
    except SanityRejected as exc:
        s.status, s.body, s.reason = 400, error_body(exc.code, exc.field, exc.detail), exc.code
        s.checks = exc.checks
        return None
    result = decision.result
    s.result, s.checks = result, decision.failed_checks
    s.note = noted(s.note, alert_note(decision))
    s.status, s.body, s.reason = result.status_code, encode_result(result), result.reason
    return None


async def dedup_write(p: Pipeline, s: Submission) -> Reply | None:
    """Step 9: first write wins; the loser of a race answers with the winner's outcome."""
    pcs = s.pcs
    assert pcs is not None
    adm, ctx = s.adm, s.ctx
    mine = StoredOutcome(s.status, s.body, s.payload_hash, adm.request_id, p.clock())
    try:
        winner = await p.store.put_if_absent(ctx.tenant.id, pcs.pcs_id, mine, ctx.dedup_ttl)
    except StoreError:
        return p.unavailable("put")
    if winner.request_id != adm.request_id:
        return await p.stored(s, winner)
    return None


async def audit_append(p: Pipeline, s: Submission) -> Reply | None:
    """Step 10: the outcome's audit entry (durable), then the metrics; the answer."""
    pcs = s.pcs
    assert pcs is not None
    result = s.result
    if result is None:
        reply = await p.rejected(s, pcs, 400, s.body, s.reason)
        if reply.final:
            p.count_checks(s.checks)
        return reply
    status = s.status
    outcome: AuditOutcome = "accepted" if status == 200 else "escalated"
    if not await p.record_audit(s, pcs, outcome, status, noted(s.reason, s.note)):
        return p.unavailable("audit")
    p.count_result(s.ctx, result, s.checks)
    return Reply(status, s.body, reason=s.reason, pcs_id=pcs.pcs_id, scrub=_scrub(s.pii))


PIPELINE_STEPS: tuple[Step[PipelineStepFn], ...] = (
    Step("3", "parse", parse),
    Step("4", "pii_gate", pii_gate, _pii_applies),
    Step("5", "signature_verification", signature_verification),
    Step("6", "vrf_verification", vrf_verification, _vrf_applies),
    Step("7", "dedup_lookup", dedup_lookup),
    Step("8", "verification", verification),
    Step("9", "dedup_write", dedup_write),
    Step("10", "audit_append", audit_append),
)
"""Steps 3-10 in SPEC order; :meth:`Pipeline.steps_for` picks a tenant's."""


@dataclass
class Pipeline:
    """Runs a tenant's steps 3-10 for one admitted request; holds no per-request state, and
    the outcome helpers the steps answer with (stored, rejected, unavailable, audit)."""

    settings: Settings
    store: DedupStore
    audit: AuditLog
    metrics: Metrics
    clock: Callable[[], float] = time.time
    _unavailable: dict[str, Reply] = field(default_factory=dict)
    vrf_runner: GateRunner = field(init=False)

    def __post_init__(self) -> None:
        self.vrf_runner = GateRunner(self.settings.vrf_verify_threads)

    def close(self) -> None:
        """Stop the VRF worker threads, if any (after the last request)."""
        self.vrf_runner.close()

    @staticmethod
    def steps_for(ctx: TenantContext) -> tuple[PipelineStepFn, ...]:
        """The step functions of :data:`PIPELINE_STEPS` that apply to a tenant, in order."""
        return tuple(step.run for step in PIPELINE_STEPS if step.applies(ctx))

    async def process(self, adm: Admit, ctx: TenantContext) -> Reply:
        """Answer an admitted request (live or replayed) following SPEC section 4."""
        s = Submission(adm, ctx)
        try:
            for step in ctx.steps:
                reply = await step(self, s)
                if reply is not None:
                    return reply
        except ValidationError as exc:
            body = error_body(exc.code, exc.field, exc.detail)
            return await self.rejected(s, None, 400, body, exc.code)
        except SignatureError as exc:
            ctx.counters.signature_errors.inc()
            self.metrics.signature_errors.inc()
            body = error_body(exc.code, "sig", "signature does not verify with any active key")
            return await self.rejected(s, s.pcs, 401, body, exc.code)
        raise RuntimeError("submit path: the last step gave no answer")

    def unavailable(self, op: str) -> Reply:
        """Non-final 503 with ``Retry-After`` (fail closed; the WAL keeps the request)."""
        if op == "audit":
            self.metrics.audit_errors.inc()
        else:
            self.metrics.store_errors.labels(op=op).inc()
        reply = self._unavailable.get(op)
        if reply is None:
            what = "audit log" if op == "audit" else "dedup store"
            reply = Reply(
                503,
                error_body(f"{'audit' if op == 'audit' else 'store'}_unavailable", None,
                           f"{what} unavailable; the request is kept and will be processed, "
                           "retry later"),
                (*JSON_HEADERS, (b"retry-after", str(RETRY_AFTER_S).encode())),
                final=False,
                reason=f"{op}_unavailable",
            )  # fmt: skip
            self._unavailable[op] = reply
        return reply

    async def stored(self, s: Submission, stored: StoredOutcome) -> Reply:
        """A stored outcome exists: conflict (422), our own (replay), or a duplicate."""
        pcs, ctx = s.pcs, s.ctx
        assert pcs is not None
        if stored.payload_hash != s.payload_hash:
            self.metrics.conflicts.inc()
            ctx.counters.rejected.inc()
            body = error_body(
                "idempotency_conflict",
                "pcs_id",
                "this pcs_id was already submitted with a different signed payload",
            )
            if not await self.record_audit(s, pcs, "conflict", 422, "idempotency_conflict"):
                return self.unavailable("audit")
            return Reply(
                422, body, reason="idempotency_conflict", pcs_id=pcs.pcs_id, scrub=_scrub(s.pii)
            )
        if stored.request_id == s.adm.request_id:
            # Replay of a request whose outcome was stored before a crash or an outage: audit
            # the outcome itself (re-deciding is pure, so the audit fields are the same).
            return await self._own_stored(s, pcs, stored)
        ctx.counters.dedup_hits.inc()
        self.metrics.dedup_hits.inc()
        if not await self.record_audit(s, pcs, "duplicate", stored.status, None):
            return self.unavailable("audit")
        return Reply(
            stored.status, stored.body, REPLAYED_HEADERS, reason="duplicate", pcs_id=pcs.pcs_id,
            scrub=_scrub(s.pii),
        )  # fmt: skip

    async def _own_stored(self, s: Submission, pcs: PCS, stored: StoredOutcome) -> Reply:
        ctx = s.ctx
        reason: str | None
        alert: str | None = None
        try:
            decision = evaluate(
                pcs, ctx.tenant.id, ctx.tenant.policy, strict=self.settings.strict_mode,
                params=ctx.params,
            )  # fmt: skip
            reason, alert = decision.result.reason, alert_note(decision)
        except SanityRejected as exc:
            reason = exc.code
        outcome: AuditOutcome = (
            "accepted"
            if stored.status == 200
            else "escalated"
            if stored.status == 202
            else "rejected"
        )
        audit_reason = noted(reason, s.note, alert)
        if not await self.record_audit(s, pcs, outcome, stored.status, audit_reason):
            return self.unavailable("audit")
        return Reply(
            stored.status, stored.body, reason=reason, pcs_id=pcs.pcs_id, scrub=_scrub(s.pii)
        )

    async def rejected(
        self, s: Submission, pcs: PCS | None, status: int, body: bytes, reason: str | None
    ) -> Reply:
        """Answer ``status`` with ``body``, audited as ``rejected`` (``pcs``: the claimed values
        to record, None before the record parsed)."""
        self.metrics.rejected.labels(reason=reason_label(reason)).inc()
        s.ctx.counters.rejected.inc()
        if not await self.record_audit(s, pcs, "rejected", status, noted(reason, s.note)):
            return self.unavailable("audit")
        return Reply(
            status, body, reason=reason, pcs_id=pcs.pcs_id if pcs else None, scrub=_scrub(s.pii)
        )

    async def record_audit(
        self,
        s: Submission,
        pcs: PCS | None,
        outcome: AuditOutcome,
        status: int,
        reason: str | None,
    ) -> bool:
        """Durably append the audit entry; False when the audit log failed.

        With a PII verdict the entry carries the gate's copy of ``shard_id`` (keyed tokens in
        place of found values) and its ``pii`` note; a found value never enters an entry.
        """
        entry = audit_entry(
            s, pcs, outcome, status, reason, now=self.clock(), region_id=self.settings.region_id
        )
        try:
            await self.audit.append(entry)
        except AuditError:
            log.error("audit append failed", extra={"request_id": s.adm.request_id}, exc_info=True)
            return False
        return True

    def count_pii(self, pii: PiiVerdict) -> None:
        """``flk_pii_detections_total{type,mode}`` and, in report-only rollout,
        ``flk_pii_would_have_total{type,mode}`` (labels from configuration only)."""
        m = self.metrics
        for f in pii.findings:
            m.pii_detections.labels(type=f.type, mode=pii.action).inc()
            if pii.would_have is not None:
                m.pii_would_have.labels(type=f.type, mode=pii.would_have).inc()

    def count_checks(self, checks: tuple[str, ...]) -> None:
        """``flk_sanity_check_failed_total{check}``: every failed check, not only the first."""
        for check in checks:
            self.metrics.sanity_failed.labels(check=check).inc()

    def count_result(
        self, ctx: TenantContext, result: VerifyResult, checks: tuple[str, ...] = ()
    ) -> None:
        """The metrics of a decided request (step 10, after its audit entry)."""
        m = self.metrics
        m.anomaly_score.observe(result.anomaly_score)
        if result.anomaly_score >= ctx.tenant.policy.anomaly.alert_threshold:
            m.anomaly_alerts.inc()
        self.count_checks(checks)
        if result.accepted and not result.escalated:
            ctx.counters.accepted.inc()
            m.accepted.inc()
        if result.escalated:
            ctx.counters.escalated.inc()
            m.escalated.inc()


def _scrub(pii: PiiVerdict | None) -> bool:
    return pii is not None and pii.scrub_wal
