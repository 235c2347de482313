"""Signals of SPEC section 3: hand-computed values for each signal, plus reference checks."""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pytest

from fractal_lba.contract import round9
from fractal_lba.merkle import merkle_tree_hash
from fractal_lba.signals import (
    SignalError,
    SignalParams,
    box_count,
    box_counts,
    budget,
    canonical_rows,
    canonical_text,
    check_scales,
    coherence,
    coherence_profile,
    compression_ratio,
    compute_signals,
    d_hat,
    directions,
    merkle_root,
    regime,
    row_summary,
)

PTS = np.array([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2], [0.6, 0.6, 0.6]])


# -- N_j -------------------------------------------------------------------------------------
def test_box_count_hand_values() -> None:
    # cells at s=2: (0,0,0) (0,0,0) (1,1,1); s=4: 0,0,2; s=8: 0,1,4
    assert box_counts(PTS, [2, 4, 8]) == {2: 2, 4: 2, 8: 3}


def test_box_count_uses_floor_for_negative_coordinates() -> None:
    pts = np.array([[-0.1, 0.0, 0.0], [0.1, 0.0, 0.0]])
    assert box_count(pts, 1) == 2  # floor(-0.1) = -1, floor(0.1) = 0


def test_box_count_empty_and_wide_ranges() -> None:
    assert box_count(np.empty((0, 3)), 4) == 0
    pts = np.array([[-1e9, 0.0, 1e9], [1e9, 1e9, -1e9], [1e9, 1e9, -1e9]])
    assert box_count(pts, 1000) == 2  # grid too large for a bitmap or packed key


def test_box_count_rejects_bad_points() -> None:
    with pytest.raises(SignalError):
        box_count(np.array([[np.nan, 0.0, 0.0]]), 2)
    with pytest.raises(SignalError):
        box_count(np.array([[1.0, 2.0]]), 2)
    with pytest.raises(SignalError):
        box_count(np.array([[1e300, 0.0, 0.0]]), 2)


def test_check_scales() -> None:
    assert check_scales([2, 4]) == [2, 4]
    for bad in ([2], [4, 2], [0, 2], [2, 2], [2.5, 4]):
        with pytest.raises(SignalError):
            check_scales(bad)  # type: ignore[arg-type]


# -- D_hat -----------------------------------------------------------------------------------
def test_d_hat_exact_power_law() -> None:
    assert d_hat([2, 4, 8], [4, 16, 64]) == 2.0


def test_d_hat_odd_number_of_slopes_takes_the_middle() -> None:
    # x = 1, 2, 3; y = 0, 2, 2 -> slopes 2, 1, 0 -> median 1
    assert d_hat([2, 4, 8], [1, 4, 4]) == 1.0


def test_d_hat_even_number_of_slopes_takes_the_mean_of_the_middle_two() -> None:
    # x = 1..4, y = 0, 1, 3, 4: slopes 1, 1.5, 4/3, 2, 1.5, 1 -> middle (4/3 + 1.5) / 2
    assert d_hat([2, 4, 8, 16], [1, 2, 8, 16]) == pytest.approx(17 / 12, abs=1e-15)


def test_d_hat_counts_below_one_count_as_one() -> None:
    assert d_hat([2, 4], [0, 4]) == 2.0
    assert d_hat([2, 4], [0, 0]) == 0.0


def test_d_hat_needs_two_distinct_scales() -> None:
    with pytest.raises(SignalError):
        d_hat([2], [4])
    with pytest.raises(SignalError):
        d_hat([2, 2], [4, 4])
    with pytest.raises(SignalError):
        d_hat([2, 4], [4])


