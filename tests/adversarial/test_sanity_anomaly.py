"""Sanity checks and anomaly scoring (SPEC section 8)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fractal_lba.adversarial import anomaly_factors, anomaly_score, sanity_failures
from fractal_lba.policy import AnomalyWeights, SanitySettings

GOOD: dict[str, Any] = {
    "scales": [2, 4, 8],
    "n_j": {"2": 3, "4": 5, "8": 9},
    "coh_star": 0.5,
    "r": 0.5,
    "d_hat": 1.2,
    "budget": 0.4,
    "merkle_root": "a" * 64,
    "v_star": [1.0, 0.0, 0.0],
    "tol_coh": 0.05,
    "settings": SanitySettings(),
}


def test_good_pcs_passes() -> None:
    assert sanity_failures(**GOOD) == []


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"scales": [4, 2, 8]}, "scales_order"),
        ({"scales": [2, 4, 2048], "n_j": {"2": 1, "4": 2, "2048": 3}}, "scales_range"),
        ({"n_j": {"2": 3, "4": 5}}, "nj_missing"),
        ({"n_j": {"2": 3, "4": 5, "8": 9, "16": 10}}, "nj_missing"),
        ({"n_j": {"2": 9, "4": 5, "8": 9}}, "nj_monotonic"),
        ({"coh_star": 1.06}, "coh_star_range"),
        ({"coh_star": -0.01}, "coh_star_range"),
        ({"r": 1.01}, "r_range"),
        ({"d_hat": 3.6}, "d_hat_range"),
        ({"budget": 1.5}, "budget_range"),
        ({"merkle_root": "A" * 64}, "merkle_root"),
        ({"v_star": [0.5, 0.0, 0.0]}, "v_star"),
        ({"v_star": [1.0, 0.0]}, "v_star"),
    ],
)
def test_each_check_fires(change: dict[str, Any], check: str) -> None:
    assert check in sanity_failures(**{**GOOD, **change})


def test_strict_mode_narrows_d_hat() -> None:
    assert sanity_failures(**{**GOOD, "d_hat": 0.3}) == []
    strict = {**GOOD, "d_hat": 0.3, "settings": SanitySettings(strict=True)}
    assert sanity_failures(**strict) == ["d_hat_range"]


def test_escalate_threshold_reachable_by_a_sane_pcs() -> None:
    sane = {**GOOD, "d_hat": 3.4, "coh_star": 1.0, "r": 0.99}
    assert sanity_failures(**sane) == []
    f = anomaly_factors(d_hat=3.4, coh_star=1.0, r=0.99, regime_consistent=True)
    assert anomaly_score(f, AnomalyWeights()) >= 0.8


def test_ordinary_pcs_scores_low() -> None:
    f = anomaly_factors(d_hat=1.2, coh_star=0.5, r=0.5, regime_consistent=True)
    assert anomaly_score(f, AnomalyWeights()) == 0.0


@given(
    d=st.floats(-10, 10),
    c=st.floats(-1, 2),
    r=st.floats(-1, 2),
    consistent=st.booleans(),
)
def test_factors_capped_and_score_in_unit_interval(
    d: float, c: float, r: float, consistent: bool
) -> None:
    f = anomaly_factors(d_hat=d, coh_star=c, r=r, regime_consistent=consistent)
    for v in (f.extreme_d_hat, f.coherence_dimension_mismatch, f.extreme_r):
        assert 0.0 <= v <= 1.0
    assert 0.0 <= anomaly_score(f, AnomalyWeights()) <= 1.0
