"""Per-tenant custom patterns, run by RE2 (``google-re2``) so no pattern can backtrack.

Python's ``re`` backtracks: ``(a+)+$`` over 30 characters already takes seconds, and a
tenants file is operator input, not code review. RE2 guarantees time linear in the input
and refuses the constructs that need backtracking (backreferences, lookaround), which is
exactly the check we want at config load. On top of that: the pattern text is at most
:data:`MAX_PATTERN_CHARS`, its compiled program at most :data:`MAX_PROGRAM_SIZE` instructions
(bounding memory and the per-character cost), a tenant has at most :data:`MAX_PATTERNS`, and
the scanned text is bounded by the PCS limits (256 characters a field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import re2

from fractal_lba.errors import ConfigError
from fractal_lba.privacy.findings import BUILTIN_TYPES, Match

MAX_PATTERN_CHARS = 512
MAX_PROGRAM_SIZE = 2000
MAX_PATTERNS = 16
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
DEFAULT_CONFIDENCE = 0.9

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error comes back as an exception; stderr stays quiet
_OPTIONS.max_mem = 1 << 20


@dataclass(frozen=True, slots=True)
class CustomPattern:
    """A named RE2 pattern; a match is a finding of type ``name``."""

    name: str
    pattern: str
    confidence: float = DEFAULT_CONFIDENCE
    _regex: Any = field(default=None, repr=False, compare=False)

    def find(self, text: str) -> list[Match]:
        """Non-overlapping matches of the pattern in ``text`` (empty matches ignored)."""
        out: list[Match] = []
        for m in self._regex.finditer(text):
            start, end = m.span()
            if end > start:
                out.append(Match(self.name, start, end, self.confidence))
        return out


def compile_pattern(
    name: str, pattern: str, where: str, confidence: float = DEFAULT_CONFIDENCE
) -> CustomPattern:
    """Validate and compile one custom pattern; ConfigError names ``where`` (never the text
    of a pattern that may itself contain sample data)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}.name: must match [a-z][a-z0-9_]{{0,31}}")
    if name in BUILTIN_TYPES:
        raise ConfigError(f"{where}.name: {name!r} is a built-in type; choose another name")
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{where}.pattern: must be a non-empty string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ConfigError(f"{where}.pattern: longer than {MAX_PATTERN_CHARS} characters")
    if not (isinstance(confidence, int | float) and 0.0 < float(confidence) <= 1.0):
        raise ConfigError(f"{where}.confidence: must be a number in (0, 1]")
    try:
        regex = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        reason = str(reason).split(":", 1)[0]  # RE2 appends the offending fragment
        raise ConfigError(
            f"{where}.pattern: not a valid RE2 pattern ({reason}; backreferences and "
            "lookaround are not supported)"
        ) from None
    if regex.programsize > MAX_PROGRAM_SIZE:
        raise ConfigError(
            f"{where}.pattern: too complex (program size {regex.programsize} > "
            f"{MAX_PROGRAM_SIZE}); simplify it"
        )
    if regex.search("") is not None:
        raise ConfigError(f"{where}.pattern: matches the empty string")
    return CustomPattern(name, pattern, float(confidence), regex)
