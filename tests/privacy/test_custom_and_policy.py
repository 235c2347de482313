"""Custom patterns (RE2, validated at load) and the tenants-file ``pii`` policy."""

from __future__ import annotations

import re
from typing import NoReturn

import pytest

from fractal_lba.errors import ConfigError
from fractal_lba.privacy import Scanner, compile_pattern
from fractal_lba.privacy.policy import PiiSettings, parse_policy


def fail(field: str, problem: str) -> NoReturn:
    raise ConfigError(f"{field}: {problem}")


def test_custom_pattern_finds_and_reports_char_offsets() -> None:
    p = compile_pattern("employee_id", r"EMP-\d{6}", "pii.custom_patterns[0]")
    (m,) = p.find("ñé EMP-123456.")
    assert (m.type, m.start, m.end) == ("employee_id", 3, 13)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"(a)\1", "not a valid RE2 pattern"),
        (r"(?=x)a", "not a valid RE2 pattern"),
        (r"[", "not a valid RE2 pattern"),
        (r"a*", "matches the empty string"),
        ("x" * 600, "longer than 512"),
        ("(" + "a{100}" * 40 + ")", "too complex"),
    ],
)
def test_bad_patterns_refused_at_load(pattern: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as err:
        compile_pattern("x", pattern, "pii.custom_patterns[2]")
    assert str(err.value).startswith("pii.custom_patterns[2].pattern: ")


@pytest.mark.timeout(20)
def test_pathological_pattern_does_not_backtrack() -> None:
    """``(a+)+$`` takes Python's ``re`` exponential time on 'aaa...b'; RE2 is linear. If the
    engine backtracked, this would run for longer than the universe and the timeout fails it."""
    p = compile_pattern("evil", r"(a+)+$", "p")
    assert p.find("a" * 256 + "b") == []
    assert p.find("a" * 256)[0].end == 256


def test_custom_names_cannot_shadow_builtins() -> None:
    with pytest.raises(ConfigError, match="built-in type"):
        compile_pattern("email", "x", "p")


def test_parse_policy_full() -> None:
    s = parse_policy(
        {
            "mode": "block", "report_only": True, "types": ["email", "ssn"],
            "phone_regions": ["us", "GB"], "min_confidence": 0.7,
            "custom_patterns": [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"}],
        },
        fail,
    )  # fmt: skip
    assert (s.mode, s.report_only, s.action, s.acts) == ("block", True, "detect", False)
    assert s.types == {"email", "ssn"} and s.phone_regions == ("US", "GB")
    scanner = Scanner(s.scan_config())
    assert [m.type for m in scanner.scan_text("a@corp.io EMP-123456 10.0.0.1")] == [
        "email", "employee_id",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"mode": "shred"}, "pii.mode: must be one of off, detect, block, redact"),
        ({"report_only": "yes"}, "pii.report_only: must be true or false"),
        ({"types": ["email", "dna"]}, "pii.types: unknown type 'dna'"),
        ({"phone_regions": ["XX"]}, "pii.phone_regions: 'XX' is not a region code"),
        ({"min_confidence": 2}, "pii.min_confidence: must be a number in (0, 1]"),
        ({"colour": 1}, "pii.colour: unknown field"),
        ({"custom_patterns": [{"name": "x", "pattern": r"(a)\1"}]},
         "pii.custom_patterns[0].pattern: not a valid RE2 pattern"),
        ({"custom_patterns": [{"name": "x", "pattern": "a"}, {"name": "x", "pattern": "b"}]},
         "pii.custom_patterns[1].name: duplicate pattern name 'x'"),
    ],
)  # fmt: skip
def test_parse_policy_errors_name_the_field(obj: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_policy(obj, fail)


def test_defaults() -> None:
    s = PiiSettings()
    assert s.mode == "detect" and s.enabled and not s.acts
    assert not PiiSettings(mode="off").enabled
    assert PiiSettings(mode="redact").acts
