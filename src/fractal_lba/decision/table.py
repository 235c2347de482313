"""The verification decision (SPEC section 4, step 8): the decision table as a pure function.

Order of checks (first failure decides the reason):

1. structural sanity checks the recomputation needs (scales, N_j) -> ``sanity:<check>``
2. ``|D_hat - recomputed| > tol_D``                 -> 202 accepted=false ``dhat_out_of_tolerance``
3. ``coh_star`` outside ``[0, 1 + tol_coh]``         -> 202 accepted=false ``coh_out_of_bounds``
4. remaining sanity checks                          -> 202 accepted=false ``sanity:<check>``
   (policy ``sanity.action = "reject"`` turns 1 and 4 into a 400 via :class:`SanityRejected`)
5. claimed regime != regime(D_hat, coh_star)        -> 202 accepted=true ``regime_mismatch``
6. ``|budget - recomputed budget| > budget_tolerance`` -> 202 accepted=true ``budget_deviation``
7. anomaly score >= escalate threshold              -> 202 accepted=true ``anomaly``
8. otherwise                                        -> 200 accepted=true escalated=false

Every 202 is an escalation (``escalated=true``); ``accepted`` says whether the claims held.

:func:`evaluate` also returns every sanity check that failed (not only the one that decided:
``flk_sanity_check_failed_total{check}`` counts each) and whether the anomaly score reached
the policy's alert threshold (``flk_anomaly_alerts_total`` and an audit note).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from fractal_lba.adversarial import STRUCTURAL, anomaly_factors, anomaly_score, sanity_failures
from fractal_lba.contract import PCS, ValidationError
from fractal_lba.policy import Policy
from fractal_lba.signals import SignalParams, budget, d_hat, regime


class VerifyResult(msgspec.Struct, kw_only=True, omit_defaults=False):
    """Response body of a verified PCS (SPEC section 4)."""

    accepted: bool
    escalated: bool
    reason: str | None
    recomputed_D_hat: float | None
    recomputed_budget: float | None
    regime: str
    policy_version: str
    anomaly_score: float
    pcs_id: str
    tenant_id: str

    @property
    def status_code(self) -> int:
        """200 when accepted without escalation, else 202."""
        return 200 if self.accepted and not self.escalated else 202


class SanityRejected(ValidationError):
    """A sanity violation under a policy whose sanity action is ``reject`` (-> 400).

    ``field`` is the deciding check, ``checks`` every check that failed."""

    def __init__(self, check: str, checks: tuple[str, ...]) -> None:
        super().__init__(check, "sanity check failed", code=f"sanity:{check}")
        self.checks = checks


@dataclass(frozen=True, slots=True)
class Decision:
    """A verification result plus what the pipeline counts and audits besides the body."""

    result: VerifyResult
    failed_checks: tuple[str, ...]
    """Every failed sanity check, in :data:`~fractal_lba.adversarial.CHECKS` order."""
    alert: bool
    """The anomaly score reached ``anomaly.alert_threshold``."""


_encoder = msgspec.json.Encoder()


def encode_result(result: VerifyResult) -> bytes:
    """JSON bytes of a result (the exact body that is sent and stored for replays)."""
    return _encoder.encode(result)


def signal_params(policy: Policy) -> SignalParams:
    """The regime thresholds and budget weights of a policy, as the signals module wants them."""
    p = policy.params
    return SignalParams(
        sticky_coherence_min=p.sticky_coherence_min,
        sticky_D_hat_max=p.sticky_D_hat_max,
        non_sticky_D_hat_min=p.non_sticky_D_hat_min,
        base=p.base,
        alpha=p.alpha,
        beta=p.beta,
        gamma=p.gamma,
        D0=p.D0,
    )


def decide(
    pcs: PCS,
    tenant_id: str,
    policy: Policy,
    *,
    strict: bool = False,
    params: SignalParams | None = None,
) -> VerifyResult:
    """Apply the decision table to a signature-verified PCS under ``policy``.

    ``params`` lets callers pass :func:`signal_params` precomputed once per policy.
    """
    return evaluate(pcs, tenant_id, policy, strict=strict, params=params).result


def evaluate(
    pcs: PCS,
    tenant_id: str,
    policy: Policy,
    *,
    strict: bool = False,
    params: SignalParams | None = None,
) -> Decision:
    """:func:`decide` with the failed checks and the anomaly alert (raises SanityRejected)."""
    vp = policy.params
    sp = params if params is not None else signal_params(policy)
    sanity = policy.sanity
    failed = sanity_failures(
        scales=pcs.scales,
        n_j=pcs.N_j,
        coh_star=pcs.coh_star,
        r=pcs.r,
        d_hat=pcs.D_hat,
        budget=pcs.budget,
        merkle_root=pcs.merkle_root,
        v_star=pcs.v_star,
        tol_coh=vp.tol_coh,
        settings=sanity,
        strict=True if strict else None,
    )
    claimed_regime_ok = pcs.regime == regime(pcs.D_hat, pcs.coh_star, sp)
    factors = anomaly_factors(
        d_hat=pcs.D_hat, coh_star=pcs.coh_star, r=pcs.r, regime_consistent=claimed_regime_ok
    )
    score = round(anomaly_score(factors, policy.anomaly.weights), 6)
    checks = tuple(failed)
    alert = score >= policy.anomaly.alert_threshold

    def result(
        accepted: bool, reason: str | None, d_hat: float | None, bud: float | None
    ) -> Decision:
        return Decision(VerifyResult(
            accepted=accepted,
            escalated=not accepted or reason is not None,
            reason=reason,
            recomputed_D_hat=d_hat,
            recomputed_budget=bud,
            regime=pcs.regime,
            policy_version=policy.version,
            anomaly_score=score,
            pcs_id=pcs.pcs_id,
            tenant_id=tenant_id,
        ), checks, alert)  # fmt: skip

    def sanity_outcome(check: str, d_hat: float | None, bud: float | None) -> Decision:
        if sanity.action == "reject":
            raise SanityRejected(check, checks)
        return result(False, f"sanity:{check}", d_hat, bud)

    structural = [c for c in failed if c in STRUCTURAL]
    if structural:
        return sanity_outcome(structural[0], None, None)
    scales = sorted(pcs.scales)
    d_re = round(d_hat(scales, [pcs.N_j[str(s)] for s in scales]), 9)
    bud = round(budget(d_re, pcs.coh_star, pcs.r, sp), 9)
    if abs(pcs.D_hat - d_re) > vp.tol_D:
        return result(False, "dhat_out_of_tolerance", d_re, bud)
    if not 0 <= pcs.coh_star <= 1 + vp.tol_coh:
        return result(False, "coh_out_of_bounds", d_re, bud)
    rest = [c for c in failed if c != "coh_star_range"]
    if rest:
        return sanity_outcome(rest[0], d_re, bud)
    if not claimed_regime_ok:
        return result(True, "regime_mismatch", d_re, bud)
    if abs(pcs.budget - bud) > vp.budget_tolerance:
        return result(True, "budget_deviation", d_re, bud)
    if score >= policy.anomaly.escalate_threshold:
        return result(True, "anomaly", d_re, bud)
    return result(True, None, d_re, bud)
