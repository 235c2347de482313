"""Verification of a signature-checked PCS under a policy: the SPEC decision table."""

from fractal_lba.decision.table import (
    SanityRejected,
    VerifyResult,
    decide,
    encode_result,
    signal_params,
)

__all__ = ["SanityRejected", "VerifyResult", "decide", "encode_result", "signal_params"]
