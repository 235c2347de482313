"""Tenant configuration: TENANTS, tenants files (TOML/YAML), one-line errors, no key leaks."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from server_helpers import FLK, free_port
from tenancy_helpers import b64_32, ed25519_pair, vrf_public_b64, write_toml

from fractal_lba.config import Settings
from fractal_lba.errors import ConfigError
from fractal_lba.policy import default_policy
from fractal_lba.tenancy import MultiTenantResolver, build_resolver
from fractal_lba.tenancy.factory import load_tenants
from fractal_lba.tenancy.tenants_file import (
    TenantDefaults,
    parse_rfc3339,
    parse_tenants_document,
)

POLICY = default_policy()
SECRET = "base64:" + "c2VjcmV0LWtleS1tYXRlcmlhbC0wMTIzNDU2Nzg5YWI="  # 32 bytes
SHORT_B64 = "c2VjcmV0LWtleS1tYXRlcmlhbA=="  # 19 bytes


def tenant(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "acme", "keys": [{"id": "k1", "alg": "hmac", "key": SECRET}]}
    base.update(over)
    return base


def parse(*tenants: dict[str, Any]) -> list[Any]:
    return parse_tenants_document({"tenants": list(tenants)}, "TENANTS_FILE t.toml", POLICY,
                                  TenantDefaults(token_rate=5.0, daily_quota=100))  # fmt: skip


def test_full_toml_file_parses(tmp_path: Path) -> None:
    _seed, pub = ed25519_pair()
    text = f"""
[[tenants]]
id = "acme"
token_rate = 50.0
burst = 100
daily_quota = 1_000_000
policy_version = "1.0.0"

[[tenants.keys]]
id = "acme-2026-01"
alg = "hmac"
key = "{SECRET}"
not_after = 2026-07-01T00:00:00Z

[[tenants.keys]]
id = "acme-2026-06"
alg = "ed25519"
key = "{pub}"
not_before = "2026-06-01T00:00:00+02:00"

