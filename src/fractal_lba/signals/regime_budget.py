"""Regime classification and budget (SPEC section 3); thresholds and weights are parameters.

The verifier's policy reuses :func:`regime` and :func:`budget` with its own
:class:`SignalParams`, so agent and server agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Regime = Literal["sticky", "mixed", "non_sticky"]


@dataclass(frozen=True)
class SignalParams:
    """Thresholds of :func:`regime` and weights of :func:`budget` (SPEC defaults)."""

    sticky_coherence_min: float = 0.70
    sticky_D_hat_max: float = 1.5
    non_sticky_D_hat_min: float = 2.6
    base: float = 0.10
    alpha: float = 0.30
    beta: float = 0.50
    gamma: float = 0.20
    D0: float = 2.2


DEFAULT_PARAMS = SignalParams()


def regime(D_hat: float, coh_star: float, params: SignalParams = DEFAULT_PARAMS) -> Regime:
    """``sticky`` if coh >= min and D_hat <= max; ``non_sticky`` if D_hat >= min; else ``mixed``."""
    if coh_star >= params.sticky_coherence_min and D_hat <= params.sticky_D_hat_max:
        return "sticky"
    if D_hat >= params.non_sticky_D_hat_min:
        return "non_sticky"
    return "mixed"


def budget(D_hat: float, coh_star: float, r: float, params: SignalParams = DEFAULT_PARAMS) -> float:
    """``clamp01(base + alpha (1 - r) + beta max(0, D_hat - D0) + gamma coh_star)``."""
    value = (
        params.base
        + params.alpha * (1.0 - r)
        + params.beta * max(0.0, D_hat - params.D0)
        + params.gamma * coh_star
    )
    return min(1.0, max(0.0, value))
