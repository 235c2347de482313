"""Privacy gate (SPEC section 8, PII): detectors, scanner, redaction, per-tenant policy.

Pure logic: detectors are functions of one string (``find_emails``, ``find_phones``,
``find_ssns``, ``find_cards``, ``find_ips``), :class:`Scanner` runs the enabled ones over the
scanned fields of a PCS, :mod:`~fractal_lba.privacy.policy` holds the per-tenant policy and
:mod:`~fractal_lba.privacy.gate` turns findings into the step-4 verdict (detect, block,
redact, report-only). The server calls the gate; nothing here does I/O except
:mod:`~fractal_lba.privacy.keys` (the keyed-hash key file).
"""

from fractal_lba.privacy.card import find_cards
from fractal_lba.privacy.custom import CustomPattern, compile_pattern
from fractal_lba.privacy.email import find_emails
from fractal_lba.privacy.findings import (
    BUILTIN_TYPES,
    CREDIT_CARD,
    EMAIL,
    IP_ADDRESS,
    PHONE,
    SSN,
    Finding,
    Match,
    redaction_token,
)
from fractal_lba.privacy.ip import find_ips
from fractal_lba.privacy.phone import find_phones
from fractal_lba.privacy.scanner import (
    PcsScan,
    ScanConfig,
    ScannedField,
    Scanner,
    redact_text,
    scan_pcs,
)
from fractal_lba.privacy.ssn import find_ssns

__all__ = [
    "BUILTIN_TYPES",
    "CREDIT_CARD",
    "EMAIL",
    "IP_ADDRESS",
    "PHONE",
    "SSN",
    "CustomPattern",
    "Finding",
    "Match",
    "PcsScan",
    "ScanConfig",
    "ScannedField",
    "Scanner",
    "compile_pattern",
    "find_cards",
    "find_emails",
    "find_ips",
    "find_phones",
    "find_ssns",
    "redact_text",
    "redaction_token",
    "scan_pcs",
]
