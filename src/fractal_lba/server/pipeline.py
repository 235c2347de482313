"""Steps 3-10 of the submit path (SPEC section 4), shared by live requests and WAL replay.

The order is a contract and reads top to bottom in :meth:`Pipeline.process`:

3. parse + validate (and ``X-PCS-Schema-Version`` == body version)        -> 400
4. PII gate (:mod:`fractal_lba.privacy.gate`): block -> 400 ``pii_detected``; never changes
   the PCS that is verified, only what is written about it
5. signature with the tenant's active keys, at the request's receive time -> 401
6. VRF gate (:mod:`fractal_lba.adversarial.vrf_gate`) -> 401 ``vrf_invalid`` (enforce), or
   counted and noted in the audit reason (report_only); never a signature error
7. dedup lookup ``(tenant_id, pcs_id)``: replay the stored outcome, or 422 on a different
   signed payload
8. ``decide`` under the tenant's policy
9. ``put_if_absent`` (first write wins; a loser answers with the winner's outcome)
10. audit append (durable), metrics; the caller then answers and marks the WAL outcome

Nothing touches the dedup store before step 5 passed. A store or audit failure yields a
non-final 503 :class:`Reply`: the request stays pending in the WAL and is retried later, so
every admitted request still ends with exactly one outcome and one audit entry.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from fractal_lba.adversarial.vrf_gate import VrfGate
from fractal_lba.audit import AuditEntry, AuditError, AuditLog
from fractal_lba.audit.entry import Outcome as AuditOutcome
from fractal_lba.config import Settings
from fractal_lba.contract import (
    PCS,
    SignatureError,
    ValidationError,
    decode_pcs,
    decode_signature,
)
from fractal_lba.decision import SanityRejected, VerifyResult, decide, encode_result, signal_params
from fractal_lba.privacy.gate import PiiGate, PiiVerdict
from fractal_lba.server.inbox import Admit
from fractal_lba.server.logs import LOGGER_NAME
from fractal_lba.server.metrics import Metrics, TenantCounters
from fractal_lba.signals import SignalParams
from fractal_lba.stores import DedupStore, StoredOutcome, StoreError
from fractal_lba.tenancy import Tenant

log = logging.getLogger(LOGGER_NAME)

Headers = tuple[tuple[bytes, bytes], ...]
JSON_HEADERS: Headers = ((b"content-type", b"application/json"),)
REPLAYED_HEADERS: Headers = (*JSON_HEADERS, (b"idempotent-replayed", b"true"))
RETRY_AFTER_S = 1

_json = msgspec.json.Encoder()


def error_body(error: str, field: str | None = None, detail: str | None = None) -> bytes:
    """``{"error", "field", "detail"}`` JSON; callers never pass request values."""
    obj: dict[str, str] = {"error": error}
    if field is not None:
        obj["field"] = field
    if detail is not None:
        obj["detail"] = detail
    return _json.encode(obj)


@dataclass(frozen=True, slots=True)
class Reply:
    """The HTTP answer to one admitted request.

    ``final`` is False for a 503 after admission: no outcome was reached, the WAL record stays
    pending and the request is retried (live deferral, or replay at the next start).
    """

    status: int
    body: bytes
    headers: Headers = JSON_HEADERS
    final: bool = True
    reason: str | None = None
    pcs_id: str | None = None
    scrub: bool = False
    """The raw body held PII under block/redact: it must leave the inbox WAL within
    ``PII_WAL_RETENTION`` of this outcome."""


@dataclass(frozen=True, slots=True)
class TenantContext:
    """Per-tenant state prepared once at startup: metric children, policy hash, params."""

    tenant: Tenant
    counters: TenantCounters
    params: SignalParams
    policy_hash: str
    dedup_ttl: float
    limited: bool
    vrf: VrfGate | None = None
    pii: PiiGate | None = None
    """The tenant's prepared PII gate (None: scanning is off for it)."""

    @classmethod
    def build(
        cls,
        tenant: Tenant,
        metrics: Metrics,
        *,
        global_limit: bool = False,
        pii: PiiGate | None = None,
    ) -> TenantContext:
        """Prepare ``tenant`` for the hot path (``global_limit``: a global rate applies)."""
        policy = tenant.policy
        return cls(
            tenant=tenant,
            counters=metrics.tenant(tenant.id),
            params=signal_params(policy),
            policy_hash=policy.hash(),
            dedup_ttl=float(policy.params.dedup_ttl),
            limited=tenant.limited or global_limit,
            vrf=(
                None
                if tenant.vrf is None
                else VrfGate.for_tenant(tenant.id, tenant.vrf.public_key, tenant.vrf.mode)
            ),
            pii=pii,
        )


