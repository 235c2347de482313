"""Sanity checks and anomaly scoring (SPEC section 8)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fractal_lba.adversarial import CHECKS, anomaly_factors, anomaly_score, sanity_failures
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


# -- every check: a passing and a failing PCS, in normal and strict mode -------------------
# (check, passing change, failing change); bounds from SPEC section 8. Only D_hat has a
# strict range (0.5..3.0); every other bound is the same in both modes.
BOUNDARIES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("scales_order", {"scales": [2, 4, 8]}, {"scales": [2, 8, 4]}),
    ("scales_range", {"scales": [1, 2, 1024], "n_j": {"1": 1, "2": 2, "1024": 3}},
     {"scales": [1, 2, 1025], "n_j": {"1": 1, "2": 2, "1025": 3}}),
    ("scales_range", {"scales": [1, 2, 4], "n_j": {"1": 1, "2": 2, "4": 3}},
     {"scales": [0, 2, 4], "n_j": {"0": 1, "2": 2, "4": 3}}),
    ("nj_missing", {"n_j": {"2": 3, "4": 5, "8": 9}}, {"n_j": {"2": 3, "8": 9}}),
    ("nj_monotonic", {"n_j": {"2": 5, "4": 5, "8": 5}}, {"n_j": {"2": 5, "4": 4, "8": 5}}),
    ("coh_star_range", {"coh_star": 1.05}, {"coh_star": 1.0500001}),
    ("coh_star_range", {"coh_star": 0.0}, {"coh_star": -1e-9}),
    ("r_range", {"r": 1.0}, {"r": 1.0000001}),
    ("r_range", {"r": 0.0}, {"r": -1e-9}),
    ("budget_range", {"budget": 1.0}, {"budget": 1.0000001}),
    ("budget_range", {"budget": 0.0}, {"budget": -1e-9}),
    ("merkle_root", {"merkle_root": "0123456789abcdef" * 4}, {"merkle_root": "0" * 63}),
    ("v_star", {"v_star": [0.6, 0.8, 0.0]}, {"v_star": [0.6, 0.8, 0.1]}),
    ("v_star", {"v_star": [0.0, 0.0, 1.0005]}, {"v_star": [0.0, 0.0, 1.002]}),
    ("v_star", {"v_star": [0.0, 1.0, 0.0]}, {"v_star": [0.0, 1.0, 0.0, 0.0]}),
    ("v_star", {"v_star": [0.0, 1.0, 0.0]}, {"v_star": [float("nan"), 1.0, 0.0]}),
]  # fmt: skip


@pytest.mark.parametrize("strict", [False, True], ids=["normal", "strict"])
@pytest.mark.parametrize(("check", "passing", "failing"), BOUNDARIES)
def test_every_check_passes_and_fails_at_its_bound(
    check: str, passing: dict[str, Any], failing: dict[str, Any], strict: bool
) -> None:
    assert sanity_failures(**{**GOOD, **passing}, strict=strict) == []
    assert sanity_failures(**{**GOOD, **failing}, strict=strict) == [check]


@pytest.mark.parametrize(
    ("d_hat", "normal", "strict"),
    [(0.0, [], ["d_hat_range"]), (0.5, [], []), (3.0, [], []), (3.2, [], ["d_hat_range"]),
     (3.5, [], ["d_hat_range"]), (3.5000001, ["d_hat_range"], ["d_hat_range"]),
     (-1e-9, ["d_hat_range"], ["d_hat_range"]), (0.4999, [], ["d_hat_range"])],
)  # fmt: skip
def test_d_hat_bounds_normal_and_strict(d_hat: float, normal: list[str], strict: list[str]) -> None:
    assert sanity_failures(**{**GOOD, "d_hat": d_hat}) == normal
    assert sanity_failures(**{**GOOD, "d_hat": d_hat}, strict=True) == strict
    strict_settings = {**GOOD, "d_hat": d_hat, "settings": SanitySettings(strict=True)}
    assert sanity_failures(**strict_settings) == strict


def test_every_failed_check_is_reported_in_order() -> None:
    bad = {**GOOD, "r": 2.0, "budget": -1.0, "merkle_root": "x", "coh_star": 9.0}
    assert sanity_failures(**bad) == ["coh_star_range", "r_range", "budget_range", "merkle_root"]
    assert [c for c in CHECKS if c in sanity_failures(**bad)] == sanity_failures(**bad)


def test_escalate_threshold_reachable_in_strict_mode_too() -> None:
    sane = {**GOOD, "d_hat": 3.0, "coh_star": 1.0, "r": 1.0}
    assert sanity_failures(**sane, strict=True) == []
    f = anomaly_factors(d_hat=3.0, coh_star=1.0, r=1.0, regime_consistent=True)
    assert anomaly_score(f, AnomalyWeights()) >= 0.8


def test_weights_come_from_the_policy() -> None:
    f = anomaly_factors(d_hat=3.4, coh_star=1.0, r=0.99, regime_consistent=False)
    zero = AnomalyWeights(
        extreme_d_hat=0, coherence_dimension_mismatch=0, extreme_r=0, regime_inconsistency=0
    )
    assert anomaly_score(f, zero) == 0.0
    only_r = AnomalyWeights(
        extreme_d_hat=0, coherence_dimension_mismatch=0, extreme_r=1, regime_inconsistency=0
    )
    assert anomaly_score(f, only_r) == pytest.approx(f.extreme_r)
    assert f.regime_inconsistency == 1.0
    heavy = AnomalyWeights(
        extreme_d_hat=5, coherence_dimension_mismatch=5, extreme_r=5, regime_inconsistency=5
    )
    assert anomaly_score(f, heavy) == 1.0  # the score is capped, like each factor