# -- coherence -------------------------------------------------------------------------------
def test_coherence_hand_values() -> None:
    x_axis = np.array([[1.0, 0.0, 0.0]])
    spread = np.array([[0.0, 5, 5], [0.1, 5, 5], [0.2, 5, 5], [1.0, 5, 5]])
    # bins of width 0.05: 0, 2, 4 and the max folded into bin 19 -> one point per bin
    assert coherence_profile(spread, x_axis).tolist() == [0.25]
    clumped = np.array([[0.0, 5, 5], [0.01, 5, 5], [0.02, 5, 5], [1.0, 5, 5]])
    assert coherence_profile(clumped, x_axis).tolist() == [0.75]
    # zero range along y: one bin, coherence 1.0
    assert coherence_profile(clumped, np.array([[0.0, 1.0, 0.0]])).tolist() == [1.0]


def test_coherence_identical_points_is_one() -> None:
    coh, v = coherence(np.tile([0.3, 0.4, 0.5], (50, 1)), seed=7)
    assert coh == 1.0
    assert v == directions(7)[0].tolist()  # ties go to the first direction


def test_directions_are_the_documented_prng_contract() -> None:
    g = np.random.default_rng(42).standard_normal((100, 3))
    expected = g / np.sqrt((g * g).sum(axis=1))[:, None]
    d = directions(42)
    np.testing.assert_allclose(d, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)


def test_coherence_matches_numpy_histogram() -> None:
    pts = np.random.default_rng(3).random((5000, 3))
    d = directions(11, 30)
    ref = [np.histogram(pts @ v, bins=20)[0].max() / len(pts) for v in d]
    assert coherence_profile(pts, d).tolist() == ref


def test_coherence_is_bit_for_bit_deterministic_and_block_independent() -> None:
    pts = np.random.default_rng(5).normal(size=(3000, 3))
    a = coherence_profile(pts, directions(9), block=1)
    b = coherence_profile(pts, directions(9), block=100)
    assert a.tobytes() == b.tobytes()
    assert coherence(pts, 9) == coherence(pts.copy(), 9)
    assert coherence(pts, 9) != coherence(pts, 10)


def test_coherence_needs_points() -> None:
    with pytest.raises(SignalError):
        coherence(np.empty((0, 3)), 1)


@pytest.mark.slow
# -- r and merkle_root -----------------------------------------------------------------------
def test_canonical_rows_use_python_repr() -> None:
    t = np.array([1.0, 1700000000.5])
    p = np.array([[0.5, -0.0, 1e-05], [1e16, 0.1, 2.0]])
    assert canonical_rows(t, p) == [b"1.0,0.5,-0.0,1e-05", b"1700000000.5,1e+16,0.1,2.0"]
    assert canonical_text(t, p) == b"1.0,0.5,-0.0,1e-05\n1700000000.5,1e+16,0.1,2.0"


def test_compression_ratio_hand_values() -> None:
    assert compression_ratio(b"") == 1.0
    assert compression_ratio(b"1.0,0.5,0.25,0.125") == 1.0  # zlib output is longer: clamped
    raw = b"0" * 1000
    assert compression_ratio(raw) == len(zlib.compress(raw, 6)) / 1000
    assert compression_ratio(raw) < 0.02


def test_merkle_root_hand_values() -> None:
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()
    one = hashlib.sha256(b"\x00" + b"1.0,0.5,0.25,0.125").digest()
    assert merkle_root([b"1.0,0.5,0.25,0.125"]) == one.hex()
    two = hashlib.sha256(b"\x00" + b"2.0,0.0,0.0,0.0").digest()
    assert merkle_root([b"1.0,0.5,0.25,0.125", b"2.0,0.0,0.0,0.0"]) == (
        hashlib.sha256(b"\x01" + one + two).hexdigest()
    )


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 15])
def test_row_summary_equals_reference_for_any_chunking(chunk: int) -> None:
    rng = np.random.default_rng(chunk)
    t = np.cumsum(rng.random(300)) + 1.7e9
    p = rng.normal(size=(300, 3)) * 10.0 ** rng.integers(-8, 18, size=(300, 3))
    text = canonical_text(t, p)
    assert row_summary(t, p, chunk_rows=chunk) == (
        merkle_tree_hash(canonical_rows(t, p)).hex(),
        compression_ratio(text),
    )


def test_row_summary_empty() -> None:
    assert row_summary(np.empty(0), np.empty((0, 3))) == (hashlib.sha256(b"").hexdigest(), 1.0)


