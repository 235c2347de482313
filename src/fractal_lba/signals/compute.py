"""All signals of one event batch in one call (what the agent publishes in a PCS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy.typing as npt

from fractal_lba.contract.canonical import round9
from fractal_lba.signals.errors import SignalError
from fractal_lba.signals.geometry import (
    DEFAULT_BINS,
    DEFAULT_DIRECTIONS,
    as_points,
    box_counts,
    check_scales,
    coherence,
    d_hat,
)
from fractal_lba.signals.regime_budget import DEFAULT_PARAMS, Regime, SignalParams, budget, regime
from fractal_lba.signals.rows import PendingRowSummary


@dataclass(frozen=True)
class Signals:
    """The published signals. ``D_hat``, ``coh_star``, ``r``, ``budget`` are round9'ed."""

    scales: list[int]
    N_j: dict[str, int]
    D_hat: float
    coh_star: float
    v_star: list[float]
    r: float
    merkle_root: str
    regime: Regime
    budget: float
    n_events: int


def compute_signals(
    points: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    scales: Sequence[int],
    seed: int,
    params: SignalParams = DEFAULT_PARAMS,
    *,
    directions: int = DEFAULT_DIRECTIONS,
    bins: int = DEFAULT_BINS,
) -> Signals:
    """Compute every signal of SPEC section 3 for ``points`` (n, 3) and ``timestamps`` (n,).

    ``regime`` and ``budget`` are derived from the *rounded* D_hat / coh_star / r, i.e. from
    exactly the values the verifier sees, so its recomputation agrees at the thresholds.
    Compression of the canonical rows runs in a worker thread concurrently with the geometry.
    """
    pts = as_points(points)
    if len(pts) == 0:
        raise SignalError("no events: signals need at least one point")
    checked = check_scales(scales)
    if not 0 <= seed < 2**64:
        raise SignalError("seed must be an unsigned 64-bit integer")
    # Formatting/hashing holds the GIL; compression then finishes in its worker thread while
    # the numpy geometry runs here (interleaving numpy with GIL-bound work stalls both).
    rows = PendingRowSummary(timestamps, pts)
    counts = box_counts(pts, checked)
    coh_raw, v_star = coherence(pts, seed, m=directions, bins=bins)
    root, r_raw = rows.result()
    dh = round9(d_hat(checked, [counts[s] for s in checked]))
    coh = round9(coh_raw)
    r = round9(r_raw)
    return Signals(
        scales=checked,
        N_j={str(s): counts[s] for s in checked},
        D_hat=dh,
        coh_star=coh,
        v_star=[round9(v) for v in v_star],
        r=r,
        merkle_root=root,
        regime=regime(dh, coh, params),
        budget=round9(budget(dh, coh, r, params)),
        n_events=len(pts),
    )
