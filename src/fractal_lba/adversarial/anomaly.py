"""Anomaly scorer (SPEC section 8): a score in [0, 1] from weighted factors, each capped at 1.

Factors:
- ``extreme_d_hat``: D_hat below 0.5 or above 2.8, linear to 1 at 0.0 / 3.5;
- ``coherence_dimension_mismatch``: high coherence (>= 0.7, linear to 1 at 1.0) together with
  high dimension (>= 1.5, linear to 1 at 2.5): coherent data should be low-dimensional;
- ``extreme_r``: compressibility below 0.1 (linear to 1 at 0) or above 0.95 (to 1 at 1.0);
- ``regime_inconsistency``: 1 when the claimed regime differs from the recomputed one.

With the default weights (0.4, 0.4, 0.3, 0.3) a PCS that passes the sanity checks can reach
the escalate threshold 0.8, e.g. D_hat 3.4, coh_star 1.0, r 0.99 scores 0.98.
"""

from __future__ import annotations

from dataclasses import dataclass

from fractal_lba.policy import AnomalyWeights


def _ramp(x: float, start: float, full: float) -> float:
    """0 at ``start``, 1 at ``full`` (either direction), clamped."""
    if full == start:
        return 1.0 if x >= full else 0.0
    return min(1.0, max(0.0, (x - start) / (full - start)))


@dataclass(frozen=True)
class AnomalyFactors:
    """Each factor in [0, 1] before weighting."""

    extreme_d_hat: float
    coherence_dimension_mismatch: float
    extreme_r: float
    regime_inconsistency: float


def anomaly_factors(
    *, d_hat: float, coh_star: float, r: float, regime_consistent: bool
) -> AnomalyFactors:
    """The four factors for one PCS."""
    if d_hat < 0.5:
        f_d = _ramp(d_hat, 0.5, 0.0)
    elif d_hat > 2.8:
        f_d = _ramp(d_hat, 2.8, 3.5)
    else:
        f_d = 0.0
    f_mismatch = _ramp(coh_star, 0.7, 1.0) * _ramp(d_hat, 1.5, 2.5)
    if r < 0.1:
        f_r = _ramp(r, 0.1, 0.0)
    elif r > 0.95:
        f_r = _ramp(r, 0.95, 1.0)
    else:
        f_r = 0.0
    return AnomalyFactors(f_d, f_mismatch, f_r, 0.0 if regime_consistent else 1.0)


def anomaly_score(factors: AnomalyFactors, weights: AnomalyWeights) -> float:
    """Weighted sum of the factors, clamped to [0, 1]."""
    total = (
        weights.extreme_d_hat * factors.extreme_d_hat
        + weights.coherence_dimension_mismatch * factors.coherence_dimension_mismatch
        + weights.extreme_r * factors.extreme_r
        + weights.regime_inconsistency * factors.regime_inconsistency
    )
    return min(1.0, max(0.0, total))
