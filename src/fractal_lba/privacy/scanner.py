"""The PII scanner: one compiled :class:`Scanner` per policy, run over the scanned fields of
a PCS (SPEC section 8): ``shard_id``, every ``meta`` key and value, ``ft.fallbacks``.

The hex/base64 fields (``pcs_id``, ``merkle_root``, ``sig``, ``vrf``) and the numeric and
enumerated fields are never scanned: they cannot carry free text.

Cost: a maximal PCS has ~8,000 characters to scan and the budget is 50 us, less than one
regex pass over them. So a pre-filter of C-level operations decides which detectors can
possibly match before any regex runs: the field's bytes are translated to a *shape* (digits
``0``, space/hyphen ``-``, ``.+()`` kept, all else ``x``) and searched with ``in``: email needs
``@``; IPv4 ``0.0``; an SSN ``000-00-0000`` or nine digits in a row; a NANP number
``000-000-0000``, ``000.000.0000`` or ``(000)``; an international number ``+0``; a card
``0000-0000-0000``, ``0000-000000-000`` or a long run; IPv6 ``::`` or eight colon-separated
hex groups.
Timestamps, versions and ids (``2024-11-05T10:22:33Z``, ``v2.14.1``, ``ORD-2024-000123``)
fail every shape, so the common field costs a translate and a few ``in`` checks; and the
pre-filter runs once over all the fields of a PCS joined, before any per-field work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fractal_lba.contract import PCS
from fractal_lba.privacy import phone as _phone
from fractal_lba.privacy import ssn as _ssn
from fractal_lba.privacy.card import find_cards
from fractal_lba.privacy.custom import CustomPattern
from fractal_lba.privacy.email import find_emails
from fractal_lba.privacy.findings import (
    BUILTIN_TYPES,
    CREDIT_CARD,
    DEFAULT_MIN_CONFIDENCE,
    EMAIL,
    IP_ADDRESS,
    PHONE,
    SSN,
    Finding,
    Match,
    redaction_token,
)
from fractal_lba.privacy.ip import find_ipv4, find_ipv6, is_version_key


def _shape_table() -> bytes:
    """Byte -> shape class: digit ``0``, hex letter ``h``, space/hyphen ``-``, and ``.+():``
    as themselves; everything else (letters, other punctuation, UTF-8 bytes) ``x``."""
    table = bytearray(b"x" * 256)
    for b in range(48, 58):
        table[b] = ord("0")
    for ch in " -":
        table[ord(ch)] = ord("-")
    for ch in ".+():":
        table[ord(ch)] = ord(ch)
    for ch in "abcdefABCDEF":
        table[ord(ch)] = ord("h")
    return bytes(table)


_SHAPE = _shape_table()
_IPV4_SHAPE = re.compile(rb"\.0{1,3}\.0{1,3}\.")
_IPV6_SHAPE = re.compile(rb":[0h]{1,4}:[0h]{1,4}:[0h]{1,4}:[0h]{1,4}:[0h]{1,4}:[0h]{1,4}:")
"""Seven groups' worth of colons: the full (uncompressed) form; compressed forms have ``::``."""
_K_EMAIL, _K_IPV4, _K_IPV6, _K_PHONE, _K_SSN, _K_CARD = 1, 2, 4, 8, 16, 32
_PHONE_SHAPES = (b"000-000-0000", b"000.000.0000", b"(000)")
"""Shapes every NANP national number has (``415-555-2671``, ``415 555 2671``, ``415.555.2671``,
``(415) 555-2671``); bare digits are caught by the nine-digit run, international by ``+0``."""


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """What to look for: enabled built-in types, phone regions, custom patterns, threshold."""

    types: frozenset[str] = frozenset(BUILTIN_TYPES)
    phone_regions: tuple[str, ...] = _phone.DEFAULT_REGIONS
    custom: tuple[CustomPattern, ...] = ()
    min_confidence: float = DEFAULT_MIN_CONFIDENCE


@dataclass(frozen=True, slots=True)
class ScannedField:
    """One string of a PCS to scan: its safe path, whether it is a meta key, its key context."""

    path: str
    text: str
    part: str = "value"
    context: str = ""


