"""Sanity checker (SPEC section 8): cheap structural and range checks on a claimed PCS.

Pure: takes the decoded PCS values, returns the name of every failed check (stable strings,
used as ``sanity:<check>`` reasons and as the ``check`` label of
``flk_sanity_check_failed``). Order is fixed so the first failure is deterministic.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence

from fractal_lba.policy import SanitySettings

CHECKS: tuple[str, ...] = (
    "scales_order",
    "scales_range",
    "nj_missing",
    "nj_monotonic",
    "coh_star_range",
    "r_range",
    "d_hat_range",
    "budget_range",
    "merkle_root",
    "v_star",
)

_HEX64 = re.compile(r"[0-9a-f]{64}").fullmatch

# Checks the verifier needs before it can recompute D_hat from N_j.
STRUCTURAL: frozenset[str] = frozenset(
    {"scales_order", "scales_range", "nj_missing", "nj_monotonic"}
)


def sanity_failures(
    *,
    scales: Sequence[int],
    n_j: Mapping[str, int],
    coh_star: float,
    r: float,
    d_hat: float,
    budget: float,
    merkle_root: str,
    v_star: Sequence[float],
    tol_coh: float,
    settings: SanitySettings,
    strict: bool | None = None,
) -> list[str]:
    """Names of failed checks, in :data:`CHECKS` order (empty when all pass).

    ``strict`` overrides ``settings.strict`` (the server's STRICT_MODE) without copying them.
    """
    failed: list[str] = []
    if any(b <= a for a, b in itertools.pairwise(scales)):
        failed.append("scales_order")
    if any(not 1 <= s <= 1024 for s in scales):
        failed.append("scales_range")
    keys = {str(s) for s in scales}
    if len(keys) != len(scales) or set(n_j) != keys:
        failed.append("nj_missing")
    else:
        counts = [n_j[str(s)] for s in sorted(scales)]
        if any(b < a for a, b in itertools.pairwise(counts)):
            failed.append("nj_monotonic")
    if not 0 <= coh_star <= 1 + tol_coh:
        failed.append("coh_star_range")
    if not 0 <= r <= 1:
        failed.append("r_range")
    lo, hi = (0.5, 3.0) if (settings.strict if strict is None else strict) else (0.0, 3.5)
    if not lo <= d_hat <= hi:
        failed.append("d_hat_range")
    if not 0 <= budget <= 1:
        failed.append("budget_range")
    if _HEX64(merkle_root) is None:
        failed.append("merkle_root")
    if len(v_star) != 3 or not all(math.isfinite(c) for c in v_star):
        failed.append("v_star")
    else:
        norm = math.sqrt(sum(c * c for c in v_star))
        if abs(norm - 1.0) > settings.v_star_norm_tolerance:
            failed.append("v_star")
    return failed