def _iso(ts: float) -> str:
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


@dataclass
class Pipeline:
    """Runs steps 3-10 for one admitted request; holds no per-request state."""

    settings: Settings
    store: DedupStore
    audit: AuditLog
    metrics: Metrics
    clock: Callable[[], float] = time.time
    _unavailable: dict[str, Reply] = field(default_factory=dict)

    async def process(self, adm: Admit, ctx: TenantContext) -> Reply:
        """Answer an admitted request (live or replayed) following SPEC section 4."""
        tenant = ctx.tenant
        keyring = tenant.keyring
        # 3. parse + schema validation
        try:
            pcs = decode_pcs(adm.body)
            if adm.schema_header is not None and adm.schema_header != pcs.version:
                raise ValidationError(
                    "X-PCS-Schema-Version",
                    "header must equal the body's version",
                    code="schema_version_mismatch",
                )
            sig = decode_signature(pcs.sig) if keyring is not None else b""
        except ValidationError as exc:
            body = error_body(exc.code, exc.field, exc.detail)
            return await self._rejected(adm, ctx, None, 400, body, exc.code)
        # 4. PII gate: the verdict shapes only what is written; ``pcs`` stays as received
        pii = ctx.pii.check(pcs) if ctx.pii is not None else None
        if pii is not None:
            self._count_pii(pii)
            if pii.action == "block":
                err = pii.error()
                body = error_body(err.code, err.field, err.detail)
                return await self._rejected(adm, ctx, None, 400, body, err.code, pii=pii)
        # 5. signature
        payload = pcs.signed_payload()
        if keyring is None:
            self.metrics.unsigned.inc()
            log.warning(
                "UNSAFE: signature verification is disabled (PCS_SIGN_ALG=none)",
                extra={"pcs_id": pcs.pcs_id, "tenant_id": tenant.id},
            )
        else:
            try:
                verified = keyring.verify(payload, sig, adm.received_at)
            except SignatureError as exc:
                ctx.counters.signature_errors.inc()
                self.metrics.signature_errors.inc()
                body = error_body(exc.code, "sig", "signature does not verify with any active key")
                return await self._rejected(adm, ctx, pcs, 401, body, exc.code, pii=pii)
            if verified.legacy_digest:
                self.metrics.legacy_digest.inc()
        # 6. VRF gate: its own error and metric, never a signature error
        note: str | None = None
        if ctx.vrf is not None:
            failure = ctx.vrf.check(pcs)
            if failure is None:
                self.metrics.vrf_verified.inc()
            else:
                self.metrics.vrf_invalid.labels(reason=failure.reason, mode=ctx.vrf.mode).inc()
                ctx.counters.vrf_invalid.inc()
                if ctx.vrf.enforce:
                    body = error_body("vrf_invalid", failure.field, failure.detail)
                    return await self._rejected(
                        adm, ctx, pcs, 401, body, failure.audit_reason, pii=pii
                    )
                note = failure.audit_reason
        payload_hash = hashlib.sha256(payload).hexdigest()
        tid = tenant.id
        # 7. dedup lookup
        try:
            hit = await self.store.get(tid, pcs.pcs_id)
        except StoreError:
            return self.unavailable("get")
        if hit is not None:
            return await self._stored(adm, ctx, pcs, hit, payload_hash, note, pii)
        # 8. verification
        result: VerifyResult | None = None
        try:
            result = decide(
                pcs, tid, tenant.policy, strict=self.settings.strict_mode, params=ctx.params
            )
            status, body, reason = result.status_code, encode_result(result), result.reason
        except SanityRejected as exc:
            status, body, reason = 400, error_body(exc.code, exc.field, exc.detail), exc.code
            self.metrics.sanity_failed.labels(check=exc.field).inc()
        # 9. dedup write, first write wins
        mine = StoredOutcome(status, body, payload_hash, adm.request_id, self.clock())
        try:
            winner = await self.store.put_if_absent(tid, pcs.pcs_id, mine, ctx.dedup_ttl)
        except StoreError:
            return self.unavailable("put")
        if winner.request_id != adm.request_id:
            return await self._stored(adm, ctx, pcs, winner, payload_hash, None, pii)
        # 10. audit, metrics, response
        if result is None:
            return await self._rejected(
                adm, ctx, pcs, 400, body, reason, stored=True, note=note, pii=pii
            )
        if not await self._audit(
            adm, ctx, pcs, "accepted" if status == 200 else "escalated", status,
            _noted(reason, note), pii,
        ):  # fmt: skip
            return self.unavailable("audit")
        self._count_result(ctx, result)
        return Reply(status, body, reason=reason, pcs_id=pcs.pcs_id, scrub=_scrub(pii))

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

    async def _stored(
        self,
        adm: Admit,
        ctx: TenantContext,
        pcs: PCS,
        stored: StoredOutcome,
        payload_hash: str,
        note: str | None = None,
        pii: PiiVerdict | None = None,
    ) -> Reply:
        """A stored outcome exists: conflict (422), our own (replay), or a duplicate."""
        if stored.payload_hash != payload_hash:
            self.metrics.conflicts.inc()
            ctx.counters.rejected.inc()
            body = error_body(
                "idempotency_conflict",
                "pcs_id",
                "this pcs_id was already submitted with a different signed payload",
            )
            if not await self._audit(adm, ctx, pcs, "conflict", 422, "idempotency_conflict", pii):
                return self.unavailable("audit")
            return Reply(
                422, body, reason="idempotency_conflict", pcs_id=pcs.pcs_id, scrub=_scrub(pii)
            )
        if stored.request_id == adm.request_id:
            # Replay of a request whose outcome was stored before a crash or an outage: audit
            # the outcome itself (re-deciding is pure, so the audit fields are the same).
            return await self._own_stored(adm, ctx, pcs, stored, note, pii)
        ctx.counters.dedup_hits.inc()
        self.metrics.dedup_hits.inc()
        if not await self._audit(adm, ctx, pcs, "duplicate", stored.status, None, pii):
            return self.unavailable("audit")
        return Reply(
            stored.status, stored.body, REPLAYED_HEADERS, reason="duplicate", pcs_id=pcs.pcs_id,
            scrub=_scrub(pii),
        )  # fmt: skip

    async def _own_stored(
        self,
        adm: Admit,
        ctx: TenantContext,
        pcs: PCS,
        stored: StoredOutcome,
        note: str | None,
        pii: PiiVerdict | None,
    ) -> Reply:
        reason: str | None
        try:
            result = decide(
                pcs, ctx.tenant.id, ctx.tenant.policy, strict=self.settings.strict_mode,
                params=ctx.params,
            )  # fmt: skip
            reason = result.reason
        except SanityRejected as exc:
            reason = exc.code
        outcome: AuditOutcome = (
            "accepted"
            if stored.status == 200
            else "escalated"
            if stored.status == 202
            else "rejected"
        )
        if not await self._audit(adm, ctx, pcs, outcome, stored.status, _noted(reason, note), pii):
            return self.unavailable("audit")
        return Reply(
            stored.status, stored.body, reason=reason, pcs_id=pcs.pcs_id, scrub=_scrub(pii)
        )

    async def _rejected(
        self,
        adm: Admit,
        ctx: TenantContext,
        pcs: PCS | None,
        status: int,
        body: bytes,
        reason: str | None,
        *,
        stored: bool = False,
        note: str | None = None,
        pii: PiiVerdict | None = None,
    ) -> Reply:
        self.metrics.rejected.labels(reason=_reason_label(reason)).inc()
        ctx.counters.rejected.inc()
        if not await self._audit(adm, ctx, pcs, "rejected", status, _noted(reason, note), pii):
            return self.unavailable("audit")
        return Reply(
            status, body, reason=reason, pcs_id=pcs.pcs_id if pcs else None, scrub=_scrub(pii)
        )

    async def _audit(
        self,
        adm: Admit,
        ctx: TenantContext,
        pcs: PCS | None,
        outcome: AuditOutcome,
        status: int,
        reason: str | None,
        pii: PiiVerdict | None = None,
    ) -> bool:
        """Durably append the audit entry; False when the audit log failed.

        With a PII verdict the entry carries the gate's copy of ``shard_id`` (keyed tokens in
        place of found values) and its ``pii`` note; a found value never enters an entry.
        """
        policy = ctx.tenant.policy
        shard_id = None
        if pcs is not None and status != 401:  # a forger's claims never enter the lineage
            shard_id = pcs.shard_id if pii is None else pii.shard_id
        entry = AuditEntry(
            timestamp=_iso(self.clock()),
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
            policy_version=policy.version,
            region_id=self.settings.region_id,
            request_id=adm.request_id,
            shard_id=shard_id,
            pii=None if pii is None else pii.note(),
        )
        try:
            await self.audit.append(entry)
        except AuditError:
            log.error("audit append failed", extra={"request_id": adm.request_id}, exc_info=True)
            return False
        return True

    def _count_pii(self, pii: PiiVerdict) -> None:
        """``flk_pii_detections_total{type,mode}`` and, in report-only rollout,
        ``flk_pii_would_have_total{type,mode}`` (labels from configuration only)."""
        m = self.metrics
        for f in pii.findings:
            m.pii_detections.labels(type=f.type, mode=pii.action).inc()
            if pii.would_have is not None:
                m.pii_would_have.labels(type=f.type, mode=pii.would_have).inc()

    def _count_result(self, ctx: TenantContext, result: VerifyResult) -> None:
        m = self.metrics
        m.anomaly_score.observe(result.anomaly_score)
        reason = result.reason
        if reason is not None and reason.startswith("sanity:"):
            m.sanity_failed.labels(check=reason[len("sanity:") :]).inc()
        if result.accepted and not result.escalated:
            ctx.counters.accepted.inc()
            m.accepted.inc()
        if result.escalated:
            ctx.counters.escalated.inc()
            m.escalated.inc()


_REASON_LABELS = frozenset(
    {
        "malformed_json", "invalid_number", "invalid_field", "missing_field", "unknown_field",
        "unknown_schema", "unsupported_version", "pcs_id_mismatch", "invalid_pcs",
        "schema_version_mismatch", "signature_invalid", "duplicate_key", "pii_detected",
    }
)  # fmt: skip


def _reason_label(reason: str | None) -> str:
    """Bounded label values: unknown codes collapse to ``other`` (no cardinality blow-up)."""
    if reason is None:
        return "other"
    if reason in _REASON_LABELS or reason.startswith(("sanity:", "vrf_invalid:")):
        return reason
    return "other"


def _scrub(pii: PiiVerdict | None) -> bool:
    return pii is not None and pii.scrub_wal


def _noted(reason: str | None, note: str | None) -> str | None:
    """The audit reason with a report-only VRF failure appended (``reason;vrf_invalid:x``)."""
    if note is None:
        return reason
    return note if reason is None else f"{reason};{note}"
