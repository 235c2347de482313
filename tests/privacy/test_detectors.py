"""Each detector on its own: shapes, validators and false-positive filters."""

from __future__ import annotations

import pytest

from fractal_lba.privacy import (
    ScanConfig,
    Scanner,
    find_cards,
    find_emails,
    find_ips,
    find_phones,
    find_ssns,
)
from fractal_lba.privacy.card import TEST_CARDS, is_card, luhn_ok
from fractal_lba.privacy.findings import Match
from fractal_lba.privacy.scanner import redact_text, resolve_overlaps


def spans(matches: list[Match], text: str) -> list[str]:
    return [text[m.start : m.end] for m in matches]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("ping bob.smith@acme.co.uk now", ["bob.smith@acme.co.uk"]),
        ("jörg@münchen.de", ["jörg@münchen.de"]),
        ("ivan@пример.рф", ["ivan@пример.рф"]),
        ("user@xn--mnchen-3ya.de", ["user@xn--mnchen-3ya.de"]),
        ("end of sentence a+b@c.io.", ["a+b@c.io"]),
        ("x@example.com y@mail.example.org z@corp.test w@h.example v@q.invalid u@d.localhost", []),
        ("git@github.com:org/repo.git", []),
        ("lodash@4.17.21 pkg@1.2.3-beta.rc", []),
        ("first..last@corp.com", []),
        ("user@localhost @alice nginx@sha256:abc", []),
    ],
)
def test_email(text: str, found: list[str]) -> None:
    assert spans(find_emails(text), text) == found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("call (415) 555-2671", ["(415) 555-2671"]),
        ("415.555.2671 / 415 555 2671", ["415.555.2671", "415 555 2671"]),
        ("+44 20 7946 0958", ["+44 20 7946 0958"]),
        ("+81 3-1234-5678", ["+81 3-1234-5678"]),
        ("+7 (495) 123-45-67", ["+7 (495) 123-45-67"]),
        ("tel:+14155552671", ["+14155552671"]),
        ("(201) 555-0123 is fictional", []),
        ("415-5552671 mixes separators", []),
        ("2024-11-05 and 1730812345", []),
    ],
)
def test_phone(text: str, found: list[str]) -> None:
    got = [m for m in find_phones(text) if m.confidence >= 0.5]
    assert spans(resolve_overlaps(got), text) == found


def test_phone_bare_digits_need_context() -> None:
    (bare,) = find_phones("4155552671")
    (ctx,) = find_phones("4155552671", context=True)
    assert bare.confidence < 0.5 <= ctx.confidence
    assert find_phones("mobile 4155552671")[0].confidence >= 0.5


def test_phone_regions_are_configurable() -> None:
    assert find_phones("020 7946 0958") == []
    (m,) = find_phones("020 7946 0958", ("US", "GB"))
    assert m.confidence >= 0.9


@pytest.mark.parametrize(
    ("text", "conf"),
    [("536-90-4399", 0.85), ("536 90 4399", 0.85), ("ssn 536904399", 0.8), ("536904399", 0.35)],
)
def test_ssn_shapes(text: str, conf: float) -> None:
    (m,) = find_ssns(text)
    assert m.confidence == conf


@pytest.mark.parametrize(
    "text",
    ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000", "078-05-1120",
     "219-09-9999", "123-45-6789", "536-904399", "ORD-536-90-4399-1"],
)  # fmt: skip
def test_ssn_invalid_and_advertised(text: str) -> None:
    assert find_ssns(text) == []


def test_ssn_key_context() -> None:
    (m,) = find_ssns("536904399", context=True)
    assert m.confidence >= 0.5


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("card 4539 1488 0343 6467 exp", ["4539 1488 0343 6467"]),
        ("4539-1488-0343-6467", ["4539-1488-0343-6467"]),
        ("4539148803436467 12/25", ["4539148803436467"]),
        ("amex 3759 876543 21004", ["3759 876543 21004"]),
        ("4539 1488 0343 6467 415-555-2671", ["4539 1488 0343 6467"]),
        ("4539148803436468", []),  # Luhn fails
        ("7132161838423467", []),  # no issuer
        ("4111 1111 1111 1111 and 4242424242424242", []),  # processor test cards
        ("ORD-4539148803436467x", []),
    ],
)
def test_card(text: str, found: list[str]) -> None:
    assert spans(find_cards(text), text) == found


def test_card_validators() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert all(not is_card(c) for c in TEST_CARDS)
    assert is_card("5425233430109903") and not is_card("5425233430109904")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("host 10.0.0.1:8080", ["10.0.0.1"]),
        ("172.16.5.4 and 100.64.1.1 and 8.8.8.8.", ["172.16.5.4", "100.64.1.1", "8.8.8.8"]),
        ("fd12:3456:789a::1", ["fd12:3456:789a::1"]),
        ("[2a00:1450:4001:82a::200e]:443", ["2a00:1450:4001:82a::200e"]),
        ("::ffff:192.168.1.10", ["::ffff:192.168.1.10", "192.168.1.10"]),
        ("127.0.0.1 ::1 fe80::1%eth0 169.254.1.1 224.0.0.1 255.255.255.255 0.0.0.0", []),
        ("192.0.2.5 198.51.100.1 203.0.113.9 2001:db8::1 3fff::1 198.18.0.1", []),
        ("version 1.2.3.4, v1.2.3.4, 1.3.6.1.4.1, 10.0.19041.1237, 010.001.002.003", []),
        ("00:1a:2b:3c:4d:5e 10:22:33 std::vector dead::beef", []),
        ("arn:aws:iam::123456789012:user/x", []),
    ],
)
def test_ip(text: str, found: list[str]) -> None:
    assert sorted(spans(find_ips(text), text)) == sorted(found)


def test_scanner_resolves_overlaps_and_thresholds() -> None:
    s = Scanner()
    text = "::ffff:192.168.1.10 and +1 415 555 2671 and 536904399"
    assert spans(s.scan_text(text), text) == ["::ffff:192.168.1.10", "+1 415 555 2671"]
    assert spans(s.scan_text("536904399", "ssn"), "536904399") == ["536904399"]


def test_scanner_types_can_be_disabled() -> None:
    s = Scanner(ScanConfig(types=frozenset({"email"})))
    text = "a@corp.io 10.0.0.1 536-90-4399"
    assert [m.type for m in s.scan_text(text)] == ["email"]


def test_redact_text() -> None:
    text = "mail a@corp.io or 10.0.0.1"
    out = redact_text(text, Scanner().scan_text(text))
    assert out == "mail [REDACTED_EMAIL] or [REDACTED_IP_ADDRESS]"