def test_row_summary_rejects_non_finite_and_mismatched_input() -> None:
    with pytest.raises(SignalError):
        row_summary(np.array([np.inf]), np.zeros((1, 3)))
    with pytest.raises(SignalError):
        row_summary(np.zeros(2), np.zeros((1, 3)))


# -- regime and budget -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dh", "coh", "expected"),
    [
        (1.5, 0.70, "sticky"),
        (1.0, 0.99, "sticky"),
        (1.5000001, 0.99, "mixed"),
        (1.0, 0.6999999, "mixed"),
        (2.6, 0.99, "non_sticky"),
        (2.6, 0.1, "non_sticky"),
        (2.5999999, 0.1, "mixed"),
    ],
)
def test_regime_thresholds(dh: float, coh: float, expected: str) -> None:
    assert regime(dh, coh) == expected


def test_regime_uses_given_params() -> None:
    strict = SignalParams(sticky_coherence_min=0.9, sticky_D_hat_max=1.0, non_sticky_D_hat_min=2.0)
    assert regime(1.2, 0.95, strict) == "mixed"
    assert regime(2.0, 0.1, strict) == "non_sticky"


def test_budget_hand_values() -> None:
    # 0.10 + 0.30 * 0.6 + 0.50 * 0.5 + 0.20 * 0.5
    assert budget(2.7, 0.5, 0.4) == pytest.approx(0.63, abs=1e-12)
    # D_hat below D0 contributes nothing
    assert budget(1.0, 0.0, 1.0) == pytest.approx(0.10, abs=1e-12)
    assert budget(3.5, 1.0, 0.0) == 1.0  # 1.25 clamped
    assert budget(0.0, 0.0, 1.0, SignalParams(base=-0.5)) == 0.0  # clamped below


# -- compute_signals -------------------------------------------------------------------------
def test_compute_signals_publishes_rounded_values_and_consistent_regime() -> None:
    rng = np.random.default_rng(1)
    pts = rng.random((2000, 3))
    t = np.arange(2000, dtype=np.float64)
    sig = compute_signals(pts, t, [2, 4, 8, 16], 42)
    for value in (sig.D_hat, sig.coh_star, sig.r, sig.budget):
        assert value == round9(value)
    assert sig.N_j == {str(s): n for s, n in box_counts(pts, [2, 4, 8, 16]).items()}
    assert sig.D_hat == round9(d_hat([2, 4, 8, 16], [sig.N_j[k] for k in ("2", "4", "8", "16")]))
    assert sig.regime == regime(sig.D_hat, sig.coh_star)
    assert sig.budget == round9(budget(sig.D_hat, sig.coh_star, sig.r))
    coh, v = coherence(pts, 42)
    assert sig.coh_star == round9(coh)
    assert sig.v_star == [round9(c) for c in v]
    assert (sig.merkle_root, sig.r) == (
        row_summary(t, pts)[0],
        round9(row_summary(t, pts)[1]),
    )
    assert sig.n_events == 2000


def test_compute_signals_rejects_empty_input_and_bad_seed() -> None:
    with pytest.raises(SignalError):
        compute_signals(np.empty((0, 3)), np.empty(0), [2, 4], 1)
    with pytest.raises(SignalError):
        compute_signals(PTS, np.zeros(3), [2, 4], -1)
    with pytest.raises(SignalError):
        compute_signals(PTS, np.zeros(3), [2, 4], 2**64)


def test_coherence_of_subnormal_coordinates_is_one_bin_without_overflow() -> None:
    """Found by the property test: a span whose ``bins / span`` overflows (subnormal
    coordinates) is one position, so everything falls in one bin (no overflow warning)."""
    tiny = 2.22507386e-309
    pts = np.array([[0.0, tiny, tiny], [tiny, tiny, tiny]])
    coh, v = coherence(pts, seed=0)
    assert coh == 1.0 and abs(float(np.linalg.norm(v)) - 1.0) < 1e-9
