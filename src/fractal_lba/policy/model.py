"""Verification policy (SPEC section 8): parameters, sanity and anomaly settings, static checks.

A :class:`Policy` is plain data. The registry, signed bundles and canary rollout of a later
work package build on this model; today the server runs :func:`default_policy`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

import msgspec

from fractal_lba.canonical_json import canonical_json
from fractal_lba.policy.errors import PolicyError
from fractal_lba.signals import DEFAULT_PARAMS

FORBIDDEN_FLAGS = frozenset({"disable_wal", "skip_signature"})
SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
)
"""A semantic version (``1.2.3``, ``2.0.0-rc.1+build.7``): policy versions and pins; use
``fullmatch``."""
_S = DEFAULT_PARAMS


class VerifyParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tolerances, budget weights and regime thresholds the verifier recomputes with."""

    tol_D: float = 0.15
    tol_coh: float = 0.05
    # The regime thresholds and budget weights default to the signals' (SPEC section 3), so
    # agent and verifier agree by construction.
    alpha: float = _S.alpha
    beta: float = _S.beta
    gamma: float = _S.gamma
    base: float = _S.base
    D0: float = _S.D0
    budget_tolerance: float = 0.01
    sticky_coherence_min: float = _S.sticky_coherence_min
    sticky_D_hat_max: float = _S.sticky_D_hat_max
    non_sticky_D_hat_min: float = _S.non_sticky_D_hat_min
    dedup_ttl: int = 14 * 86400


class SanitySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Sanity checker: ``strict`` narrows D_hat to 0.5..3.0; ``action`` reject answers 400."""

    strict: bool = False
    action: Literal["escalate", "reject"] = "escalate"
    v_star_norm_tolerance: float = 1e-3


class AnomalyWeights(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Weight of each anomaly factor; every factor is in [0, 1] before weighting."""

    extreme_d_hat: float = 0.40
    coherence_dimension_mismatch: float = 0.40
    extreme_r: float = 0.30
    regime_inconsistency: float = 0.30


class AnomalySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Anomaly scoring: weights, alert threshold (metric + audit) and escalate threshold."""

    weights: AnomalyWeights = AnomalyWeights()
    alert_threshold: float = 0.5
    escalate_threshold: float = 0.8


class Policy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A versioned verification policy."""

    version: str
    name: str
    description: str = ""
    params: VerifyParams = VerifyParams()
    sanity: SanitySettings = SanitySettings()
    anomaly: AnomalySettings = AnomalySettings()
    flags: list[str] = []
    signature: str | None = None

    def canonical(self) -> bytes:
        """Sorted compact JSON of the policy without its signature."""
        obj: dict[str, Any] = msgspec.to_builtins(self)
        obj.pop("signature", None)
        return canonical_json(obj)

    def hash(self) -> str:
        """sha256 hex of :meth:`canonical`: the ``verify_params_hash`` in audit entries."""
        return hashlib.sha256(self.canonical()).hexdigest()


def validate_policy(policy: Policy) -> Policy:
    """Static validation (contract, SPEC section 8); raises PolicyError naming the field."""
    if not SEMVER.fullmatch(policy.version):
        raise PolicyError("version", "must be a semantic version like 1.2.3")
    p = policy.params
    if not 0 <= p.tol_D <= 1:
        raise PolicyError("params.tol_D", "must be in [0, 1]")
    if not 0 <= p.tol_coh <= 0.2:
        raise PolicyError("params.tol_coh", "must be in [0, 0.2]")
    if not 0 <= p.sticky_coherence_min <= 1 + p.tol_coh:
        raise PolicyError("params.sticky_coherence_min", "must be in [0, 1 + tol_coh]")
    for name in ("alpha", "beta", "gamma", "base", "budget_tolerance"):
        if getattr(p, name) < 0:
            raise PolicyError(f"params.{name}", "must be >= 0")
    if p.alpha + p.beta + p.gamma > 1 + 1e-12:
        raise PolicyError("params.alpha", "alpha + beta + gamma must be <= 1")
    if not p.sticky_D_hat_max < p.non_sticky_D_hat_min:
        raise PolicyError("params.sticky_D_hat_max", "must be < non_sticky_D_hat_min")
    if p.dedup_ttl <= 0:
        raise PolicyError("params.dedup_ttl", "must be > 0 seconds")
    bad = FORBIDDEN_FLAGS.intersection(policy.flags)
    if bad:
        raise PolicyError("flags", f"flag {sorted(bad)[0]!r} is not allowed")
    a = policy.anomaly
    if not 0 <= a.alert_threshold <= a.escalate_threshold <= 1:
        raise PolicyError("anomaly", "need 0 <= alert_threshold <= escalate_threshold <= 1")
    w = a.weights
    for name in w.__struct_fields__:
        if getattr(w, name) < 0:
            raise PolicyError(f"anomaly.weights.{name}", "must be >= 0")
    return policy


def default_policy() -> Policy:
    """The built-in policy: SPEC defaults for every parameter."""
    return Policy(version="1.0.0", name="default", description="SPEC section 3/8 defaults")
