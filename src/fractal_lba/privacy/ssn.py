"""US Social Security numbers with the SSA's structural rules.

Area (first three digits) is never 000, 666 or 900-999; group (middle two) never 00; serial
(last four) never 0000. Numbers the SSA itself voided after they were printed in
advertising (078-05-1120, the Woolworth wallet card; 219-09-9999, a 1940 SSA pamphlet) and
the textbook 123-45-6789 are not anyone's number. The 987-65-4320..4329 advertising block is
already outside the valid area range.

Dashed or spaced (``078 05 1120``, consistent separators) is confirmed shape; nine bare
digits are ambiguous (order numbers, ids) and reach the reporting threshold only with a
context word (``ssn``, ``social security``...) in the field or its key.
"""

from __future__ import annotations

import re

from fractal_lba.privacy.findings import SSN, Match

SSN_RE = re.compile(
    r"([0-9](?<![\w.+-][0-9])[0-9]{2})([- ]?)([0-9]{2})\2([0-9]{4})(?![\w]|[.-][0-9])"
)
ADVERTISED = frozenset({"078051120", "219099999", "123456789"})
CONTEXT_RE = re.compile(
    r"ssn|social[\s_-]*sec|ss[\s_-]*(?:no|num|#)|\bsocial\b|tax[\s_-]*id|\btin\b", re.IGNORECASE
)
CONTEXT_WORDS = ("ssn", "social", "ss no", "ss#", "ss_no", "ss num", "tax", "tin")
"""Cheap substring pre-check before :data:`CONTEXT_RE` (lower-cased text)."""


def has_context(text: str) -> bool:
    """Whether ``text`` (a field or its key) names an SSN."""
    low = text.lower()
    return any(w in low for w in CONTEXT_WORDS) and CONTEXT_RE.search(low) is not None


SEPARATED = 0.85
BARE = 0.35
BARE_WITH_CONTEXT = 0.8


def valid_ssn(digits: str) -> bool:
    """Area/group/serial rules and the voided advertised numbers (``digits``: 9 digits)."""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits not in ADVERTISED


def find_ssns(text: str, *, context: bool = False) -> list[Match]:
    """SSNs in ``text``; ``context`` says the field's key already names an SSN."""
    out: list[Match] = []
    ctx: bool | None = True if context else None
    for m in SSN_RE.finditer(text):
        digits = m.group(1) + m.group(3) + m.group(4)
        if not valid_ssn(digits):
            continue
        if m.group(2):
            conf = SEPARATED
        else:
            if ctx is None:
                ctx = has_context(text)
            conf = BARE_WITH_CONTEXT if ctx else BARE
        out.append(Match(SSN, m.start(), m.end(), conf))
    return out
