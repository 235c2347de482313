"""Email addresses: RFC 5321 shape, validated label by label, minus test/documentation domains.

Validation beyond the shape: local part <= 64 chars without leading, trailing or doubled dots;
address <= 254; every domain label 1-63 chars, no leading/trailing hyphen; a top-level label
that is alphabetic (2-63, any script) or an IDNA ``xn--`` label. Not email: RFC 2606/6761
reserved names (``example.com/.org/.net`` and subdomains, ``*.test``, ``*.example``,
``*.invalid``, ``*.localhost``), ``git@host:path`` SCP-style remotes, and ``name@1.2.3-x.rc``
package pins (every label but the last starts with a digit).
"""

from __future__ import annotations

import re

from fractal_lba.privacy.findings import EMAIL, Match

_LOCAL = r"[\w!#$%&'*+/=?^`{|}~-](?:[\w!#$%&'*+/=?^`{|}~.-]{0,62}[\w!#$%&'*+/=?^`{|}~-])?"
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_TLD = r"(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
EMAIL_RE = re.compile(
    rf"(?<![\w!#$%&'*+/=?^`{{|}}~.-])({_LOCAL})@((?:{_LABEL}\.)+{_TLD})(?![\w-]|\.[^\W_])",
    re.IGNORECASE,
)

RESERVED_DOMAINS = frozenset({"example.com", "example.org", "example.net"})
RESERVED_TLDS = frozenset({"test", "example", "invalid", "localhost"})

CONFIRMED = 0.95
"""Shape and every structural rule hold (there is no cheaper validator short of DNS)."""


def is_reserved_domain(domain: str) -> bool:
    """RFC 2606 / RFC 6761 names that never belong to a person."""
    d = domain.lower().rstrip(".")
    tld = d.rsplit(".", 1)[-1]
    if tld in RESERVED_TLDS:
        return True
    return any(d == r or d.endswith("." + r) for r in RESERVED_DOMAINS)


def find_emails(text: str) -> list[Match]:
    """Email addresses in ``text`` (empty when there is no ``@``)."""
    if "@" not in text:
        return []
    out: list[Match] = []
    for m in EMAIL_RE.finditer(text):
        local, domain = m.group(1), m.group(2)
        if ".." in local or len(m.group(0)) > 254:
            continue
        if is_reserved_domain(domain):
            continue
        labels = domain.split(".")
        if all(lbl[:1].isdigit() for lbl in labels[:-1]):
            continue  # pkg@1.2.3-beta.rc: a version pin, not a mailbox
        end = m.end()
        if text[end : end + 1] == ":" and re.match(r"[\w~/.]", text[end + 1 : end + 2]):
            continue  # git@github.com:org/repo.git
        out.append(Match(EMAIL, m.start(), end, CONFIRMED))
    return out