[[tenants]]
id = "globex"
keys = [{{ id = "g1", alg = "hmac", key = "globex-secret" }}]
vrf = {{ public_key = "{vrf_public_b64()}", mode = "report_only" }}
pii = {{ mode = "redact", report_only = true }}
"""
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    settings = Settings.from_env(
        {"MULTI_TENANT": "true", "TENANTS_FILE": str(path), "TOKEN_RATE": "7", "DATA_DIR": "x"}
    )
    from fractal_lba.tenancy.tenants_file import load_tenants_file

    acme, globex = load_tenants_file(path, POLICY, TenantDefaults(token_rate=7.0))
    assert (acme.token_rate, acme.burst, acme.daily_quota) == (50.0, 100.0, 1_000_000)
    assert acme.policy_version == "1.0.0" and acme.keyring is not None
    k1, k2 = acme.keyring.keys
    assert k1.not_after == datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    assert k2.not_before == datetime(2026, 5, 31, 22, tzinfo=UTC).timestamp()
    assert (globex.token_rate, globex.bucket_size, globex.daily_quota) == (7.0, 7.0, 0)
    assert globex.vrf is not None and globex.vrf.mode == "report_only"
    assert globex.pii is not None and globex.pii.mode == "redact" and globex.pii.report_only
    assert SECRET not in repr(acme) and "globex-secret" not in repr(globex)
    # The whole configuration loads (the PII gate is enforced by this version).
    assert [t.id for t in load_tenants(settings, POLICY)] == ["acme", "globex"]


def test_yaml_file_and_tenants_env_together(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(
        "tenants:\n"
        "  - id: acme\n"
        "    daily_quota: 10\n"
        "    keys:\n"
        f"      - {{id: k1, alg: hmac, key: '{SECRET}', not_after: 2026-07-01T00:00:00Z}}\n"
    )
    settings = Settings.from_env(
        {"MULTI_TENANT": "true", "TENANTS_FILE": str(path), "TENANTS": "beta:hmac:beta-key"}
    )
    resolver, _ = build_resolver(settings, POLICY)
    assert isinstance(resolver, MultiTenantResolver)
    assert sorted(t.id for t in resolver.tenants()) == ["acme", "beta"]
    acme = resolver.resolve("acme")
    assert acme.daily_quota == 10 and acme.keyring is not None
    assert acme.keyring.keys[0].not_after == datetime(2026, 7, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("tenants", "expected"),
    [
        ([tenant(), tenant()], "tenant 'acme': id: duplicate tenant id"),
        ([tenant(id="bad id")], "tenant #1: id: must match"),
        ([tenant(keys=[{"id": "k1", "alg": "hmac", "key": "base64:!!notb64" + SECRET}])],
         "tenant 'acme': keys[0].key: HMAC key is not valid base64"),
        ([tenant(keys=[{"id": "k1", "alg": "ed25519", "key": SHORT_B64}])],
         "tenant 'acme': keys[0].key: Ed25519 public key must be 32 bytes"),
        ([tenant(keys=[{"id": "k1", "alg": "rsa", "key": SECRET}])],
         "tenant 'acme': keys[0].alg: must be one of hmac, ed25519"),
        ([tenant(keys=[])], "tenant 'acme': keys: at least one key is required"),
        ([tenant(keys=[{"id": "k1", "alg": "hmac", "key": SECRET},
                       {"id": "k1", "alg": "hmac", "key": "other"}])],
         "tenant 'acme': keys[1].id: duplicate key id"),
        ([tenant(token_rate=-1)], "tenant 'acme': token_rate: must be a finite number >= 0"),
        ([tenant(token_rate=True)], "tenant 'acme': token_rate: must be a number"),
        ([tenant(burst=0.5)], "tenant 'acme': burst: must be >= 1"),
        ([tenant(daily_quota=1.5)], "tenant 'acme': daily_quota: must be an integer"),
        ([tenant(daily_quota=-3)], "tenant 'acme': daily_quota: must be >= 0"),
        ([tenant(rate_limit=5)], "tenant 'acme': 'rate_limit': unknown field"),
        ([tenant(keys=[{"id": "k1", "alg": "hmac", "key": SECRET, "expires": "x"}])],
         "tenant 'acme': keys[0].'expires': unknown field"),
        ([tenant(keys=[{"id": "k1", "alg": "hmac", "key": SECRET, "not_after": "2026-13-01"}])],
         "tenant 'acme': keys[0].not_after: must be an RFC 3339 date-time"),
        ([tenant(keys=[{"id": "k1", "alg": "hmac", "key": SECRET,
                        "not_after": datetime(2026, 7, 1)}])],
         "tenant 'acme': keys[0].not_after: needs a timezone offset"),
        ([tenant(keys=[{"id": "k1", "alg": "hmac", "key": SECRET,
                        "not_before": "2026-07-01T00:00:00Z",
                        "not_after": "2026-06-01T00:00:00Z"}])],
         "tenant 'acme': keys[0].not_after: must be later than not_before"),
        ([tenant(vrf={"public_key": SHORT_B64, "mode": "enforce"})],
         "tenant 'acme': vrf.public_key: must be 32 bytes"),
        ([tenant(vrf={"public_key": b64_32()})],
         "tenant 'acme': vrf.public_key: public key is not a canonical point"),
        ([tenant(vrf={"public_key": vrf_public_b64(), "mode": "sometimes"})],
         "tenant 'acme': vrf.mode: must be one of enforce, report_only"),
        ([tenant(pii={"mode": "shred"})],
         "tenant 'acme': pii.mode: must be one of off, detect, block, redact"),
        ([tenant(pii={"mode": "block", "report_only": "yes"})],
         "tenant 'acme': pii.report_only: must be true or false"),
        ([tenant(policy_version="v1")], "tenant 'acme': policy_version: must be a semantic"),
        ([tenant(policy_version="2.0.0")], "tenant 'acme': policy_version: 2.0.0 is not available"),
    ],
)  # fmt: skip
def test_bad_tenant_config_is_one_line_naming_tenant_and_field(
    tenants: list[dict[str, Any]], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(*tenants)
    msg = str(info.value)
    assert expected in msg
    assert msg.startswith("TENANTS_FILE t.toml: ") and "\n" not in msg
    assert SECRET[7:] not in msg and SHORT_B64 not in msg and "other" not in msg


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("acme:hmac", "TENANTS entry 1 must look like"),
        ("acme:hmac:k1,acme:hmac:k2", "TENANTS: tenant 'acme': id: duplicate tenant id"),
        ("a b:hmac:k1", "TENANTS entry 1: tenant id must match"),
        ("acme:ed25519:c2hvcnQ=", "TENANTS entry 1"),
    ],
)
def test_bad_tenants_env(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_resolver(Settings.from_env({"MULTI_TENANT": "true", "TENANTS": value}), POLICY)
    assert expected in str(info.value) and "k2" not in str(info.value)


def test_multi_tenant_switches_are_consistent(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MULTI_TENANT=true needs TENANTS or TENANTS_FILE"):
        Settings.from_env({"MULTI_TENANT": "true"})
    with pytest.raises(ConfigError, match="TENANTS is only used with MULTI_TENANT=true"):
        Settings.from_env({"TENANTS": "acme:hmac:key"})
    path = write_toml(tmp_path / "t.toml", [tenant()])
    with pytest.raises(ConfigError, match="also defined in TENANTS"):
        build_resolver(
            Settings.from_env(
                {"MULTI_TENANT": "true", "TENANTS_FILE": str(path), "TENANTS": "acme:hmac:x"}
            ),
            POLICY,
        )


def test_syntax_errors_never_quote_the_file(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "t.yaml"
    bad_yaml.write_text(f"tenants:\n  - id: acme\n    keys: [{{key: '{SECRET}'\n")
    bad_toml = tmp_path / "t.toml"
    bad_toml.write_text(f'[[tenants]]\nid = "acme"\nkey = "{SECRET}\n')
    for path, what in ((bad_yaml, "invalid YAML"), (bad_toml, "invalid TOML")):
        env = {"MULTI_TENANT": "true", "TENANTS_FILE": str(path)}
        with pytest.raises(ConfigError) as info:
            build_resolver(Settings.from_env(env), POLICY)
        assert what in str(info.value) and SECRET[7:] not in str(info.value)
    with pytest.raises(ConfigError, match=r"must end in \.toml, \.yaml or \.yml"):
        build_resolver(Settings.from_env({"MULTI_TENANT": "true", "TENANTS_FILE": "t.json"}),
                       POLICY)  # fmt: skip
    with pytest.raises(ConfigError, match="cannot read"):
        build_resolver(Settings.from_env({"MULTI_TENANT": "true", "TENANTS_FILE": "nope.toml"}),
                       POLICY)  # fmt: skip


def test_rfc3339() -> None:
    assert parse_rfc3339("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_rfc3339("2026-01-01t01:00:00.5+01:00") == parse_rfc3339("2026-01-01T00:00:00.5Z")
    for bad in ("2026-01-01", "2026-01-01T00:00:00", "yesterday", 1700000000):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


BAD_FILES: list[tuple[str, list[dict[str, Any]], str]] = [
    ("duplicate-id", [tenant(), tenant()], "tenant 'acme': id: duplicate tenant id"),
    ("bad-key", [tenant(keys=[{"id": "k1", "alg": "hmac", "key": "base64:%%" + SECRET[7:]}])],
     "tenant 'acme': keys[0].key:"),
    ("negative-rate", [tenant(token_rate=-5.0)], "tenant 'acme': token_rate:"),
    ("unknown-field", [tenant(colour="blue")], "tenant 'acme': 'colour': unknown field"),
    ("bad-date", [tenant(keys=[{"id": "k1", "alg": "hmac", "key": SECRET,
                                "not_after": "2026-02-30T00:00:00Z"}])],
     "tenant 'acme': keys[0].not_after:"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "tenants", "expected"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_flk_serve_refuses_bad_tenants_file_with_one_line(
    tmp_path: Path, name: str, tenants: list[dict[str, Any]], expected: str
) -> None:
    path = write_toml(tmp_path / f"{name}.toml", tenants)
    env = {
        "PATH": "/usr/bin:/bin",
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": str(free_port()),
        "MULTI_TENANT": "true",
        "TENANTS_FILE": str(path),
    }
    proc = subprocess.run([str(FLK), "serve"], env=env, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert expected in lines[0] and lines[0].startswith("error: TENANTS_FILE")
    assert "Traceback" not in out and SECRET[7:] not in out and "%%" not in out
