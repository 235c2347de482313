"""IPv4 and IPv6 addresses, parsed by :mod:`ipaddress`, kept only when they can point at a
host or a person.

PII: RFC 1918 private and RFC 6598 shared (CGNAT) IPv4, IPv6 unique-local (``fc00::/7``),
and global unicast of both families (an IP address is personal data under the GDPR).
Not PII: unspecified, loopback, link-local, multicast, broadcast, reserved, documentation
(192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20), benchmarking
(198.18/15, 2001:2::/48) and other IETF special-purpose blocks. The networks are listed here
explicitly rather than taken from ``is_private``/``is_global``, whose membership changed
between Python patch releases.

IPv4-mapped IPv6 (``::ffff:10.0.0.1``) is judged by its IPv4 address. A dotted quad preceded
by a version word (``version 1.2.3.4``, ``v1.2.3.4``) or under a key that names a version is
a version, not an address.
"""

from __future__ import annotations

import ipaddress
import re

from fractal_lba.privacy.findings import IP_ADDRESS, Match

IPV4_RE = re.compile(r"[0-9](?<![\w.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![\w]|\.[0-9])")
IPV6_CANDIDATE_RE = re.compile(
    r"[0-9A-Fa-f:](?<![\w:.][0-9A-Fa-f:])[0-9A-Fa-f:.]*(?<=:)[0-9A-Fa-f:.]*(?![\w:])"
)
_VERSION_BEFORE = re.compile(r"(?:version|ver|release|build|rev|v)[\s:=#]*\Z", re.IGNORECASE)

_NOT_PII_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "192.0.0.0/24", "192.0.2.0/24",
        "192.88.99.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
        "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
_PRIVATE_V4 = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_CGNAT_V4 = ipaddress.IPv4Network("100.64.0.0/10")
_GLOBAL_V6 = ipaddress.IPv6Network("2000::/3")
_ULA_V6 = ipaddress.IPv6Network("fc00::/7")
_NOT_PII_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001:db8::/32", "3fff::/20", "2001:2::/48", "2001::/32", "2001:10::/28",
        "2001:20::/28", "2002::/16", "2620:4f:8000::/48",
    )
)  # fmt: skip
_MAPPED_V6 = ipaddress.IPv6Network("::ffff:0:0/96")

PRIVATE = 0.9
"""An internal host address (RFC 1918 / unique-local): the spec's core case."""
PUBLIC = 0.85


def _v4_confidence(addr: ipaddress.IPv4Address) -> float | None:
    if any(addr in n for n in _NOT_PII_V4) or addr == ipaddress.IPv4Address("255.255.255.255"):
        return None
    if any(addr in n for n in _PRIVATE_V4) or addr in _CGNAT_V4:
        return PRIVATE
    return PUBLIC


def ip_confidence(text: str) -> float | None:
    """Confidence that ``text`` (one address, no port) is a PII address; None if not."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv4Address):
        return _v4_confidence(addr)
    if addr in _MAPPED_V6 and addr.ipv4_mapped is not None:
        return _v4_confidence(addr.ipv4_mapped)
    if addr in _ULA_V6:
        return PRIVATE
    if addr in _GLOBAL_V6 and not any(addr in n for n in _NOT_PII_V6):
        return PUBLIC
    return None


VERSION_KEY_RE = re.compile(r"version|\bver\b|release|build|revision|firmware", re.IGNORECASE)
_VERSION_WORDS = ("ver", "release", "build", "revision", "firmware")


def is_version_key(key: str) -> bool:
    """Whether a field's key names a version (``version``, ``build``, ``fw_release``...)."""
    low = key.lower()
    return any(w in low for w in _VERSION_WORDS) and VERSION_KEY_RE.search(low) is not None


def find_ipv4(text: str, *, version_context: bool = False) -> list[Match]:
    """Dotted-quad IPv4 addresses that are PII; ``version_context``: the field's key names a
    version (``{"version": "4.2.1.0"}``), so a dotted quad there is one."""
    if version_context:
        return []
    out: list[Match] = []
    for m in IPV4_RE.finditer(text):
        start = m.start()
        if _VERSION_BEFORE.search(text, max(0, start - 12), start):
            continue
        conf = ip_confidence(m.group(0))
        if conf is not None:
            out.append(Match(IP_ADDRESS, start, m.end(), conf))
    return out


def find_ipv6(text: str) -> list[Match]:
    """IPv6 addresses (any RFC 4291 text form, zone id excluded) that are PII."""
    if text.count(":") < 2:
        return []
    out: list[Match] = []
    for m in IPV6_CANDIDATE_RE.finditer(text):
        cand = m.group(0)
        start, end = m.start(), m.end()
        if cand.endswith(".") or (cand.endswith(":") and not cand.endswith("::")):
            cand = cand[:-1]  # sentence punctuation / a port separator after the address
            end -= 1
        if cand.startswith(":") and not cand.startswith("::"):
            continue
        if "::" not in cand and cand.count(":") != 7 and not (cand.count(":") == 6 and "." in cand):
            continue  # 00:1a:2b:3c:4d:5e (MAC), 10:22:33 (time)
        conf = ip_confidence(cand)
        if conf is not None and ":" in cand:
            out.append(Match(IP_ADDRESS, start, end, conf))
    return out


def find_ips(text: str) -> list[Match]:
    """IPv4 and IPv6 PII addresses in ``text``."""
    out = find_ipv4(text) if "." in text else []
    if ":" in text:
        out.extend(find_ipv6(text))
    return out
