"""Signals of SPEC section 3: N_j box counts, D_hat, coh_star / v_star, r, merkle_root,
regime and budget. Pure functions over numpy arrays; no I/O.
"""

from fractal_lba.signals.compute import Signals, compute_signals
from fractal_lba.signals.errors import SignalError
from fractal_lba.signals.geometry import (
    DEFAULT_BINS,
    DEFAULT_DIRECTIONS,
    box_count,
    box_counts,
    check_scales,
    coherence,
    coherence_profile,
    d_hat,
    directions,
)
from fractal_lba.signals.regime_budget import DEFAULT_PARAMS, Regime, SignalParams, budget, regime
from fractal_lba.signals.rows import (
    canonical_rows,
    canonical_text,
    compression_ratio,
    merkle_root,
    row_summary,
)

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_DIRECTIONS",
    "DEFAULT_PARAMS",
    "Regime",
    "SignalError",
    "SignalParams",
    "Signals",
    "box_count",
    "box_counts",
    "budget",
    "canonical_rows",
    "canonical_text",
    "check_scales",
    "coherence",
    "coherence_profile",
    "compression_ratio",
    "compute_signals",
    "d_hat",
    "directions",
    "merkle_root",
    "regime",
    "row_summary",
]
