"""Verification policy: parameters, sanity/anomaly settings, static validation, hashing."""

from fractal_lba.policy.errors import PolicyError
from fractal_lba.policy.model import (
    SEMVER,
    AnomalySettings,
    AnomalyWeights,
    Policy,
    SanitySettings,
    VerifyParams,
    default_policy,
    validate_policy,
)

__all__ = [
    "SEMVER",
    "AnomalySettings",
    "AnomalyWeights",
    "Policy",
    "PolicyError",
    "SanitySettings",
    "VerifyParams",
    "default_policy",
    "validate_policy",
]
