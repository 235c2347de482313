"""Prometheus metrics of the verifier (SPEC section 9), registered on a registry passed in.

Per-tenant children are resolved once per tenant and cached, so the hot path does a dict
lookup and an ``inc()``, never a ``labels()`` call.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

_PAIRS = ("ingest", "dedup_hits", "accepted", "escalated", "signature_errors", "wal_errors")


@dataclass(frozen=True, slots=True)
class TenantCounters:
    """The ``..._by_tenant_total{tenant_id}`` children of one tenant."""

    ingest: Counter
    dedup_hits: Counter
    accepted: Counter
    escalated: Counter
    signature_errors: Counter
    wal_errors: Counter
    rejected: Counter
    rate_limited: Counter
    quota_exceeded: Counter
    vrf_invalid: Counter


class Metrics:
    """All verifier metrics. Names follow SPEC section 9 (counters get ``_total``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.totals: dict[str, Counter] = {}
        self.by_tenant: dict[str, Counter] = {}
        for name in _PAIRS:
            words = name.replace("_", " ")
            self.totals[name] = Counter(f"flk_{name}", f"PCS {words}.", registry=registry)
            self.by_tenant[name] = Counter(
                f"flk_{name}_by_tenant", f"PCS {words} per tenant.", ["tenant_id"],
                registry=registry,
            )  # fmt: skip
        self.ingest = self.totals["ingest"]
        self.dedup_hits = self.totals["dedup_hits"]
        self.accepted = self.totals["accepted"]
        self.escalated = self.totals["escalated"]
        self.signature_errors = self.totals["signature_errors"]
        self.wal_errors = self.totals["wal_errors"]
        self.rate_limited = Counter(
            "flk_rate_limited_by_tenant", "Requests refused with 429 (rate, quota or global).",
            ["tenant_id"], registry=registry,
        )  # fmt: skip
        self.quota_exceeded = Counter(
            "flk_quota_exceeded_by_tenant", "Requests refused with 429 by the daily quota.",
            ["tenant_id"], registry=registry,
        )  # fmt: skip
        self.global_rate_limited = Counter(
            "flk_global_rate_limited", "Requests refused with 429 by GLOBAL_TOKEN_RATE.",
            registry=registry,
        )  # fmt: skip
        self.rejected_by_tenant = Counter(
            "flk_rejected_by_tenant", "Requests answered 4xx after the WAL append, per tenant.",
            ["tenant_id"], registry=registry,
        )  # fmt: skip
        self.limiter_errors = Counter(
            "flk_limiter_errors", "Rate limiter / quota store failures (answered 503).",
            registry=registry,
        )  # fmt: skip
        self.tenant_reloads = Counter(
            "flk_tenant_reloads", "Tenant configuration reloads by result.", ["result"],
            registry=registry,
        )  # fmt: skip
        self.rejected = Counter(
            "flk_rejected", "Requests answered 4xx after the WAL append.", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.conflicts = Counter(
            "flk_idempotency_conflicts", "Same pcs_id, different signed payload (422).",
            registry=registry,
        )  # fmt: skip
        self.legacy_digest = Counter(
            "flk_hmac_legacy_digest",
            "Signatures that verified only in the legacy HMAC(sha256(payload)) form.",
            registry=registry,
        )
        self.unsigned = Counter(
            "flk_unsafe_unsigned",
            "PCS accepted without a signature check (PCS_SIGN_ALG=none).",
            registry=registry,
        )
        self.store_errors = Counter(
            "flk_store_errors", "Dedup store failures (answered 503).", ["op"], registry=registry
        )
        self.dedup_purged = Counter(
            "flk_dedup_purged", "Expired dedup records removed by the background purge.",
            registry=registry,
        )  # fmt: skip
        self.dedup_purge_batches = Counter(
            "flk_dedup_purge_batches", "Bounded delete batches run by the background purge.",
            registry=registry,
        )  # fmt: skip
        self.dedup_purge_errors = Counter(
            "flk_dedup_purge_errors", "Background purge passes that failed (retried later).",
            registry=registry,
        )  # fmt: skip
        self.audit_errors = Counter(
            "flk_audit_errors", "Audit append failures (answered 503).", registry=registry
        )
        self.replayed = Counter(
            "flk_replayed", "Inbox WAL records re-run after a restart or outage.", registry=registry
        )
        self.sanity_failed = Counter(
            "flk_sanity_check_failed", "PCS that failed a sanity check, by check.", ["check"],
            registry=registry,
        )  # fmt: skip
        self.vrf_invalid = Counter(
            "flk_vrf_invalid", "PCS that failed the VRF gate, by reason and tenant mode.",
            ["reason", "mode"], registry=registry,
        )  # fmt: skip
        self.vrf_invalid_by_tenant = Counter(
            "flk_vrf_invalid_by_tenant", "PCS that failed the VRF gate, per tenant.",
            ["tenant_id"], registry=registry,
        )  # fmt: skip
        self.vrf_verified = Counter(
            "flk_vrf_verified", "PCS whose VRF proof, output and seed verified.",
            registry=registry,
        )  # fmt: skip
        self.pii_detections = Counter(
            "flk_pii_detections", "PII findings by type and by the mode that acted on them.",
            ["type", "mode"], registry=registry,
        )  # fmt: skip
        self.pii_would_have = Counter(
            "flk_pii_would_have",
            "Report-only PII findings by type and by the mode that would have acted.",
            ["type", "mode"], registry=registry,
        )  # fmt: skip
        self.pii_wal_scrubbed = Counter(
            "flk_pii_wal_scrubbed",
            "Inbox WAL records whose PII-bearing raw body was removed early.",
            registry=registry,
        )  # fmt: skip
        self.wal_compacted = Counter(
            "flk_wal_segments_compacted", "Inbox WAL segments removed by compaction.",
            registry=registry,
        )  # fmt: skip
        self.anomaly_score = Histogram(
            "flk_anomaly_score", "Anomaly score of verified PCS.", buckets=_SCORE_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.anomaly_alerts = Counter(
            "flk_anomaly_alerts", "PCS whose anomaly score reached the policy's alert threshold.",
            registry=registry,
        )  # fmt: skip
        self.request_duration = Histogram(
            "flk_request_duration_seconds", "Request latency by route and status code.",
            ["route", "code"], buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.wal_batch = Histogram(
            "flk_wal_fsync_batch_size", "Records per inbox WAL group commit (one fsync).",
            buckets=_BATCH_BUCKETS, registry=registry,
        )  # fmt: skip
        self.wal_fsync = Histogram(
            "flk_wal_fsync_seconds", "Inbox WAL write + fsync latency per group commit.",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.wal_fsyncs = Counter(
            "flk_wal_fsyncs", "fdatasync calls of inbox WAL group commits.", registry=registry
        )
        self.audit_fsyncs = Counter(
            "flk_audit_fsyncs", "fdatasync calls of audit log group commits.", registry=registry
        )
        self._tenants: dict[str, TenantCounters] = {}
        self._durations: dict[tuple[str, int], Histogram] = {}

    def tenant(self, tenant_id: str) -> TenantCounters:
        """Cached per-tenant children (created on first use)."""
        found = self._tenants.get(tenant_id)
        if found is None:
            bt = self.by_tenant
            found = TenantCounters(
                **{name: bt[name].labels(tenant_id=tenant_id) for name in _PAIRS},
                rejected=self.rejected_by_tenant.labels(tenant_id=tenant_id),
                rate_limited=self.rate_limited.labels(tenant_id=tenant_id),
                quota_exceeded=self.quota_exceeded.labels(tenant_id=tenant_id),
                vrf_invalid=self.vrf_invalid_by_tenant.labels(tenant_id=tenant_id),
            )
            self._tenants[tenant_id] = found
        return found

    def duration(self, route: str, code: int) -> Histogram:
        """Cached ``flk_request_duration_seconds{route,code}`` child."""
        key = (route, code)
        found = self._durations.get(key)
        if found is None:
            found = self._durations[key] = self.request_duration.labels(route=route, code=str(code))
        return found

    def on_purge_batch(self, deleted: int) -> None:
        """Count one batch of the background dedup purge and the records it deleted."""
        self.dedup_purge_batches.inc()
        if deleted:
            self.dedup_purged.inc(deleted)

    def on_wal_batch(self, size: int, seconds: float) -> None:
        """GroupCommitter callback (runs on the writer thread; prometheus is thread-safe)."""
        self.wal_batch.observe(size)
        self.wal_fsync.observe(seconds)
