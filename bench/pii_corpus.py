"""Generate the labelled PII corpus (``tests/data/pii/corpus.jsonl``), deterministically.

    .venv/bin/python -m bench.pii_corpus            # rewrite the corpus (seed 14)
    .venv/bin/python -m bench.pii_corpus --check    # fail if the file differs from a rebuild

Every line is one field as a PCS would carry it::

    {"id": "email-0007", "text": "...", "key": "contact", "labels": [["email", 12, 31]]}

``key`` is the meta key the text sits under (context for ambiguous numbers; ``""`` for
``shard_id`` and ``ft.fallbacks``), ``labels`` the PII spans ``[type, start, end)`` (character
offsets); negatives have none. Positives: at least 300 per type, across locales and formats,
embedded in the kinds of strings agents put in ``meta``. Hard negatives (>= 1,500): strings
built to look like PII and not be PII (order numbers, UUIDs, git SHAs, ISBNs, versions,
timestamps, coordinates, MAC addresses, Luhn-failing and test card numbers, invalid and
advertised SSNs, documentation / loopback IPs, test-domain emails, cloud resource names...).
``tests/data/pii/hard_cases.txt`` adds hand-written cases (``key<TAB>text`` with the PII
marked ``[[type:value]]``).

Phone positives are numbers that libphonenumber's metadata calls valid (the generator picks
random digits and keeps the valid ones), so the corpus measures finding and delimiting
numbers in text, not the metadata itself.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import phonenumbers

from fractal_lba.privacy.card import TEST_CARDS, luhn_ok
from fractal_lba.privacy.ssn import ADVERTISED

SEED = 14
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "pii" / "corpus.jsonl"
HARD = REPO / "tests" / "data" / "pii" / "hard_cases.txt"

Label = list[object]
Row = dict[str, object]

FIRST = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
    "jörg", "zoë", "françois", "josé", "søren", "ana", "mehmet", "ayşe", "li", "wei", "yuki",
    "hiroshi", "priya", "arjun", "fatima", "omar", "kwame", "chioma", "olga", "dmitri", "nikos",
]  # fmt: skip
LAST = [
    "smith", "jones", "müller", "schmidt", "dubois", "martin", "garcía", "rossi", "bianchi",
    "nowak", "kowalski", "novák", "yılmaz", "tanaka", "suzuki", "kim", "park", "nguyen",
    "patel", "sharma", "okafor", "mensah", "ivanova", "petrov", "papadopoulos", "o'brien",
    "van-dijk", "lindqvist", "nielsen", "silva",
]  # fmt: skip
DOMAINS = [
    "gmail.com", "outlook.com", "yahoo.co.jp", "corp.acme.io", "mail.ru", "web.de",
    "orange.fr", "libero.it", "bigpond.com.au", "uol.com.br", "qq.com", "naver.com",
    "protonmail.ch", "fastmail.fm", "company.co.uk", "uni-heidelberg.de", "tecnológico.mx",
    "münchen.de", "xn--mnchen-3ya.de", "пример.рф", "hospital.org.za", "gov.in", "nhs.net",
    "eng.contoso.com", "startup.dev", "agency.travel", "bank.cz", "shop.ελ", "tech.xn--p1ai",
]  # fmt: skip
CYRILLIC = ["иван", "ольга", "дмитрий", "анна"]
TEMPLATES = [
    "{}", "contact: {}", "owner={}", "reported by {}", "<{}>", "mailto:{}", "({})",
    "sent to {}; retry", "{} (on call)", "notify {} and ops", "user {} logged in", "cc: {},",
    "escalate to {}.", "\"{}\"", "reviewer:{}", "from {} via api",
]  # fmt: skip
PHONE_REGIONS = [
    "US", "CA", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "SE", "NO", "DK",
    "PL", "CZ", "PT", "IE", "AU", "NZ", "JP", "KR", "CN", "IN", "SG", "HK", "BR", "MX",
    "AR", "ZA", "NG", "KE", "EG", "TR", "RU", "UA", "IL", "AE", "SA",
]  # fmt: skip


def _pick(rng: random.Random, seq: list[str]) -> str:
    return seq[rng.randrange(len(seq))]


def _embed(rng: random.Random, value: str, kind: str, templates: list[str] | None = None) -> Row:
    tpl = _pick(rng, templates or TEMPLATES)
    before, _, _ = tpl.partition("{}")
    text = tpl.format(value)
    start = len(before)
    return {"text": text, "labels": [[kind, start, start + len(value)]]}


# -- positives ---------------------------------------------------------------------------------
def emails(rng: random.Random, n: int) -> Iterator[Row]:
    seps = [".", "_", "-", "", "+"]
    for i in range(n):
        first = _pick(rng, CYRILLIC) if i % 17 == 0 else _pick(rng, FIRST)
        last = _pick(rng, LAST).replace("'", "")
        sep = _pick(rng, seps)
        local = {
            0: f"{first}{sep}{last}",
            1: f"{first[0]}{last}",
            2: f"{first}{rng.randrange(100)}",
            3: f"{first}+{_pick(rng, ['alerts', 'ci', 'test1', 'x'])}",
            4: f"{last}.{first}",
            5: f"{first}",
        }[i % 6]
        if sep == "+" and i % 6 == 0:
            local = f"{first}.{last}"
        domain = "пример.рф" if i % 17 == 0 else _pick(rng, DOMAINS)
        value = f"{local}@{domain}"
        if i % 11 == 0:
            value = value.upper() if value.isascii() else value
        row = _embed(rng, value, "email")
        row["key"] = _pick(rng, ["contact", "owner", "submitted_by", "user", "note", "alert"])
        yield row


def _valid_number(rng: random.Random, region: str) -> phonenumbers.PhoneNumber:
    kind = (
        phonenumbers.PhoneNumberType.MOBILE
        if rng.random() < 0.5
        else phonenumbers.PhoneNumberType.FIXED_LINE
    )
    ex = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    assert ex is not None
    digits = str(ex.national_number)
    for _ in range(200):
        keep = max(1, len(digits) // 3)
        cand = digits[:keep] + "".join(str(rng.randrange(10)) for _ in digits[keep:])
        num = phonenumbers.PhoneNumber(country_code=ex.country_code, national_number=int(cand))
        if ex.italian_leading_zero:
            num.italian_leading_zero = True
        nsn = str(num.national_number)
        fictional = num.country_code == 1 and nsn[3:6] == "555" and "0100" <= nsn[6:] <= "0199"
        if phonenumbers.is_valid_number(num) and not fictional:
            return num
    return ex


def _nanp_formats(nsn: str) -> list[str]:
    a, b, c = nsn[:3], nsn[3:6], nsn[6:]
    return [
        f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"{a} {b} {c}", f"1-{a}-{b}-{c}",
        f"+1 {a} {b} {c}", f"+1-{a}-{b}-{c}", f"+1 ({a}) {b}-{c}", f"({a}){b}-{c}",
    ]  # fmt: skip


def phones(rng: random.Random, n: int) -> Iterator[Row]:
    fmt = phonenumbers.PhoneNumberFormat
    for i in range(n):
        key = _pick(rng, ["phone", "contact", "oncall", "callback", "mobile", "note"])
        if i % 3 == 0:
            num = _valid_number(rng, _pick(rng, ["US", "CA"]))
            value = _pick(rng, _nanp_formats(str(num.national_number)))
        else:
            region = PHONE_REGIONS[i % len(PHONE_REGIONS)]
            num = _valid_number(rng, region)
            style = [fmt.INTERNATIONAL, fmt.E164, fmt.INTERNATIONAL, fmt.RFC3966][i % 4]
            value = phonenumbers.format_number(num, style)
            if style == fmt.RFC3966:
                value = value.split(";")[0]
                value = value[len("tel:") :] if i % 8 == 3 else value
        templates = ["{}", "call {}", "tel {}", "on-call: {}", "phone={}", "sms to {} failed",
                     "({})", "reach me at {}.", "fallback {}, then email"]  # fmt: skip
        row = _embed(rng, value, "phone", templates)
        if value.startswith("tel:"):
            labels = row["labels"]
            assert isinstance(labels, list)
            labels[0][1] += len("tel:")  # the number, not the URI scheme
        row["key"] = key
        yield row


def _ssn_digits(rng: random.Random) -> str:
    while True:
        area = rng.randrange(1, 900)
        if area == 666:
            continue
        d = f"{area:03d}{rng.randrange(1, 100):02d}{rng.randrange(1, 10000):04d}"
        if d not in ADVERTISED:
            return d


def ssns(rng: random.Random, n: int) -> Iterator[Row]:
    for i in range(n):
        d = _ssn_digits(rng)
        style = i % 4
        if style == 3:
            value = d
            key = _pick(rng, ["ssn", "SSN", "social_security", "employee_ssn", "tax_id"])
            templates = ["{}", "ssn {}", "{} (ssn)"]
        else:
            sep = "-" if style < 2 else " "
            value = f"{d[:3]}{sep}{d[3:5]}{sep}{d[5:]}"
            key = _pick(rng, ["ssn", "note", "applicant", "record", "comment"])
            templates = ["{}", "SSN: {}", "ssn={}", "applicant {} verified", "id {}; ok",
                         "({})", "social security no. {}"]  # fmt: skip
        row = _embed(rng, value, "ssn", templates)
        row["key"] = key
        yield row


CARD_PREFIXES: list[tuple[str, int]] = [
    ("4", 16), ("4", 16), ("4", 13), ("4", 19), ("51", 16), ("53", 16), ("55", 16),
    ("2221", 16), ("2720", 16), ("2500", 16), ("34", 15), ("37", 15), ("6011", 16),
    ("65", 16), ("644", 16), ("3528", 16), ("3589", 16), ("36", 14), ("300", 14), ("62", 16),
    ("62", 19), ("2200", 16), ("6759", 16), ("50", 16),
]  # fmt: skip


def luhn_complete(body: str) -> str:
    """``body`` + the check digit that makes it pass Luhn."""
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError("unreachable")


def _card(rng: random.Random, prefix: str, length: int) -> str:
    while True:
        body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
        pan = luhn_complete(body)
        if pan not in TEST_CARDS:
            return pan


def _group(pan: str, sep: str) -> str:
    if len(pan) == 15:
        return f"{pan[:4]}{sep}{pan[4:10]}{sep}{pan[10:]}"
    if len(pan) == 14 and sep:
        return f"{pan[:4]}{sep}{pan[4:10]}{sep}{pan[10:]}"
    return sep.join(pan[i : i + 4] for i in range(0, len(pan), 4))


def cards(rng: random.Random, n: int) -> Iterator[Row]:
    for i in range(n):
        prefix, length = CARD_PREFIXES[i % len(CARD_PREFIXES)]
        pan = _card(rng, prefix, length)
        value = _group(pan, ["", " ", "-"][i % 3])
        templates = ["{}", "card {}", "pan={}", "paid with {} exp 09/27", "cc: {}", "({})",
                     "refund to {}.", "card number {} declined"]  # fmt: skip
        row = _embed(rng, value, "credit_card", templates)
        row["key"] = _pick(rng, ["payment", "note", "card", "billing", "comment"])
        yield row


def _public_v4(rng: random.Random) -> str:
    while True:
        a = rng.randrange(1, 224)
        if a in (10, 100, 127, 169, 172, 192, 198, 203):
            continue
        return f"{a}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def ips(rng: random.Random, n: int) -> Iterator[Row]:
    for i in range(n):
        k = i % 8
        if k == 0:
            value = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        elif k == 1:
            value = f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        elif k == 2:
            value = f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        elif k == 3:
            value = _public_v4(rng)
        elif k == 4:
            value = f"100.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        elif k == 5:
            groups = [f"{rng.randrange(0x10000):x}" for _ in range(3)]
            value = f"fd{rng.randrange(256):02x}:{':'.join(groups)}::{rng.randrange(1, 0xFFFF):x}"
        elif k == 6:
            first = rng.choice(
                ["2a00", "2a01", "2600", "2607", "2406", "2c0f", "2804", "2001:4860"]
            )
            rest = [f"{rng.randrange(0x10000):x}" for _ in range(3)]
            value = f"{first}:{':'.join(rest)}::{rng.randrange(1, 0xFFFF):x}"
        else:
            hi = rng.choice(["2a02", "2620", "2400", "fd00"])
            value = ":".join([hi] + [f"{rng.randrange(0x10000):04x}" for _ in range(7)])
        templates = ["{}", "host {}", "peer={}", "from {} port 443", "client {}.", "({})",
                     "x-forwarded-for: {}", "ip {} blocked"]  # fmt: skip
        if ":" not in value:
            templates += ["{}:8443", "dst {}:53"]
        else:
            templates += ["[{}]:8443"]
        row = _embed(rng, value, "ip_address", templates)
        row["key"] = _pick(rng, ["client_ip", "host", "peer", "source", "note"])
        yield row


# -- hard negatives ----------------------------------------------------------------------------
def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def negatives(rng: random.Random) -> Iterator[tuple[str, str, str]]:
    """``(category, key, text)`` tuples, every one a non-PII string that looks like PII."""
    for _ in range(80):
        yield (
            "order_number",
            "order",
            rng.choice(["ORD", "PO", "INV", "SO"])
            + (f"-{rng.randrange(2019, 2027)}-{rng.randrange(10**6):06d}"),
        )
        yield "order_number", "ticket", f"#{rng.randrange(10**5, 10**7)}"
    for _ in range(80):
        yield "uuid", "request_id", str(uuid.UUID(int=rng.getrandbits(128), version=4))
    for _ in range(80):
        yield "git_sha", rng.choice(["commit", "revision"]), _hex(rng, rng.choice([7, 12, 40]))
    for _ in range(60):
        body = f"978{rng.randrange(10**9):09d}"
        check = (10 - sum((1 if j % 2 == 0 else 3) * int(c) for j, c in enumerate(body)) % 10) % 10
        isbn = body + str(check)
        yield (
            "isbn",
            "isbn",
            rng.choice(
                [isbn, f"{isbn[:3]}-{isbn[3]}-{isbn[4:7]}-{isbn[7:12]}-{isbn[12]}", f"ISBN {isbn}"]
            ),
        )
    for _ in range(80):
        a, b, c = rng.randrange(30), rng.randrange(60), rng.randrange(300)
        yield "version", rng.choice(["version", "agent", "build", "note"]), rng.choice(
            [f"{a}.{b}.{c}", f"v{a}.{b}.{c}", f"{a}.{b}.{c}-rc.{rng.randrange(9)}",
             f"version {a}.{b}.{c}.{rng.randrange(99)}", f"v{a}.{b}.{c}.{rng.randrange(99)}",
             f"{a}.{b}.{rng.randrange(1000, 30000)}.{rng.randrange(2000)}",
             f"agent/{a}.{b}.{c} (linux; x86_64)"]
        )  # fmt: skip
    for _ in range(80):
        y, mo, d = rng.randrange(2000, 2030), rng.randrange(1, 13), rng.randrange(1, 29)
        h, mi, s = rng.randrange(24), rng.randrange(60), rng.randrange(60)
        yield "timestamp", rng.choice(["ts", "sent", "window"]), rng.choice(
            [f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z",
             f"{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}.{rng.randrange(1000):03d}",
             f"{rng.randrange(1_500_000_000, 1_900_000_000)}",
             f"{rng.randrange(1_500_000_000_000, 1_900_000_000_000)}",
             f"{y}{mo:02d}{d:02d}{h:02d}{mi:02d}{s:02d}", f"{d:02d}/{mo:02d}/{y} {h:02d}:{mi:02d}",
             f"{h:02d}:{mi:02d}:{s:02d}"]
        )  # fmt: skip
    for _ in range(60):
        lat, lon = rng.uniform(-90, 90), rng.uniform(-180, 180)
        yield "coordinates", rng.choice(["location", "geo"]), rng.choice(
            [f"{lat:.4f},{lon:.4f}", f"{lat:.6f}, {lon:.6f}", f"lat={lat:.5f} lon={lon:.5f}",
             f"{abs(lat):.4f}°{'N' if lat > 0 else 'S'} {abs(lon):.4f}°{'E' if lon > 0 else 'W'}"]
        )  # fmt: skip
    for _ in range(70):
        octets = [f"{rng.randrange(256):02x}" for _ in range(6)]
        yield "mac_address", rng.choice(["mac", "nic"]), rng.choice(
            [":".join(octets), "-".join(octets).upper(), ".".join(
                ["".join(octets[j : j + 2]) for j in (0, 2, 4)])]
        )  # fmt: skip
    for i in range(120):
        prefix, length = CARD_PREFIXES[i % len(CARD_PREFIXES)]
        pan = _card(rng, prefix, length)
        bad = pan[:-1] + str((int(pan[-1]) + 1 + rng.randrange(9)) % 10)
        if luhn_ok(bad):
            continue
        yield (
            "luhn_failing",
            rng.choice(["payment", "ref"]),
            _group(bad, rng.choice(["", " ", "-"])),
        )
    for card in sorted(TEST_CARDS):
        yield (
            "test_card",
            rng.choice(["payment", "fixture"]),
            rng.choice([card, _group(card, " "), f"test card {card}"]),
        )
    for _ in range(60):
        yield "random_digits", "ref", "".join(str(rng.randrange(10)) for _ in range(16)) + "x"
        yield (
            "unknown_iin",
            "ref",
            luhn_complete(
                rng.choice(["1", "7", "9", "0"])
                + "".join(str(rng.randrange(10)) for _ in range(14))
            ),
        )
    for i in range(100):
        k = i % 6
        d = _ssn_digits(rng)
        bad = {
            0: "000" + d[3:],
            1: "666" + d[3:],
            2: f"9{rng.randrange(100):02d}" + d[3:],
            3: d[:3] + "00" + d[5:],
            4: d[:5] + "0000",
            5: rng.choice(sorted(ADVERTISED)),
        }[k]
        yield "invalid_ssn", rng.choice(["ssn", "note"]), f"{bad[:3]}-{bad[3:5]}-{bad[5:]}"
    for _ in range(60):
        yield "bare_nine_digits", rng.choice(["order", "account", "ref"]), _ssn_digits(rng)
        yield "mixed_separators", "note", (lambda d: f"{d[:3]}-{d[3:5]}{d[5:]}")(_ssn_digits(rng))
    for _ in range(60):
        net = rng.choice(["192.0.2", "198.51.100", "203.0.113"])
        yield "documentation_ip", rng.choice(["host", "peer"]), rng.choice(
            [f"{net}.{rng.randrange(256)}",
             f"2001:db8:{rng.randrange(0x10000):x}::{rng.randrange(1, 99)}",
             f"3fff:{rng.randrange(0x1000):x}::{rng.randrange(1, 99)}"]
        )  # fmt: skip
        yield "special_ip", "host", rng.choice(
            [f"127.0.{rng.randrange(256)}.{rng.randrange(1, 255)}", "::1", "0.0.0.0", "::",
             f"169.254.{rng.randrange(256)}.{rng.randrange(1, 255)}", "255.255.255.255",
             f"fe80::{rng.randrange(0x10000):x}:{rng.randrange(0x10000):x}%eth0",
             f"224.0.0.{rng.randrange(256)}", f"198.18.{rng.randrange(256)}.{rng.randrange(256)}",
             f"ff02::{rng.randrange(1, 16):x}"]
        )  # fmt: skip
        yield "invalid_ip", "host", rng.choice(
            [f"{rng.randrange(256, 999)}.1.2.3", f"10.0.0.{rng.randrange(256, 999)}",
             "010.001.002.003", f"1.3.6.1.4.1.{rng.randrange(99999)}", "2001:db8:::1",
             "12345::1", f"{_hex(rng, 4)}:{_hex(rng, 4)}"]
        )  # fmt: skip
    for _ in range(80):
        who = _pick(rng, FIRST)
        yield "test_domain_email", rng.choice(["contact", "owner"]), rng.choice(
            [f"{who}@example.com", f"{who}@example.org", f"{who}@mail.example.net",
             f"{who}@corp.test", f"{who}@host.example", f"{who}@nowhere.invalid",
             f"{who}@dev.localhost", f"{who}@sub.example.com"]
        )  # fmt: skip
    for _ in range(60):
        yield "not_an_email", rng.choice(["dep", "remote", "image", "note"]), rng.choice(
            [f"lodash@{rng.randrange(5)}.{rng.randrange(20)}.{rng.randrange(30)}",
             f"git@github.com:{_pick(rng, FIRST)}/repo.git",
             f"nginx@sha256:{_hex(rng, 64)}", f"@{_pick(rng, FIRST)}",
             f"{_pick(rng, FIRST)}@localhost", f"user@{rng.randrange(256)}.{rng.randrange(256)}",
             f"@types/node@{rng.randrange(14, 23)}.{rng.randrange(20)}.0",
             f"{_pick(rng, FIRST)} at corp dot com"]
        )  # fmt: skip
    for i in range(100):
        acct = f"{rng.randrange(10**11, 10**12)}"
        yield "cloud_resource", rng.choice(["resource", "arn", "target"]), rng.choice(
            [f"arn:aws:iam::{acct}:role/deploy-{rng.randrange(99)}",
             f"arn:aws:s3:::logs-{acct}/2024/{rng.randrange(1, 13):02d}/",
             f"arn:aws:ec2:us-east-1:{acct}:instance/i-0{_hex(rng, 16)}",
             f"projects/prod-{rng.randrange(10**5, 10**6)}/zones/europe-west1-b/instances/vm-{i}",
             f"/subscriptions/{uuid.UUID(int=rng.getrandbits(128))}/resourceGroups/rg-{i}",
             f"ami-0{_hex(rng, 16)}", f"sg-{_hex(rng, 17)}", f"vol-0{_hex(rng, 16)}",
             f"pod/web-{_hex(rng, 9)}-{_hex(rng, 5)}",
             f"gke-prod-pool-{_hex(rng, 8)}-{_hex(rng, 4)}",
             f"us-east-1:{uuid.UUID(int=rng.getrandbits(128))}"]
        )  # fmt: skip
    for _ in range(60):
        yield "fictional_phone", rng.choice(["phone", "note"]), rng.choice(
            [f"({rng.randrange(201, 990)}) 555-01{rng.randrange(100):02d}",
             f"{rng.randrange(201, 990)}-555-01{rng.randrange(100):02d}"]
        )  # fmt: skip
        yield (
            "bare_ten_digits",
            rng.choice(["order", "ref", "account"]),
            (f"{rng.randrange(2, 10)}{rng.randrange(10**8, 10**9)}{rng.randrange(10)}"),
        )
        yield "short_number", "count", rng.choice(
            [f"{rng.randrange(10**5)}", f"+{rng.randrange(10**4)}", f"{rng.randrange(100)}%",
             f"{rng.randrange(10**3)} ms", f"{rng.randrange(10**6):,}"]
        )  # fmt: skip
    for _ in range(60):
        yield "hash_or_token", rng.choice(["digest", "etag", "trace"]), rng.choice(
            [f"sha256:{_hex(rng, 64)}", _hex(rng, 32), f"00-{_hex(rng, 32)}-{_hex(rng, 16)}-01",
             f"W/\"{_hex(rng, 16)}\"", f"{rng.randrange(10**15, 10**16)}{_hex(rng, 8)}"]
        )  # fmt: skip
        yield "code_or_path", rng.choice(["symbol", "path"]), rng.choice(
            ["std::vector<int>", "Foo::Bar::baz", "a::b", "/var/log/app-2024-11-05.log",
             "C:\\\\Users\\\\build\\\\app.exe", "s3://bucket/2024/11/05/part-00001.parquet",
             "https://example.com/a/b?id=42", "10:22:33.123", "dead:beef", "fe:ed"]
        )  # fmt: skip


def build(seed: int = SEED) -> list[Row]:
    """The whole generated corpus (deterministic for a seed)."""
    rng = random.Random(seed)
    rows: list[Row] = []
    gens: list[tuple[str, Callable[[random.Random, int], Iterator[Row]], int]] = [
        ("email", emails, 340), ("phone", phones, 390), ("ssn", ssns, 320),
        ("credit_card", cards, 336), ("ip_address", ips, 336),
    ]  # fmt: skip
    for name, gen, n in gens:
        for i, row in enumerate(gen(rng, n)):
            rows.append({"id": f"{name}-{i:04d}", **row})
    for i, (category, key, text) in enumerate(negatives(rng)):
        rows.append({"id": f"neg-{category}-{i:04d}", "text": text, "key": key, "labels": []})
    return rows


def dumps(rows: list[Row]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


_MARK = re.compile(r"\[\[([a-z_]+):(.+?)\]\](?!\])")


def parse_marked(line: str) -> tuple[str, list[Label]]:
    """``"a [[email:x@y.io]] b"`` -> ``("a x@y.io b", [["email", 2, 9]])``."""
    out, labels, pos = [], [], 0
    for m in _MARK.finditer(line):
        out.append(line[pos : m.start()])
        start = sum(len(p) for p in out)
        out.append(m.group(2))
        labels.append([m.group(1), start, start + len(m.group(2))])
        pos = m.end()
    out.append(line[pos:])
    return "".join(out), labels


def hard_cases(path: Path = HARD) -> list[Row]:
    """The hand-written cases as corpus rows."""
    rows: list[Row] = []
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        key, _, marked = line.partition("\t")
        text, labels = parse_marked(marked)
        rows.append({"id": f"hard-{n:03d}", "key": key, "text": text, "labels": labels})
    return rows


def load(path: Path = OUT, *, hard: bool = True) -> list[Row]:
    """The corpus as committed (plus the hand-written hard cases)."""
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    return rows + hard_cases() if hard else rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="verify the committed corpus")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    text = dumps(build())
    if args.check:
        same = args.out.exists() and args.out.read_text("utf-8") == text
        print("corpus up to date" if same else f"{args.out} differs from a rebuild")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, "utf-8")
    rows = build()
    pos = sum(1 for r in rows if r["labels"])
    print(f"wrote {args.out}: {len(rows)} rows ({pos} positive, {len(rows) - pos} negative)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
