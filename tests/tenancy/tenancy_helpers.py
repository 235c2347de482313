"""Helpers of the tenancy tests: tenants files, signing per tenant (the clock: ``testkit``)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from server_helpers import make_pcs

from fractal_lba.contract import make_signer, sign_record
from fractal_lba.contract.keys import generate_key
from testkit import FakeClock as FakeClock


def hmac_key() -> str:
    """A fresh ``base64:`` HMAC key."""
    return generate_key("hmac").secret


def ed25519_pair() -> tuple[str, str]:
    """(private seed b64, public b64)."""
    k = generate_key("ed25519")
    assert k.public is not None
    return k.secret, k.public


def pcs_body(key: str, *, alg: str = "hmac", **kw: Any) -> bytes:
    """A valid PCS signed with ``key`` (HMAC key text, or an Ed25519 seed with alg)."""
    if alg == "hmac":
        return json.dumps(make_pcs(key=key, **kw)).encode()
    pcs = make_pcs(key=None, **kw)
    pcs["sig"] = sign_record(pcs, make_signer("ed25519", key))
    return json.dumps(pcs).encode()


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


def write_toml(path: Path, tenants: list[dict[str, Any]]) -> Path:
    """Write ``tenants`` as a TOML tenants file (array of tables)."""
    lines: list[str] = []
    for t in tenants:
        lines.append("[[tenants]]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in t.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def b64_32() -> str:
    return base64.b64encode(bytes(range(32))).decode()


def vrf_public_b64() -> str:
    """Base64 of a fresh, valid ECVRF public key (the tenants file's ``vrf.public_key``)."""
    from fractal_lba.adversarial import vrf

    return base64.b64encode(vrf.keygen()[1]).decode()
