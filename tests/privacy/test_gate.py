"""The step-4 verdict: modes, report-only, keyed shard-id tokens, safe paths and errors."""

from __future__ import annotations

import json
import re

import msgspec
import pytest

from fractal_lba.contract import PCS, decode_pcs
from fractal_lba.errors import ConfigError
from fractal_lba.privacy.gate import PiiGate
from fractal_lba.privacy.keys import KeyedHasher, load_or_create_key
from fractal_lba.privacy.policy import PiiSettings

KEY = b"k" * 32


def pcs(shard_id: str = "shard-1", meta: dict[str, str] | None = None, fallbacks=()) -> PCS:
    from fractal_lba.contract.canonical import compute_pcs_id

    root = "ab" * 32
    obj = {
        "pcs_id": compute_pcs_id(root, 1, shard_id), "schema": "fractal-lba-kakeya",
        "version": "0.2", "shard_id": shard_id, "epoch": 1, "seed": 1, "scales": [2, 4],
        "N_j": {"2": 1, "4": 2}, "coh_star": 0.5, "v_star": [1.0, 0.0, 0.0], "D_hat": 1.0,
        "r": 0.5, "regime": "mixed", "budget": 0.5, "merkle_root": root, "sig": "AAAA",
        "ft": {"fallbacks": list(fallbacks)},
    }  # fmt: skip
    if meta is not None:
        obj["meta"] = meta
    return decode_pcs(json.dumps(obj).encode())


def gate(mode: str = "detect", report_only: bool = False, tenant: str = "acme") -> PiiGate:
    g = PiiGate.build(tenant, PiiSettings(mode=mode, report_only=report_only), KeyedHasher(KEY))  # type: ignore[arg-type]
    assert g is not None
    return g


def test_off_builds_no_gate() -> None:
    assert PiiGate.build("t", PiiSettings(mode="off"), KeyedHasher(KEY)) is None


def test_clean_pcs_has_no_verdict() -> None:
    assert gate().check(pcs(meta={"source": "ingest-eu", "build": "v2.14.1"})) is None


@pytest.mark.parametrize("mode", ["detect", "block", "redact"])
def test_modes(mode: str) -> None:
    v = gate(mode).check(pcs(meta={"contact": "bob@corp.io"}))
    assert v is not None and v.action == mode and v.would_have is None
    assert v.scrub_wal == (mode != "detect")
    (f,) = v.findings
    assert (f.type, f.field, f.offset, f.length, f.part) == (
        "email",
        "meta.contact",
        0,
        11,
        "value",
    )
    assert json.loads(v.note()) == [["email", "meta.contact"]]


@pytest.mark.parametrize("mode", ["block", "redact"])
def test_report_only_acts_as_detect_and_says_what_would_have_happened(mode: str) -> None:
    v = gate(mode, report_only=True).check(pcs(meta={"contact": "bob@corp.io"}))
    assert v is not None and v.action == "detect" and v.would_have == mode and not v.scrub_wal


def test_pii_in_meta_key_and_fallbacks_never_in_paths() -> None:
    v = gate().check(pcs(meta={"bob@corp.io": "x"}, fallbacks=["peer 10.1.2.3"]))
    assert v is not None
    assert {(f.type, f.field, f.part) for f in v.findings} == {
        ("email", "meta.[REDACTED_EMAIL]", "key"), ("ip_address", "ft.fallbacks[0]", "value"),
    }  # fmt: skip
    assert "bob@corp.io" not in v.note() and "10.1.2.3" not in v.note()


def test_block_error_names_field_and_type_never_the_value() -> None:
    v = gate("block").check(pcs(meta={"card": "pay 4539 1488 0343 6467", "ssn": "536-90-4399"}))
    assert v is not None
    err = v.error()
    assert (err.code, err.field, err.pii_type) == ("pii_detected", "meta.card", "credit_card")
    assert "4539" not in str(err) and "536-90" not in str(err) and "1 more" in err.detail


def test_shard_id_keyed_token_groups_and_hides() -> None:
    shard = "bob@corp.io/01"
    a = gate("redact").check(pcs(shard))
    b = gate("redact").check(pcs(shard))
    other = gate("redact", tenant="globex").check(pcs(shard))
    assert a is not None and b is not None and other is not None
    assert re.fullmatch(r"\[REDACTED_EMAIL:[0-9a-f]{8}\]/01", a.shard_id)
    assert a.shard_id == b.shard_id  # lineage still groups one shard
    assert other.shard_id != a.shard_id  # no linkage across tenants
    assert "bob" not in a.shard_id
    assert KeyedHasher(b"x" * 32).token("acme", "email", "bob@corp.io") != a.shard_id[:-3]


def test_verdict_never_changes_the_pcs() -> None:
    p = pcs("user-bob@corp.io", meta={"contact": "bob@corp.io"})
    before = msgspec.json.encode(p)
    assert gate("redact").check(p) is not None
    assert (
        msgspec.json.encode(p) == before
        and p.signed_payload()
        == pcs("user-bob@corp.io", meta={"contact": "bob@corp.io"}).signed_payload()
    )


def test_key_file_created_private_and_reused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "keys" / "pii_hash.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and load_or_create_key(path) == key
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="must not be readable by others"):
        load_or_create_key(path)
