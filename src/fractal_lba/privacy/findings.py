"""What a detector reports: :class:`Match` (a span in one string) and :class:`Finding` (a match
placed in a PCS field), plus the fixed vocabulary of built-in PII types.

Types are a fixed vocabulary (metric label values, redaction tokens); custom per-tenant
patterns add names from configuration, never from request input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

EMAIL: Final = "email"
PHONE: Final = "phone"
SSN: Final = "ssn"
CREDIT_CARD: Final = "credit_card"
IP_ADDRESS: Final = "ip_address"

BUILTIN_TYPES: tuple[str, ...] = (EMAIL, PHONE, SSN, CREDIT_CARD, IP_ADDRESS)

DEFAULT_MIN_CONFIDENCE = 0.5
"""Findings below this confidence are dropped (shape-only matches without context)."""


def redaction_token(pii_type: str) -> str:
    """``email`` -> ``[REDACTED_EMAIL]`` (custom names upper-cased the same way)."""
    return f"[REDACTED_{pii_type.upper()}]"


@dataclass(frozen=True, slots=True)
class Match:
    """A detected span ``text[start:end]`` of one string (a detector's pure output)."""

    type: str
    start: int
    end: int
    confidence: float


@dataclass(frozen=True, slots=True)
class Finding:
    """A match placed in a PCS: ``field`` is a safe path (never contains the value).

    ``offset``/``length`` are character positions in that field's string.
    """

    type: str
    field: str
    offset: int
    length: int
    confidence: float
    part: str = "value"
    """``value``, or ``key`` when the PII is in a meta key itself."""

    def __repr__(self) -> str:
        return (
            f"Finding(type={self.type!r}, field={self.field!r}, offset={self.offset}, "
            f"length={self.length}, confidence={self.confidence:.2f}, part={self.part!r})"
        )
