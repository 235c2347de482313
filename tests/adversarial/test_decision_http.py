"""Sanity checks and anomaly scoring on the submit path (in-process, real pipeline)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from server_helpers import counts_for, make_pcs
from vrf_helpers import app_metrics, metric, serving, submit

from fractal_lba.adversarial import anomaly_factors
from fractal_lba.policy import SanitySettings, default_policy

pytestmark = pytest.mark.anyio


async def test_sane_pcs_reaches_the_escalate_threshold(tmp_path: Path) -> None:
    """The default weights make 0.8 reachable by a PCS that passes every sanity check."""
    pcs = make_pcs(dim=3.4, coh_star=1.0, r=0.99)
    async with serving(tmp_path) as (app, client, audit):
        res = await submit(client, pcs)
        assert res.status_code == 202, res.text
        out = res.json()
        assert (out["accepted"], out["escalated"], out["reason"]) == (True, True, "anomaly")
        assert out["anomaly_score"] >= 0.8
        text = app_metrics(app)
        assert metric(text, "flk_anomaly_score_count") == 1
        assert metric(text, "flk_anomaly_score_bucket", le="0.7") == 0
        assert metric(text, "flk_anomaly_alerts_total") == 1
        assert sum(metric(text, "flk_sanity_check_failed_total", check=c) for c in
                   ("d_hat_range", "coh_star_range", "r_range")) == 0  # fmt: skip
        assert audit.entries[-1].reason == "anomaly"


async def test_alert_between_the_thresholds_is_counted_and_audited(tmp_path: Path) -> None:
    pcs = make_pcs(dim=3.0, coh_star=1.0, r=0.5)
    async with serving(tmp_path) as (app, client, audit):
        res = await submit(client, pcs)
        assert res.status_code == 200, res.text
        assert 0.5 <= res.json()["anomaly_score"] < 0.8
        assert metric(app_metrics(app), "flk_anomaly_alerts_total") == 1
        assert audit.entries[-1].reason == "anomaly_alert"
        quiet = await submit(client, make_pcs(shard_id="quiet"))
        assert quiet.json()["anomaly_score"] < 0.5
        assert metric(app_metrics(app), "flk_anomaly_alerts_total") == 1
        assert audit.entries[-1].reason is None


async def test_thresholds_and_weights_come_from_the_policy(tmp_path: Path) -> None:
    base = default_policy()
    lenient = msgspec.structs.replace(
        base, anomaly=msgspec.structs.replace(base.anomaly, escalate_threshold=1.0)
    )
    async with serving(tmp_path, policy=lenient) as (_app, client, _audit):
        res = await submit(client, make_pcs(dim=3.4, coh_star=1.0, r=0.99))
        assert res.status_code == 200 and res.json()["reason"] is None


async def test_every_failed_check_is_counted(tmp_path: Path) -> None:
    pcs = make_pcs(r=1.5, budget=1.5, v_star=[0.5, 0.5, 0.0])
    async with serving(tmp_path) as (app, client, _audit):
        res = await submit(client, pcs)
        assert res.status_code == 202 and res.json()["reason"] == "sanity:r_range"
        text = app_metrics(app)
        for check in ("r_range", "budget_range", "v_star"):
            assert metric(text, "flk_sanity_check_failed_total", check=check) == 1
        assert metric(text, "flk_sanity_check_failed_total", check="coh_star_range") == 0


async def test_reject_action_answers_400(tmp_path: Path) -> None:
    base = default_policy()
    rejecting = msgspec.structs.replace(base, sanity=SanitySettings(action="reject"))
    n_j = {**counts_for(1.0), "8": 1}
    async with serving(tmp_path, policy=rejecting) as (app, client, audit):
        res = await submit(client, make_pcs(N_j=n_j))
        assert res.status_code == 400
        assert res.json() == {
            "error": "sanity:nj_monotonic",
            "field": "nj_monotonic",
            "detail": "sanity check failed",
        }
        text = app_metrics(app)
        assert metric(text, "flk_sanity_check_failed_total", check="nj_monotonic") == 1
        assert metric(text, "flk_rejected_total", reason="sanity:nj_monotonic") == 1
        assert audit.entries[-1].verify_outcome == "rejected"
        # The outcome is stored: a retry gets the same 400 as a replay.
        again = await submit(client, make_pcs(N_j=n_j))
        assert again.status_code == 400 and again.headers["idempotent-replayed"] == "true"


async def test_strict_mode_narrows_d_hat_on_the_wire(tmp_path: Path) -> None:
    pcs = make_pcs(dim=0.3, coh_star=0.5)  # D_hat ~0.31: inside 0..3.5, outside 0.5..3.0
    async with serving(tmp_path) as (_app, client, _audit):
        assert (await submit(client, pcs)).status_code == 200
    async with serving(tmp_path / "strict", STRICT_MODE="true") as (app, client, _audit):
        res = await submit(client, pcs)
        assert res.status_code == 202 and res.json()["reason"] == "sanity:d_hat_range"
        assert metric(app_metrics(app), "flk_sanity_check_failed_total", check="d_hat_range") == 1


def test_factor_helper_matches_the_response() -> None:
    f = anomaly_factors(d_hat=3.4, coh_star=1.0, r=0.99, regime_consistent=True)
    assert f.coherence_dimension_mismatch == 1.0 and 0 < f.extreme_d_hat < 1
