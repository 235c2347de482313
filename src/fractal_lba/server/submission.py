"""What the steps of the submit path pass along: the answer (:class:`Reply`), the per-tenant
context prepared at startup (:class:`TenantContext`) and the state of one admitted request
while steps 3-10 run (:class:`Submission`).

A leaf module (no server imports at run time), so a feature's step module can use these
types without importing the pipeline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import msgspec

from fractal_lba.adversarial.vrf_gate import VrfGate
from fractal_lba.contract import PCS, SUPPORTED_VERSIONS
from fractal_lba.contract.model import VERSION_ORDER
from fractal_lba.decision import VerifyResult, signal_params
from fractal_lba.privacy.gate import PiiGate, PiiVerdict
from fractal_lba.server.inbox import Admit
from fractal_lba.server.metrics import Metrics, TenantCounters
from fractal_lba.signals import SignalParams
from fractal_lba.tenancy import Tenant

if TYPE_CHECKING:
    from fractal_lba.server.pipeline import Pipeline

Headers = tuple[tuple[bytes, bytes], ...]
ACCEPTED_VERSIONS_HEADER = "X-PCS-Accepted-Versions"
"""Every answer of the submit path and ``/health`` names the PCS versions this server
accepts (docs/api/compatibility.md), so a client can see what it may send."""
ACCEPTED_VERSIONS = ", ".join(SUPPORTED_VERSIONS)
JSON_HEADERS: Headers = (
    (b"content-type", b"application/json"),
    (ACCEPTED_VERSIONS_HEADER.lower().encode(), ACCEPTED_VERSIONS.encode()),
)
REPLAYED_HEADERS: Headers = (*JSON_HEADERS, (b"idempotent-replayed", b"true"))

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
    """The HTTP answer to one request.

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


def static_reply(status: int, error: str, field: str | None, detail: str) -> Reply:
    """A fixed error answer, built once at import (never per request)."""
    return Reply(status, error_body(error, field, detail), reason=error)


class Submission:
    """One admitted request while steps 3-10 run (live or replayed); steps fill it in order.

    ``pcs``, ``record`` (the JSON object as received, what a 0.3 signature covers) and ``sig``
    are set by step 3, ``pii`` (the PII gate's verdict: what is written
    about the record, never what is verified) by step 4, ``payload`` / ``payload_hash`` by 5,
    ``note`` (a report-only VRF failure, appended to the audit reason) by step 6,
    ``status`` / ``body`` / ``reason`` (and ``result`` unless a sanity check rejected the
    record) and ``checks`` (every failed sanity check, counted at step 10) by step 8.
    """

    __slots__ = (
        "adm", "body", "checks", "ctx", "note", "payload", "payload_hash", "pcs", "pii", "reason",
        "record",
        "result", "sig", "status",
    )  # fmt: skip

    def __init__(self, adm: Admit, ctx: TenantContext) -> None:
        self.adm = adm
        self.ctx = ctx
        self.pcs: PCS | None = None
        self.record: dict[str, Any] = {}
        self.sig = b""
        self.payload = b""
        self.payload_hash = ""
        self.result: VerifyResult | None = None
        self.status = 0
        self.body = b""
        self.reason: str | None = None
        self.note: str | None = None
        self.pii: PiiVerdict | None = None
        self.checks: tuple[str, ...] = ()


PipelineStepFn: TypeAlias = "Callable[[Pipeline, Submission], Awaitable[Reply | None]]"
"""A step of 3-10: returns None to go on, or the answer (outcome helpers on the Pipeline)."""


@dataclass(frozen=True, slots=True)
class TenantContext:
    """Per-tenant state prepared once at startup: metric children, policy hash, params, and
    the steps 3-10 that apply to this tenant."""

    tenant: Tenant
    counters: TenantCounters
    params: SignalParams
    policy_hash: str
    dedup_ttl: float
    limited: bool
    steps: tuple[PipelineStepFn, ...] = ()
    """The steps 3-10 that apply to this tenant (``Step.applies``), in SPEC order."""
    vrf: VrfGate | None = None
    pii: PiiGate | None = None
    """The tenant's prepared PII gate (None: scanning is off for it)."""
    min_version: tuple[int, int] = (0, 1)
    """The tenant's ``min_pcs_version`` as (major, minor)."""

    @classmethod
    def build(
        cls,
        tenant: Tenant,
        metrics: Metrics,
        *,
        global_limit: bool = False,
        pii: PiiGate | None = None,
        steps_for: Callable[[TenantContext], tuple[PipelineStepFn, ...]] | None = None,
    ) -> TenantContext:
        """Prepare ``tenant`` for the hot path (``global_limit``: a global rate applies;
        ``steps_for``: picks the pipeline steps for the prepared context)."""
        policy = tenant.policy
        ctx = cls(
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
            min_version=VERSION_ORDER[tenant.min_pcs_version],
        )
        return ctx if steps_for is None else dataclasses.replace(ctx, steps=steps_for(ctx))
