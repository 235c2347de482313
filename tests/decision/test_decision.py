"""Every row of the SPEC section 4 decision table, through the pure ``decide``."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fractal_lba.contract import PCS, compute_pcs_id
from fractal_lba.decision import SanityRejected, decide, encode_result, signal_params
from fractal_lba.policy import Policy, SanitySettings, default_policy
from fractal_lba.signals import budget, regime

POLICY = default_policy()
SP = signal_params(POLICY)
SCALES = [2, 4, 8, 16, 32]


def make_pcs(d: float = 1.0, coh: float = 0.5, r: float = 0.5, **over: Any) -> PCS:
    """A PCS whose claims are consistent with N_j = s**d (so D_hat recomputes to ~d)."""
    n_j = {str(s): round(s**d) for s in SCALES}
    root = "cd" * 32
    fields: dict[str, Any] = {
        "pcs_id": compute_pcs_id(root, 1, "shard"),
        "schema": "fractal-lba-kakeya",
        "version": "0.1",
        "shard_id": "shard",
        "epoch": 1,
        "seed": 1,
        "scales": SCALES,
        "N_j": n_j,
        "coh_star": coh,
        "v_star": [0.0, 1.0, 0.0],
        "D_hat": d,
        "r": r,
        "regime": regime(d, coh, SP),
        "budget": round(budget(d, coh, r, SP), 9),
        "merkle_root": root,
        "sig": "eA==",
    }
    fields.update(over)
    return PCS(**fields)


def test_all_pass_is_200() -> None:
    res = decide(make_pcs(), "t1", POLICY)
    assert (res.status_code, res.accepted, res.escalated, res.reason) == (200, True, False, None)
    assert res.recomputed_D_hat == pytest.approx(1.0)
    assert res.policy_version == POLICY.version
    assert res.tenant_id == "t1"
    assert msgspec.json.decode(encode_result(res))["pcs_id"] == res.pcs_id


@pytest.mark.parametrize(
    ("pcs", "reason", "accepted"),
    [
        (make_pcs(D_hat=1.5), "dhat_out_of_tolerance", False),
        (make_pcs(coh=1.2), "coh_out_of_bounds", False),
        (make_pcs(r=1.5), "sanity:r_range", False),
        (make_pcs(N_j={"2": 2, "4": 4, "8": 8, "16": 16}), "sanity:nj_missing", False),
        (make_pcs(N_j={"2": 9, "4": 4, "8": 8, "16": 16, "32": 32}), "sanity:nj_monotonic", False),
        (make_pcs(v_star=[0.5, 0.5, 0.0]), "sanity:v_star", False),
        (make_pcs(regime="sticky"), "regime_mismatch", True),
        (make_pcs(budget=0.9), "budget_deviation", True),
        (make_pcs(d=3.4, coh=1.0, r=0.99), "anomaly", True),
    ],
)
def test_escalations(pcs: PCS, reason: str, accepted: bool) -> None:
    res = decide(pcs, "t1", POLICY)
    assert res.status_code == 202
    assert res.escalated is True
    assert res.reason == reason
    assert res.accepted is accepted


def test_strict_mode_and_reject_action() -> None:
    pcs = make_pcs(d=0.4, coh=0.5)
    assert decide(pcs, "t", POLICY).status_code == 200
    assert decide(pcs, "t", POLICY, strict=True).reason == "sanity:d_hat_range"
    rejecting = msgspec.structs.replace(POLICY, sanity=SanitySettings(action="reject"))
    with pytest.raises(SanityRejected) as exc:
        decide(make_pcs(r=1.5), "t", rejecting)
    assert exc.value.field == "r_range"


def test_thresholds_come_from_the_policy() -> None:
    pcs = make_pcs(D_hat=1.1)  # 0.1 off
    assert decide(pcs, "t", POLICY).reason is None
    tight: Policy = msgspec.structs.replace(
        POLICY, params=msgspec.structs.replace(POLICY.params, tol_D=0.05)
    )
    assert decide(pcs, "t", tight).reason == "dhat_out_of_tolerance"
