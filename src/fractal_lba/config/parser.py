"""Strict readers of single environment variables for :mod:`fractal_lba.config`.

Every error is a :class:`~fractal_lba.errors.ConfigError` naming the variable and never
echoing a secret value. The parser reads the mapping it is given; only the settings loader
hands it the process environment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn, TypeVar

from fractal_lba.adversarial.vrf import VrfError
from fractal_lba.adversarial.vrf_keys import parse_public_key
from fractal_lba.contract import KeyFormatError, Secret, VerificationKey
from fractal_lba.errors import ConfigError
from fractal_lba.privacy.policy import check_regions

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SIZE_SUFFIX = {
    "": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2, "G": 1024**3, "GB": 1024**3,
}  # fmt: skip
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_DURATION_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

T = TypeVar("T")


def parse_duration(text: str) -> float:
    """Seconds from ``7d``, ``12h``, ``30m``, ``45s`` or plain seconds; ValueError otherwise."""
    m = _DURATION.match(text.strip().lower())
    if m is None:
        raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * _DURATION_UNIT[m.group(2)]


class EnvParser:
    """Strict readers of single variables; every error names the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str) -> str | None:
        return self.raw(name)

    def secret(self, name: str) -> Secret | None:
        value = self.raw(name)
        return None if value is None else Secret(value.encode("utf-8"))

    def secret_or_file(self, name: str) -> Secret | None:
        """``NAME`` or ``NAME_FILE`` (a file holding it, e.g. a mounted secret); not both."""
        value = self.raw(name)
        file_name = f"{name}_FILE"
        path = self.raw(file_name)
        if value is not None and path is not None:
            raise ConfigError(f"set {name} or {file_name}, not both")
        if path is None:
            return None if value is None else Secret(value.encode("utf-8"))
        try:
            data = Path(path).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(f"{file_name}: cannot read ({exc.strerror})") from None
        if not data:
            raise ConfigError(f"{file_name}: the file is empty")
        return Secret(data)

    def phone_regions(self, name: str) -> tuple[str, ...]:
        """Comma list of region codes libphonenumber knows (``US,GB,DE``)."""
        value = self.raw(name)
        if value is None:
            return ("US",)

        def fail(_field: str, problem: str) -> NoReturn:
            raise ConfigError(f"{name}: {problem}")

        return check_regions(value, fail, name)

    def path(self, name: str) -> Path | None:
        value = self.raw(name)
        return None if value is None else Path(value)

    def namespace(self, name: str) -> str:
        """The stores' namespace rule (it prefixes table names and keys), default ``flk``."""
        value = self.raw(name)
        if value is None:
            return "flk"
        from fractal_lba.stores.base import check_namespace  # the one copy of the rule

        try:
            return check_namespace(value)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        low = value.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{name} must be a boolean (true/false/1/0/yes/no/on/off)")

    def integer(self, name: str, default: int, *, lo: int, hi: int) -> int:
        return self._convert(name, default, int, f"an integer in [{lo}, {hi}]", lo, hi)

    def optional_integer(self, name: str, *, lo: int, hi: int) -> int | None:
        if self.raw(name) is None:
            return None
        return self.integer(name, 0, lo=lo, hi=hi)

    def number(self, name: str, default: float, *, lo: float, hi: float = math.inf) -> float:
        bound = f"[{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"
        return self._convert(name, default, float, f"a number {bound}", lo, hi)

    def _convert(
        self, name: str, default: T, conv: Callable[[str], T], what: str, lo: float, hi: float
    ) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            out = conv(value)
        except ValueError:
            raise ConfigError(f"{name} must be {what}") from None
        if not (isinstance(out, int | float) and math.isfinite(out) and lo <= out <= hi):
            raise ConfigError(f"{name} must be {what}")
        return out

    def duration(self, name: str, default: float, *, positive: bool = False) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = math.nan
        if math.isnan(seconds) or (positive and seconds <= 0):
            what = "a positive duration" if positive else "a duration"
            raise ConfigError(f"{name} must be {what} like 7d, 12h, 30m or 3600")
        return seconds

    def size(self, name: str, default: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        upper = value.upper()
        digits = upper.rstrip("KMGB")
        suffix = upper[len(digits) :]
        if not digits.isdigit() or suffix not in _SIZE_SUFFIX:
            raise ConfigError(f"{name} must be a byte size like 1048576, 64K, 100MB")
        n = int(digits) * _SIZE_SUFFIX[suffix]
        if n < 4096:
            raise ConfigError(f"{name} must be at least 4096 bytes")
        return n

    def choice(
        self, name: str, allowed: tuple[str, ...], default: str, *, upper: bool = False
    ) -> str:
        value = self.raw(name)
        if value is None:
            return default
        norm = value.upper() if upper else value.lower()
        if norm not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}")
        return norm

    def hmac_keys(self) -> tuple[Secret, ...]:
        """PCS_HMAC_KEYS (comma list, rotation overlap) plus PCS_HMAC_KEY; each validated."""
        out: list[Secret] = []
        for name in ("PCS_HMAC_KEYS", "PCS_HMAC_KEY"):
            value = self.raw(name)
            if value is None:
                continue
            parts = value.split(",") if name == "PCS_HMAC_KEYS" else [value]
            for i, part in enumerate(parts):
                text = part.strip()
                try:
                    VerificationKey.from_text("check", "hmac", text)
                except KeyFormatError as exc:
                    where = f"{name} entry {i + 1}" if name == "PCS_HMAC_KEYS" else name
                    raise ConfigError(f"{where}: {exc}") from None
                secret = Secret(text.encode("utf-8"))
                if secret not in out:
                    out.append(secret)
        return tuple(out)

    def ed25519_keys(self) -> tuple[str, ...]:
        value = self.raw("PCS_ED25519_PUB_B64")
        if value is None:
            return ()
        out = tuple(k.strip() for k in value.split(",") if k.strip())
        for i, text in enumerate(out):
            try:
                VerificationKey.from_text("check", "ed25519", text)
            except KeyFormatError as exc:
                raise ConfigError(f"PCS_ED25519_PUB_B64 entry {i + 1}: {exc}") from None
        return out

    def vrf_public_key(self) -> bytes | None:
        """VRF_PUBLIC_KEY: hex or base64 of a valid 32-byte ECVRF public key."""
        value = self.raw("VRF_PUBLIC_KEY")
        if value is None:
            return None
        try:
            return parse_public_key(value)
        except VrfError as exc:
            raise ConfigError(f"VRF_PUBLIC_KEY: {exc}") from None

    def tenants(self) -> Secret | None:
        """Syntax check of ``TENANTS="id:alg:key,..."`` (SPEC section 6); keys not echoed.

        Held as a :class:`Secret`: it carries the tenants' HMAC keys."""
        value = self.raw("TENANTS")
        if value is None:
            return None
        for i, item in enumerate(value.split(",")):
            parts = item.strip().split(":", 2)
            if len(parts) != 3 or not parts[0] or parts[1] not in ("hmac", "ed25519"):
                raise ConfigError(f"TENANTS entry {i + 1} must look like id:hmac|ed25519:key")
            try:
                VerificationKey.from_text(parts[0], parts[1], parts[2])
            except KeyFormatError as exc:
                raise ConfigError(f"TENANTS entry {i + 1}: {exc}") from None
        return Secret(value.encode("utf-8"))
