"""Adversarial defences: ECVRF (RFC 9381) proofs, sanity checker, anomaly scorer."""

from fractal_lba.adversarial.anomaly import AnomalyFactors, anomaly_factors, anomaly_score
from fractal_lba.adversarial.sanity import CHECKS, STRUCTURAL, sanity_failures

__all__ = [
    "CHECKS",
    "STRUCTURAL",
    "AnomalyFactors",
    "anomaly_factors",
    "anomaly_score",
    "sanity_failures",
]
