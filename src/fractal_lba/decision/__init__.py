"""Verification of a signature-checked PCS under a policy: the SPEC decision table."""

from fractal_lba.decision.table import (
    Decision,
    SanityRejected,
    VerifyResult,
    decide,
    encode_result,
    evaluate,
    signal_params,
)

__all__ = [
    "Decision",
    "SanityRejected",
    "VerifyResult",
    "decide",
    "encode_result",
    "evaluate",
    "signal_params",
]
