"""Phone numbers, validated by ``phonenumbers`` (the Python port of Google's libphonenumber).

Candidates are found by three shapes, then parsed and checked with ``is_valid_number`` (the
number plan of its country: length, leading digits, number type):

- international, ``+`` and a country code: any country (``+44 20 7946 0958``);
- North American national (``(415) 555-2671``, ``415.555.2671``, ``1-415-555-2671``) when a
  NANP region (US, CA, ...) is in the default region list; consistent separators;
- other national formats with a trunk ``0`` (``020 7946 0958``, ``030 901820``), tried
  against each non-NANP default region.

Confidence: valid and formatted 0.95 (international) / 0.9 (national); ten bare digits
(``4155552671``) are as often an id or a timestamp, so 0.45 unless a context word (``phone``,
``tel``, ``mobile``...) is in the field or its key (0.85); possible-but-invalid numbers are
shape only (0.3) and stay under the reporting threshold. The NANP's fictional 555-0100 to
555-0199 block is not anyone's number.

Parsing costs tens of microseconds, so results are cached per candidate string.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import phonenumbers

from fractal_lba.privacy.findings import PHONE, Match

DEFAULT_REGIONS: tuple[str, ...] = ("US",)
NANP_REGIONS = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1])

INTL_RE = re.compile(r"\+(?<![\w+]\+)[1-9](?:[ .-]?(?:\(\d{1,4}\)|\d{1,6})){1,8}(?![\w]|[.-]?\d)")
NANP_PAREN_RE = re.compile(
    r"\((?<![\w+.-]\()[2-9][0-9]{2}\)[ .-]?[2-9][0-9]{2}[ .-]?[0-9]{4}(?![\w]|[.-]?[0-9])"
)
NANP_RE = re.compile(  # groups: sep after a leading country code 1, after area, after exchange
    r"[0-9](?<![\w+.-][0-9])(?:(?<=1)([ .-]?)[2-9][0-9]{2}|(?<=[2-9])[0-9]{2})"
    r"([ .-]?)[2-9][0-9]{2}([ .-]?)[0-9]{4}(?![\w]|[.-]?[0-9])"
)
TRUNK_RE = re.compile(
    r"[(0](?<![\w+.-][(0])(?:(?<=\()0\d{1,5}\)|(?<=0)\d{1,5})(?:[ ./-]?\d{2,8}){1,4}"
    r"(?![\w]|[.-]?\d)"
)
CONTEXT_RE = re.compile(
    r"phone|\btel\b|tel:|mobile|\bcell|\bfax\b|\bcall\b|contact|whatsapp|sms", re.IGNORECASE
)
CONTEXT_WORDS = ("phone", "tel", "mobile", "cell", "fax", "call", "contact", "whatsapp", "sms")

INTERNATIONAL = 0.95
NATIONAL = 0.9
BARE = 0.45
BARE_WITH_CONTEXT = 0.85
SHAPE_ONLY = 0.3
MIN_DIGITS, MAX_DIGITS = 7, 15


@functools.lru_cache(maxsize=8192)
def _judge(candidate: str, region: str | None) -> float | None:
    """Validity of one candidate string (cached: parsing is the expensive part)."""
    try:
        num = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    if num.country_code == 1:
        nsn = str(num.national_number)
        if nsn[3:6] == "555" and "0100" <= nsn[6:] <= "0199":
            return None  # NANP fictional-use block
    if phonenumbers.is_valid_number(num):
        return 1.0
    if phonenumbers.is_possible_number(num):
        return SHAPE_ONLY
    return None


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def has_context(text: str) -> bool:
    """Whether ``text`` (a field or its key) names a phone number."""
    low = text.lower()
    return any(w in low for w in CONTEXT_WORDS) and CONTEXT_RE.search(low) is not None


def find_phones(
    text: str,
    regions: Sequence[str] = DEFAULT_REGIONS,
    *,
    context: bool = False,
    ndigits: int | None = None,
) -> list[Match]:
    """Phone numbers in ``text``; ``context`` says the field's key already names a phone;
    ``ndigits`` (the caller's digit count, if known) skips shapes that cannot fit."""
    if ndigits is None:
        ndigits = _digits(text)
    out: list[Match] = []
    for m in INTL_RE.finditer(text) if "+" in text else ():
        cand = m.group(0)
        if not MIN_DIGITS <= _digits(cand) <= MAX_DIGITS:
            continue
        verdict = _judge(cand, None)
        if verdict is not None:
            out.append(Match(PHONE, m.start(), m.end(), INTERNATIONAL * verdict))
    if ndigits >= 10 and any(r in NANP_REGIONS for r in regions):
        if "(" in text:
            for m in NANP_PAREN_RE.finditer(text):
                verdict = _judge(m.group(0), "US")
                if verdict is not None:
                    out.append(Match(PHONE, m.start(), m.end(), NATIONAL * verdict))
        ctx: bool | None = True if context else None
        for m in NANP_RE.finditer(text):
            country, area, exchange = m.group(1), m.group(2), m.group(3)
            if area != exchange or (country is not None and country != area):
                continue  # 415-5552671, 1-415.555.2671: not how anyone writes a number
            verdict = _judge(m.group(0), "US")
            if verdict is None:
                continue
            if area == "":
                if ctx is None:
                    ctx = has_context(text)
                conf = (BARE_WITH_CONTEXT if ctx else BARE) * verdict
            else:
                conf = NATIONAL * verdict
            out.append(Match(PHONE, m.start(), m.end(), conf))
    others = [r for r in regions if r not in NANP_REGIONS]
    if others and "0" in text and ndigits >= MIN_DIGITS:
        for m in TRUNK_RE.finditer(text):
            cand = m.group(0)
            if not MIN_DIGITS <= _digits(cand) <= MAX_DIGITS:
                continue
            best: float | None = None
            for region in others:
                verdict = _judge(cand, region)
                if verdict is not None and (best is None or verdict > best):
                    best = verdict
                    if verdict == 1.0:
                        break
            if best is not None:
                out.append(Match(PHONE, m.start(), m.end(), NATIONAL * best))
    return out
