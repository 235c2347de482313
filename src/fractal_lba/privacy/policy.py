"""Per-tenant PII policy (SPEC section 8): mode, report-only rollout, types, phone regions,
threshold, custom patterns; parsed from a tenants-file ``pii`` table or from the global
defaults (``PII_SCAN_MODE``, ``PII_REPORT_ONLY``, ``PII_PHONE_REGIONS``).

Modes: ``off`` (no scan), ``detect`` (count + audit note, the request proceeds), ``block``
(400 ``pii_detected``), ``redact`` (the request proceeds; stored, audited and logged copies
are redacted and the raw WAL body is removed within ``PII_WAL_RETENTION``).
``report_only = true`` makes ``block``/``redact`` behave as ``detect`` while counting what
they would have done (``flk_pii_would_have_total``), for a staged rollout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NoReturn

import phonenumbers

from fractal_lba.errors import ConfigError
from fractal_lba.privacy.custom import MAX_PATTERNS, CustomPattern, compile_pattern
from fractal_lba.privacy.findings import BUILTIN_TYPES, DEFAULT_MIN_CONFIDENCE
from fractal_lba.privacy.phone import DEFAULT_REGIONS
from fractal_lba.privacy.scanner import ScanConfig

PiiMode = Literal["off", "detect", "block", "redact"]
PII_MODES: tuple[str, ...] = ("off", "detect", "block", "redact")
POLICY_FIELDS = frozenset(
    {"mode", "report_only", "types", "phone_regions", "min_confidence", "custom_patterns"}
)
PATTERN_FIELDS = frozenset({"name", "pattern", "confidence"})

Fail = Callable[[str, str], NoReturn]
"""``fail(field, problem)`` raises the caller's ConfigError (naming source and tenant)."""


@dataclass(frozen=True, slots=True)
class PiiSettings:
    """A tenant's PII policy, validated; ``scan_config`` is what the scanner is built from."""

    mode: PiiMode = "detect"
    report_only: bool = False
    types: frozenset[str] = frozenset(BUILTIN_TYPES)
    phone_regions: tuple[str, ...] = DEFAULT_REGIONS
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    custom_patterns: tuple[CustomPattern, ...] = field(default=())

    @property
    def enabled(self) -> bool:
        """Whether anything is scanned at all."""
        return self.mode != "off"

    @property
    def action(self) -> PiiMode:
        """What happens to a request with findings: report-only turns block/redact into
        detect."""
        if self.report_only and self.mode in ("block", "redact"):
            return "detect"
        return self.mode

    @property
    def acts(self) -> bool:
        """Block or redact for real (the raw WAL body must then go early)."""
        return self.action in ("block", "redact")

    def scan_config(self) -> ScanConfig:
        return ScanConfig(
            types=self.types,
            phone_regions=self.phone_regions,
            custom=self.custom_patterns,
            min_confidence=self.min_confidence,
        )


def check_regions(values: object, fail: Fail, where: str) -> tuple[str, ...]:
    """Upper-case ISO 3166 region codes that libphonenumber knows, at least one."""
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    if not isinstance(values, Sequence) or not values:
        fail(where, "must be a non-empty list of region codes like US, GB, DE")
    out: list[str] = []
    for v in values:
        code = v.upper() if isinstance(v, str) else ""
        if code not in phonenumbers.SUPPORTED_REGIONS:
            fail(where, f"{v!r} is not a region code libphonenumber knows (e.g. US, GB, DE)")
        if code not in out:
            out.append(code)
    return tuple(out)


def parse_policy(
    obj: object, fail: Fail, *, default_regions: tuple[str, ...] = DEFAULT_REGIONS
) -> PiiSettings:
    """A tenants-file ``pii`` table -> :class:`PiiSettings` (errors through ``fail``)."""
    if not isinstance(obj, Mapping):
        fail("pii", "must be a table/mapping with mode and report_only")
    for name in obj:
        if name not in POLICY_FIELDS:
            fail(
                f"pii.{name}", f"unknown field (expected one of {', '.join(sorted(POLICY_FIELDS))})"
            )
    mode = obj.get("mode", "detect")
    if not isinstance(mode, str) or mode not in PII_MODES:
        fail("pii.mode", f"must be one of {', '.join(PII_MODES)}")
    report_only = obj.get("report_only", False)
    if not isinstance(report_only, bool):
        fail("pii.report_only", "must be true or false")
    types = frozenset(BUILTIN_TYPES)
    if "types" in obj:
        raw = obj["types"]
        if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
            fail("pii.types", f"must be a list of types from {', '.join(BUILTIN_TYPES)}")
        for t in raw:
            if t not in BUILTIN_TYPES:
                fail("pii.types", f"unknown type {t!r} (expected {', '.join(BUILTIN_TYPES)})")
        types = frozenset(raw)
    regions = (
        check_regions(obj["phone_regions"], fail, "pii.phone_regions")
        if "phone_regions" in obj
        else default_regions
    )
    floor = obj.get("min_confidence", DEFAULT_MIN_CONFIDENCE)
    if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0 < floor <= 1:
        fail("pii.min_confidence", "must be a number in (0, 1]")
    patterns: list[CustomPattern] = []
    raw_patterns = obj.get("custom_patterns", [])
    if not isinstance(raw_patterns, list):
        fail("pii.custom_patterns", "must be a list of {name, pattern[, confidence]} tables")
    if len(raw_patterns) > MAX_PATTERNS:
        fail("pii.custom_patterns", f"at most {MAX_PATTERNS} patterns")
    seen: set[str] = set()
    for i, p in enumerate(raw_patterns):
        where = f"pii.custom_patterns[{i}]"
        if not isinstance(p, Mapping):
            fail(where, "must be a table with name and pattern")
        for name in p:
            if name not in PATTERN_FIELDS:
                fail(f"{where}.{name}", "unknown field (expected name, pattern, confidence)")
        try:
            pattern = compile_pattern(
                p.get("name"),  # type: ignore[arg-type]
                p.get("pattern"),  # type: ignore[arg-type]
                where,
                p.get("confidence", 0.9),
            )
        except ConfigError as exc:
            field_, _, problem = str(exc).partition(": ")
            fail(field_, problem)
        if pattern.name in seen:
            fail(f"{where}.name", f"duplicate pattern name {pattern.name!r}")
        seen.add(pattern.name)
        patterns.append(pattern)
    return PiiSettings(
        mode,  # type: ignore[arg-type]
        report_only,
        types,
        regions,
        float(floor),
        tuple(patterns),
    )
