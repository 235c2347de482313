"""Property tests of the signals (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fractal_lba.signals import (
    box_counts,
    budget,
    canonical_rows,
    canonical_text,
    coherence,
    compression_ratio,
    d_hat,
    merkle_root,
    row_summary,
)

coords = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
point_clouds = st.integers(1, 60).flatmap(lambda n: arrays(np.float64, (n, 3), elements=coords))


@given(point_clouds, st.integers(1, 50), st.integers(2, 3), st.integers(2, 6))
def test_n_j_is_non_decreasing_over_nested_scales(
    pts: np.ndarray, base: int, factor: int, k: int
) -> None:
    # Each scale divides the next, so every finer cell lies inside one coarser cell.
    scales = [base * factor**i for i in range(k)]
    counts = [box_counts(pts, scales)[s] for s in scales]
    assert counts == sorted(counts)
    assert counts[0] >= 1 and counts[-1] <= len(pts)


def _cloud(kind: str, seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = rng.random((n, 3))
    offset = rng.random(3) * 100
    if kind == "line":
        u[:, 1] = u[:, 0]
        u[:, 2] = 0.5
    elif kind == "plane":
        u[:, 2] = 0.25
    return u + np.floor(offset)  # an integer shift keeps the cell structure


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([("line", 1.0), ("plane", 2.0), ("cube", 3.0)]), st.integers(0, 2**32))
def test_d_hat_of_filled_line_plane_cube(kind_dim: tuple[str, float], seed: int) -> None:
    kind, dim = kind_dim
    pts = _cloud(kind, seed, 60_000)
    scales = [2, 4, 8, 16]
    counts = box_counts(pts, scales)
    assert abs(d_hat(scales, [counts[s] for s in scales]) - dim) < 0.1


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
row_arrays = st.integers(0, 40).flatmap(lambda n: arrays(np.float64, (n, 4), elements=finite))


@settings(max_examples=60, deadline=None)
@given(row_arrays, st.integers(1, 9))
def test_r_and_merkle_root_are_deterministic_and_match_reference(
    rows: np.ndarray, chunk: int
) -> None:
    t, p = rows[:, 0], rows[:, 1:]
    first = row_summary(t, p, chunk_rows=chunk)
    assert first == row_summary(t.copy(), p.copy())
    assert first == (merkle_root(canonical_rows(t, p)), compression_ratio(canonical_text(t, p)))
    assert 0.0 <= first[1] <= 1.0


@settings(deadline=None)
@given(point_clouds, st.integers(0, 2**64 - 1))
def test_coh_star_is_a_fraction_and_v_star_a_unit_vector(pts: np.ndarray, seed: int) -> None:
    coh, v = coherence(pts, seed, m=20)
    assert 1.0 / len(pts) <= coh <= 1.0
    assert abs(np.linalg.norm(v) - 1.0) < 1e-12


@given(st.lists(coords, min_size=3, max_size=3), st.integers(1, 40), st.integers(0, 2**64 - 1))
def test_coh_star_of_identical_points_is_one(p: list[float], n: int, seed: int) -> None:
    coh, _ = coherence(np.tile(p, (n, 1)), seed, m=10)
    assert coh == 1.0


@given(finite, finite, finite)
def test_budget_is_clamped_to_unit_interval(dh: float, coh: float, r: float) -> None:
    b = budget(dh, coh, r)
    assert 0.0 <= b <= 1.0
