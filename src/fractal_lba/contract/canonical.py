"""Canonical forms of the PCS contract (SPEC section 2), from the SDK (the one implementation).

``round9``, ``pcs_id``, the 0.1/0.2 eight-field payload and the 0.3 full-record message live
in ``fractal_lba_client``; the verifier and the agent import them through here.
"""

from fractal_lba_client import (
    SCHEMA,
    SIGNED_FIELDS,
    V03_DOMAIN,
    compute_pcs_id,
    full_record_message,
    jcs,
    record_payload,
    round9,
    signature_payload,
    signed_message,
)

__all__ = [
    "SCHEMA",
    "SIGNED_FIELDS",
    "V03_DOMAIN",
    "compute_pcs_id",
    "full_record_message",
    "jcs",
    "record_payload",
    "round9",
    "signature_payload",
    "signed_message",
]
