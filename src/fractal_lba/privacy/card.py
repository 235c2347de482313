"""Payment card numbers (PANs): 13-19 digits, contiguous or in the printed groupings, with a
known issuer (IIN) range and length, and a valid Luhn check digit.

Not cards: numbers that fail any of those, and the processors' published test numbers
(Stripe, Braintree, Adyen, PayPal, Visa/Mastercard developer docs), which appear in
fixtures and docs and belong to nobody.
"""

from __future__ import annotations

import re

from fractal_lba.privacy.findings import CREDIT_CARD, Match

CARD_RE = re.compile(
    r"(?<![\w.+-])(?:"
    r"\d{13,19}(?![\w]|\.\d)"  # contiguous
    r"|\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{3})?(?![\w]|\1\d|\.\d)"  # 4-4-4-4(-3)
    r"|\d{4}([ -])\d{6}\2\d{4,5}(?![\w]|\2\d|\.\d)"  # Amex 4-6-5, Diners 4-6-4
    r")"
)

_MORE_DIGITS = re.compile(r"[ .-]\d")

# (prefix low, prefix high, allowed lengths): IIN ranges by network (ISO/IEC 7812 registries
# as published by the networks, 2024).
_IIN_RANGES: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (6011, 6011, frozenset({16, 17, 18, 19})),  # Discover
    (644, 649, frozenset({16, 17, 18, 19})),
    (65, 65, frozenset({16, 17, 18, 19})),
    (622126, 622925, frozenset({16, 17, 18, 19})),  # Discover / UnionPay co-brand
    (62, 62, frozenset({16, 17, 18, 19})),  # UnionPay
    (3528, 3589, frozenset({16, 17, 18, 19})),  # JCB
    (300, 305, frozenset({14, 16, 17, 18, 19})),  # Diners Club International
    (36, 36, frozenset({14, 16, 17, 18, 19})),
    (38, 39, frozenset({14, 16, 17, 18, 19})),
    (2200, 2204, frozenset({16, 17, 18, 19})),  # Mir
    (50, 50, frozenset({13, 16, 17, 18, 19})),  # Maestro
    (56, 58, frozenset({13, 16, 17, 18, 19})),
    (639, 639, frozenset({13, 16, 17, 18, 19})),
    (67, 67, frozenset({13, 16, 17, 18, 19})),
    (60, 60, frozenset({16, 17, 18, 19})),  # RuPay
    (81, 82, frozenset({16})),  # RuPay 8-series / UnionPay 81
    (508, 508, frozenset({16})),
)

TEST_CARDS = frozenset(
    {
        # Stripe
        "4242424242424242", "4000056655665556", "5555555555554444", "2223003122003222",
        "5200828282828210", "5105105105105100", "378282246310005", "371449635398431",
        "6011111111111117", "6011000990139424", "6011981111111113", "3056930009020004",
        "36227206271667", "3566002020360505", "6200000000000005", "4000002500003155",
        "4000000000003220", "4000000000000002", "4000000000009995", "4000000000000077",
        "4000000000000093", "4000000000000341", "4000000000003063", "4000008400001629",
        "6205500000000000004", "3782822463100050",
        # Braintree / PayPal / Visa / Mastercard developer docs
        "4111111111111111", "4005519200000004", "4009348888881881", "4012000033330026",
        "4012000077777777", "4012888888881881", "4217651111111119", "4500600000000061",
        "2223000048400011", "5454545454545454", "5431111111111111",
        "378734493671000", "6011000991300009", "3530111333300000", "3566111111111113",
        "38520000023237", "30569309025904", "6304000000000000", "6759649826438453",
        "4222222222222", "4007000000027", "4012888818888", "5424000000000015",
        "4000000000000010", "4000000000000028", "5500000000000004", "340000000000009",
        "30000000000004", "6011000000000004", "3088000000000009", "4917610000000000",
        "4917610000000000003", "4001919257537193", "4007702835532454",
        # Adyen
        "4111111145551142", "4988438843884305", "5101180000000007", "2222400070000005",
        "370000000000002", "3600666633334444", "6011601160116611", "3569990010095841",
        "6243030000000001", "4000020000000000", "5555444433331111", "4444333322221111",
    }
)  # fmt: skip

CONFIRMED = 0.95


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812-1 Luhn check over a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def issuer_ok(digits: str) -> bool:
    """The number's prefix lies in a known IIN range that issues cards of its length."""
    n = len(digits)
    for lo, hi, lengths in _IIN_RANGES:
        width = len(str(lo))
        if n in lengths and lo <= int(digits[:width]) <= hi:
            return True
    return False


def is_card(digits: str) -> bool:
    """Length 13-19, issuer range + length, Luhn, and not a published test number."""
    return (
        13 <= len(digits) <= 19
        and issuer_ok(digits)
        and luhn_ok(digits)
        and digits not in TEST_CARDS
    )


def find_cards(text: str) -> list[Match]:
    """Card numbers in ``text``."""
    out: list[Match] = []
    for m in CARD_RE.finditer(text):
        span = m.group(0)
        digits = span.replace(" ", "").replace("-", "")
        end = m.end()
        if (
            len(digits) > 16
            and m.group(1)
            and _MORE_DIGITS.match(text, end)
            and not is_card(digits)
        ):
            digits, end = digits[:16], m.start() + 19  # 4-4-4-4, then another number
        if is_card(digits):
            out.append(Match(CREDIT_CARD, m.start(), end, CONFIRMED))
    return out