def resolve_overlaps(matches: list[Match]) -> list[Match]:
    """Keep the best of overlapping matches (higher confidence, then longer), in text order."""
    if len(matches) < 2:
        return matches
    ranked = sorted(matches, key=lambda m: (-m.confidence, -(m.end - m.start), m.start))
    kept: list[Match] = []
    for m in ranked:
        if all(m.end <= k.start or m.start >= k.end for k in kept):
            kept.append(m)
    kept.sort(key=lambda m: m.start)
    return kept


@dataclass(frozen=True)
class Scanner:
    """Pure, reusable scanner for one :class:`ScanConfig` (build once, at config load)."""

    config: ScanConfig = field(default_factory=ScanConfig)

    def __post_init__(self) -> None:
        t = self.config.types
        object.__setattr__(self, "_email", EMAIL in t)
        object.__setattr__(self, "_phone", PHONE in t)
        object.__setattr__(self, "_ssn", SSN in t)
        object.__setattr__(self, "_card", CREDIT_CARD in t)
        object.__setattr__(self, "_ip", IP_ADDRESS in t)
        others = [r for r in self.config.phone_regions if r not in _phone.NANP_REGIONS]
        object.__setattr__(self, "_other_regions", bool(others))

    @property
    def types(self) -> tuple[str, ...]:
        """Every type this scanner can report (built-ins enabled + custom names)."""
        return (*sorted(self.config.types), *(c.name for c in self.config.custom))

    def candidates(self, text: str) -> int:
        """Bit set of the detectors that could match somewhere in ``text`` (the pre-filter).

        Works on one field or on several joined by newlines (a shape cannot span one).
        """
        kinds = 0
        if self._email and "@" in text:  # type: ignore[attr-defined]
            kinds |= _K_EMAIL
        shape = text.encode("utf-8", "surrogatepass").translate(_SHAPE)
        if self._ip and b":" in shape and (b"::" in shape or _IPV6_SHAPE.search(shape)):  # type: ignore[attr-defined]
            kinds |= _K_IPV6
        if b"0" not in shape:
            return kinds
        if self._ip and _IPV4_SHAPE.search(shape):  # type: ignore[attr-defined]
            kinds |= _K_IPV4
        long_run = b"000000000" in shape
        if self._phone and (  # type: ignore[attr-defined]
            long_run
            or b"+0" in shape
            or any(p in shape for p in _PHONE_SHAPES)
            or (self._other_regions and b"0" in shape)  # type: ignore[attr-defined]
        ):
            kinds |= _K_PHONE
        if self._ssn and (long_run or b"000-00-0000" in shape):  # type: ignore[attr-defined]
            kinds |= _K_SSN
        if self._card and (  # type: ignore[attr-defined]
            long_run or b"0000-0000-0000" in shape or b"0000-000000-000" in shape
        ):
            kinds |= _K_CARD
        return kinds

    def scan_text(self, text: str, context: str = "", kinds: int = -1) -> list[Match]:
        """Matches at or above the threshold in one string, overlaps resolved.

        ``context`` is the field's key (``meta`` key), which can confirm an ambiguous SSN or a
        bare ten-digit phone number (``{"ssn": "536904399"}``) or mark a dotted quad as a
        version (``{"version": "4.2.1.0"}``). ``kinds`` restricts the detectors to those a
        pre-filter over several fields already allowed.
        """
        kinds &= self.candidates(text)
        found: list[Match] = []
        if kinds:
            if kinds & _K_EMAIL:
                found.extend(find_emails(text))
            if kinds & _K_IPV4:
                vctx = bool(context) and is_version_key(context)
                found.extend(find_ipv4(text, version_context=vctx))
            if kinds & _K_PHONE:
                ctx = bool(context) and _phone.has_context(context)
                found.extend(_phone.find_phones(text, self.config.phone_regions, context=ctx))
            if kinds & _K_SSN:
                ctx = bool(context) and _ssn.has_context(context)
                found.extend(_ssn.find_ssns(text, context=ctx))
            if kinds & _K_CARD:
                found.extend(find_cards(text))
            if kinds & _K_IPV6:
                found.extend(find_ipv6(text))
        for pattern in self.config.custom:
            found.extend(pattern.find(text))
        if not found:
            return found
        floor = self.config.min_confidence
        return resolve_overlaps([m for m in found if m.confidence >= floor])

    def scan_fields(self, fields: Sequence[ScannedField]) -> list[Finding]:
        """Findings over ``fields`` (paths as given); one pre-filter pass over all of them."""
        kinds = self.candidates("\n".join(f.text for f in fields))
        if not kinds and not self.config.custom:
            return []
        out: list[Finding] = []
        for f in fields:
            for m in self.scan_text(f.text, f.context, kinds):
                out.append(Finding(m.type, f.path, m.start, m.end - m.start, m.confidence))
        return out


