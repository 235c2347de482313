"""Tenant configuration (SPEC section 6): ``TENANTS="id:alg:key,..."`` and a tenants file.

The file is TOML (``.toml``) or YAML (``.yaml``/``.yml``) holding a list ``tenants``; each
entry has ``id``, one or more ``keys`` (``id``, ``alg`` hmac|ed25519, ``key``, optional
``not_before``/``not_after`` RFC 3339 date-times for rotation overlap), optional
``token_rate``, ``burst``, ``daily_quota``, ``policy_version`` (semver), ``vrf``
(``public_key`` base64 of 32 bytes, ``mode`` enforce|report_only) and ``pii`` (``mode``
off|detect|block|redact, ``report_only``, ``types``, ``phone_regions``, ``min_confidence``,
``custom_patterns``: :func:`fractal_lba.privacy.policy.parse_policy`). Unknown fields are
errors, so a typo never silently loosens a limit.

Parsing is pure (documents in, :class:`~fractal_lba.tenancy.model.Tenant` out). Every problem
is one :class:`~fractal_lba.errors.ConfigError` line naming the source, the tenant and the
field; key material never appears in a message.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn

import yaml

from fractal_lba.adversarial.vrf import VrfError, VrfPublicKey
from fractal_lba.contract import KeyFormatError, KeyRing, VerificationKey
from fractal_lba.errors import ConfigError
from fractal_lba.policy import SEMVER, Policy
from fractal_lba.privacy.policy import PiiSettings, parse_policy
from fractal_lba.tenancy.model import Tenant, VrfSettings
from fractal_lba_client.contract import PCS_VERSIONS

TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Tenant ids become header values, metric labels and store keys: keep them plain."""
KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")

TENANT_FIELDS = frozenset(
    {
        "id",
        "keys",
        "token_rate",
        "burst",
        "daily_quota",
        "policy_version",
        "vrf",
        "pii",
        "min_pcs_version",
    }
)
KEY_FIELDS = frozenset({"id", "alg", "key", "not_before", "not_after"})
VRF_FIELDS = frozenset({"public_key", "mode"})
TOP_FIELDS = frozenset({"tenants"})


@dataclass(frozen=True, slots=True)
class TenantDefaults:
    """Values for fields a tenant leaves out (from TOKEN_RATE, DAILY_QUOTA, ...)."""

    token_rate: float = 0.0
    burst: float = 0.0
    daily_quota: int = 0
    accept_legacy_digest: bool = False
    pii_phone_regions: tuple[str, ...] = ("US",)
    vrf_mode: str = "enforce"
    """VRF_MODE: the mode of a tenant whose ``vrf`` table sets none."""
    min_pcs_version: str = "0.1"
    """MIN_PCS_VERSION: the oldest PCS version of a tenant that sets none."""


class _Where:
    """Builds the one-line error prefix: ``<source>: tenant 'x': <field>: <problem>``."""

    def __init__(self, source: str, tenant: str) -> None:
        self.source = source
        self.tenant = tenant

    def fail(self, field: str, problem: str) -> NoReturn:
        raise ConfigError(f"{self.source}: tenant {self.tenant}: {field}: {problem}")


def _name(value: object) -> str:
    """A short, safe rendering of a user-supplied field *name* (never a value)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_fields(w: _Where, prefix: str, obj: Mapping[Any, Any], known: frozenset[str]) -> None:
    for name in obj:
        if name not in known:
            w.fail(
                f"{prefix}{_name(name)}",
                f"unknown field (expected one of {', '.join(sorted(known))})",
            )


def _number(w: _Where, field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        w.fail(field, "must be a number")
    out = float(value)
    if not math.isfinite(out) or out < 0:
        w.fail(field, "must be a finite number >= 0")
    return out


def _integer(w: _Where, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        w.fail(field, "must be an integer")
    if value < 0:
        w.fail(field, "must be >= 0")
    return value


def _text(w: _Where, field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        w.fail(field, "must be a non-empty string")
    return value.strip()


def _choice(w: _Where, field: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        w.fail(field, f"must be one of {', '.join(allowed)}")
    return value


def parse_rfc3339(value: object) -> float:
    """Unix seconds of an RFC 3339 date-time with an explicit offset (``Z`` or ``+hh:mm``).

    TOML and YAML parsers hand over ``datetime`` objects; strings are parsed strictly. Naive
    times and bare dates are refused: a key's validity must not depend on the server's zone.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("needs a timezone offset (Z or +hh:mm)")
        return value.timestamp()
    if isinstance(value, date):
        raise ValueError("needs a time and a timezone, e.g. 2025-07-01T00:00:00Z")
    if not isinstance(value, str) or not _RFC3339.fullmatch(value.strip()):
        raise ValueError("must be an RFC 3339 date-time like 2025-07-01T00:00:00Z")
    return datetime.fromisoformat(value.strip().upper()).timestamp()


def _key(w: _Where, i: int, obj: object) -> VerificationKey:
    where = f"keys[{i}]"
    if not isinstance(obj, Mapping):
        w.fail(where, "must be a table/mapping with id, alg, key")
    _check_fields(w, f"{where}.", obj, KEY_FIELDS)
    for required in ("id", "alg", "key"):
        if required not in obj:
            w.fail(f"{where}.{required}", "is required")
    key_id = _text(w, f"{where}.id", obj["id"])
    if not KEY_ID.fullmatch(key_id):
        w.fail(f"{where}.id", "must match [A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
    alg = _choice(w, f"{where}.alg", obj["alg"], ("hmac", "ed25519"))
    if not isinstance(obj["key"], str) or not obj["key"].strip():
        w.fail(f"{where}.key", "must be a non-empty string")
    bounds: dict[str, float | None] = {"not_before": None, "not_after": None}
    for name in bounds:
        if name in obj:
            try:
                bounds[name] = parse_rfc3339(obj[name])
            except ValueError as exc:
                w.fail(f"{where}.{name}", str(exc))
    nb, na = bounds["not_before"], bounds["not_after"]
    if nb is not None and na is not None and na <= nb:
        w.fail(f"{where}.not_after", "must be later than not_before")
    try:
        return VerificationKey.from_text(
            key_id, alg, obj["key"].strip(), not_before=nb, not_after=na
        )
    except KeyFormatError as exc:
        w.fail(f"{where}.key", str(exc))


def _vrf(w: _Where, obj: object, default_mode: str) -> VrfSettings:
    if not isinstance(obj, Mapping):
        w.fail("vrf", "must be a table/mapping with public_key and mode")
    _check_fields(w, "vrf.", obj, VRF_FIELDS)
    if "public_key" not in obj:
        w.fail("vrf.public_key", "is required")
    text = obj["public_key"]
    if not isinstance(text, str):
        w.fail("vrf.public_key", "must be base64 of 32 bytes")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        w.fail("vrf.public_key", "is not valid base64")
    if len(raw) != 32:
        w.fail("vrf.public_key", f"must be 32 bytes (base64), got {len(raw)} bytes")
    try:
        VrfPublicKey.from_bytes(raw)
    except VrfError as exc:
        w.fail("vrf.public_key", str(exc))
    mode = _choice(w, "vrf.mode", obj.get("mode", default_mode), ("enforce", "report_only"))
    return VrfSettings(raw, mode)  # type: ignore[arg-type]


def _pii(w: _Where, obj: object, defaults: TenantDefaults) -> PiiSettings:
    return parse_policy(obj, w.fail, default_regions=defaults.pii_phone_regions)


def _limits(
    w: _Where, obj: Mapping[str, Any], defaults: TenantDefaults
) -> tuple[float, float, int]:
    rate = _number(w, "token_rate", obj["token_rate"]) if "token_rate" in obj else None
    burst = _number(w, "burst", obj["burst"]) if "burst" in obj else None
    quota = _integer(w, "daily_quota", obj["daily_quota"]) if "daily_quota" in obj else None
    eff_rate = defaults.token_rate if rate is None else rate
    eff_burst = (defaults.burst if rate is None else 0.0) if burst is None else burst
    if eff_rate > 0 and 0 < eff_burst < 1:
        w.fail("burst", "must be >= 1 (one request) when token_rate is set")
    if burst is not None and burst > 0 and eff_rate == 0:
        w.fail("burst", "needs a token_rate > 0")
    return eff_rate, eff_burst, defaults.daily_quota if quota is None else quota


def parse_tenant(
    obj: object, index: int, source: str, policy: Policy, defaults: TenantDefaults
) -> Tenant:
    """One entry of a tenants document -> :class:`Tenant` (raises ConfigError)."""
    w = _Where(source, f"#{index + 1}")
    if not isinstance(obj, Mapping):
        w.fail("tenant", "must be a table/mapping")
    if "id" not in obj:
        w.fail("id", "is required")
    tid = obj["id"]
    if not isinstance(tid, str) or not TENANT_ID.fullmatch(tid):
        w.fail("id", "must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    w = _Where(source, repr(tid))
    _check_fields(w, "", obj, TENANT_FIELDS)
    keys_obj = obj.get("keys")
    if not isinstance(keys_obj, list) or not keys_obj:
        w.fail("keys", "at least one key is required")
    keys = [_key(w, i, k) for i, k in enumerate(keys_obj)]
    seen: set[str] = set()
    for i, k in enumerate(keys):
        if k.key_id in seen:
            w.fail(f"keys[{i}].id", f"duplicate key id {k.key_id!r}")
        seen.add(k.key_id)
    rate, burst, quota = _limits(w, obj, defaults)
    pinned: str | None = None
    if "policy_version" in obj:
        pinned = _text(w, "policy_version", obj["policy_version"])
        if not SEMVER.fullmatch(pinned):
            w.fail("policy_version", "must be a semantic version like 1.2.3")
        if pinned != policy.version:
            w.fail("policy_version", f"{pinned} is not available (active: {policy.version})")
    return Tenant(
        id=tid,
        keyring=KeyRing(keys, accept_legacy_digest=defaults.accept_legacy_digest),
        policy=policy,
        token_rate=rate,
        burst=burst,
        daily_quota=quota,
        vrf=_vrf(w, obj["vrf"], defaults.vrf_mode) if "vrf" in obj else None,
        pii=_pii(w, obj["pii"], defaults) if "pii" in obj else None,
        policy_version=pinned,
        min_pcs_version=(
            _choice(w, "min_pcs_version", obj["min_pcs_version"], PCS_VERSIONS)
            if "min_pcs_version" in obj
            else defaults.min_pcs_version
        ),
    )


def parse_tenants_document(
    doc: object, source: str, policy: Policy, defaults: TenantDefaults
) -> list[Tenant]:
    """A parsed TOML/YAML document ``{"tenants": [...]}`` -> tenants, duplicates refused."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: must hold a 'tenants' list")
    for name in doc:
        if name not in TOP_FIELDS:
            raise ConfigError(f"{source}: unknown top-level field {_name(name)}")
    entries = doc.get("tenants")
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: must hold a 'tenants' list")
    tenants = [parse_tenant(e, i, source, policy, defaults) for i, e in enumerate(entries)]
    check_unique(tenants, source)
    return tenants


def parse_tenants_env(value: str, policy: Policy, defaults: TenantDefaults) -> list[Tenant]:
    """``TENANTS="id:alg:key,..."``: one key (id ``env``) per tenant, default limits."""
    out: list[Tenant] = []
    for i, item in enumerate(value.split(",")):
        where = f"TENANTS entry {i + 1}"
        parts = item.strip().split(":", 2)
        if len(parts) != 3 or parts[1] not in ("hmac", "ed25519"):
            raise ConfigError(f"{where} must look like id:hmac|ed25519:key")
        tid, alg, text = parts
        if not TENANT_ID.fullmatch(tid):
            raise ConfigError(f"{where}: tenant id must match [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}")
        try:
            key = VerificationKey.from_text("env", alg, text.strip())
        except KeyFormatError as exc:
            raise ConfigError(f"{where}: tenant {tid!r}: key: {exc}") from None
        out.append(
            Tenant(
                id=tid,
                keyring=KeyRing([key], accept_legacy_digest=defaults.accept_legacy_digest),
                policy=policy,
                token_rate=defaults.token_rate,
                burst=defaults.burst,
                daily_quota=defaults.daily_quota,
                min_pcs_version=defaults.min_pcs_version,
            )
        )
    check_unique(out, "TENANTS")
    return out


def check_unique(tenants: Iterable[Tenant], source: str) -> None:
    """Refuse a tenant id that appears twice (naming it)."""
    seen: set[str] = set()
    for t in tenants:
        if t.id in seen:
            raise ConfigError(f"{source}: tenant {t.id!r}: id: duplicate tenant id")
        seen.add(t.id)


def read_tenants_file(path: Path) -> object:
    """Read and parse the file by extension; syntax errors are one line without content."""
    source = f"TENANTS_FILE {path}"
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"{source}: must end in .toml, .yaml or .yml")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if suffix == ".toml":
        try:
            return tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{source}: not UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            # tomllib messages carry the position, never the offending text.
            raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    try:
        return yaml.safe_load(raw)
    except yaml.MarkedYAMLError as exc:
        # str(exc) quotes the offending line, which may hold a key: position only.
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: invalid YAML: {exc.problem or 'syntax error'}{at}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{source}: invalid YAML") from None


def load_tenants_file(path: Path, policy: Policy, defaults: TenantDefaults) -> list[Tenant]:
    """Read, parse and validate a tenants file (TOML or YAML by extension)."""
    return parse_tenants_document(read_tenants_file(path), f"TENANTS_FILE {path}", policy, defaults)