TokenFn = Callable[[str, str], str]
"""Renders the replacement of one match from ``(type, value)`` (e.g. a keyed-hash form)."""


def redact_text(text: str, matches: Sequence[Match], token: TokenFn | None = None) -> str:
    """``text`` with every match replaced by its ``[REDACTED_<TYPE>]`` token (or ``token``'s
    rendering); matches must not overlap (what :meth:`Scanner.scan_text` returns)."""
    if not matches:
        return text
    parts: list[str] = []
    pos = 0
    for m in sorted(matches, key=lambda m: m.start):
        parts.append(text[pos : m.start])
        value = text[m.start : m.end]
        parts.append(redaction_token(m.type) if token is None else token(m.type, value))
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class PcsScan:
    """The findings of one PCS and the per-string matches the redacted copies are made from.

    ``shard_id``, ``meta`` (key -> (key matches, value matches)) and ``fallbacks`` hold only
    the strings that had a match.
    """

    findings: tuple[Finding, ...]
    shard_id: tuple[Match, ...] = ()
    meta: tuple[tuple[str, tuple[Match, ...], tuple[Match, ...]], ...] = ()
    fallbacks: tuple[tuple[int, tuple[Match, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.findings)


_CLEAN = PcsScan(())


def meta_path(key: str, key_matches: Sequence[Match]) -> str:
    """``meta.<key>``, with PII in the key itself replaced by its token (paths are logged,
    audited and sent in error bodies, so they must never carry a value)."""
    return "meta." + (redact_text(key, key_matches) if key_matches else key)


def scan_pcs(scanner: Scanner, pcs: PCS) -> PcsScan:
    """Scan ``shard_id``, every meta key and value and ``ft.fallbacks`` of ``pcs``."""
    texts = [pcs.shard_id]
    if pcs.meta:
        for key, value in pcs.meta.items():
            texts += (key, value)
    if pcs.ft is not None:
        texts += pcs.ft.fallbacks
    kinds = scanner.candidates("\n".join(texts))
    if not kinds and not scanner.config.custom:
        return _CLEAN
    findings: list[Finding] = []
    shard = scanner.scan_text(pcs.shard_id, "", kinds)
    findings.extend(
        Finding(m.type, "shard_id", m.start, m.end - m.start, m.confidence) for m in shard
    )
    meta: list[tuple[str, tuple[Match, ...], tuple[Match, ...]]] = []
    if pcs.meta:
        for key, value in pcs.meta.items():
            km = scanner.scan_text(key, "", kinds)
            vm = scanner.scan_text(value, key, kinds)
            if km or vm:
                path = meta_path(key, km)
                findings.extend(
                    Finding(m.type, path, m.start, m.end - m.start, m.confidence, "key") for m in km
                )
                findings.extend(
                    Finding(m.type, path, m.start, m.end - m.start, m.confidence) for m in vm
                )
                meta.append((key, tuple(km), tuple(vm)))
    fallbacks: list[tuple[int, tuple[Match, ...]]] = []
    if pcs.ft is not None:
        for i, text in enumerate(pcs.ft.fallbacks):
            fm = scanner.scan_text(text, "", kinds)
            if fm:
                path = f"ft.fallbacks[{i}]"
                findings.extend(
                    Finding(m.type, path, m.start, m.end - m.start, m.confidence) for m in fm
                )
                fallbacks.append((i, tuple(fm)))
    return PcsScan(tuple(findings), tuple(shard), tuple(meta), tuple(fallbacks))
