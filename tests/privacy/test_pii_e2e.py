"""The PII gate end to end through a real ``flk serve`` process (SPEC sections 4 and 8).

One multi-tenant server serves one tenant per mode (detect, block, redact, and report-only
block / redact). Each tenant submits PCS carrying an email, a phone number, a card number,
an SSN and an IP address in ``meta`` (and one with an email in the signed ``shard_id``). The
tests check status and reason, stored and audited records, metrics, and that no detected
value appears in the server's log, audit entries, dedup store or error bodies, nor, after
``PII_WAL_RETENTION`` (2 s here), in any file under ``DATA_DIR`` for block and redact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import JSON, SUBMIT, ServerProcess, make_pcs, wait_until

ADMIN = "pii-admin-token"
RETENTION_S = 2

# One value per (tenant, type): a value found anywhere tells which request leaked it.
VALUES: dict[str, dict[str, str]] = {
    "t-detect": {
        "email": "dora.detect@corp-mail.io", "phone": "+44 20 7946 0101",
        "credit_card": "4539 1488 0343 6467", "ssn": "536-90-4301", "ip_address": "10.20.30.41",
    },
    "t-block": {
        "email": "bert.block@corp-mail.io", "phone": "+44 20 7946 0202",
        "credit_card": "5425 2334 3010 9903", "ssn": "536-90-4302", "ip_address": "10.20.30.42",
    },
    "t-redact": {
        "email": "rita.redact@corp-mail.io", "phone": "+44 20 7946 0303",
        "credit_card": "3759 876543 21004", "ssn": "536-90-4303", "ip_address": "10.20.30.43",
    },
    "t-ro-block": {
        "email": "rob.roblock@corp-mail.io", "phone": "+44 20 7946 0404",
        "credit_card": "6011 0009 9130 0124", "ssn": "536-90-4304", "ip_address": "10.20.30.44",
    },
    "t-ro-redact": {
        "email": "ron.roredact@corp-mail.io", "phone": "+44 20 7946 0505",
        "credit_card": "4485 2757 4230 8327", "ssn": "536-90-4305", "ip_address": "10.20.30.45",
    },
}  # fmt: skip
SHARD_EMAIL = {t: f"shard.{t}@corp-mail.io" for t in VALUES}
MODES = {
    "t-detect": ("detect", False), "t-block": ("block", False), "t-redact": ("redact", False),
    "t-ro-block": ("block", True), "t-ro-redact": ("redact", True),
}  # fmt: skip
ACTS = ("t-block", "t-redact")  # block/redact for real: the raw body must leave the WAL


def key_of(tenant: str) -> str:
    return f"key-of-{tenant}"


def tenants_toml() -> str:
    out = []
    for t, (mode, ro) in MODES.items():
        out.append(
            f'[[tenants]]\nid = "{t}"\n'
            f'keys = [{{ id = "k1", alg = "hmac", key = "{key_of(t)}" }}]\n'
            f'pii = {{ mode = "{mode}", report_only = {str(ro).lower()} }}\n'
        )
    return "\n".join(out)


@dataclass
class Sent:
    tenant: str
    pii_type: str
    pcs: dict[str, Any]
    status: int
    body: bytes
    headers: httpx.Headers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("pii-e2e")
    tenants = root / "tenants.toml"
    tenants.write_text(tenants_toml())
    srv = ServerProcess(
        root / "data",
        {
            "MULTI_TENANT": "true", "TENANTS_FILE": str(tenants), "ADMIN_TOKEN": ADMIN,
            "LOG_LEVEL": "DEBUG", "PII_WAL_RETENTION": f"{RETENTION_S}s",
            "WAL_SEGMENT_SIZE": "64K",
        },
    )  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def submit(srv: ServerProcess, tenant: str, pcs: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        srv.url + SUBMIT,
        content=json.dumps(pcs).encode(),
        headers={**JSON, "x-tenant-id": tenant},
        timeout=20,
    )


@pytest.fixture(scope="module")
def sent(server: ServerProcess) -> list[Sent]:
    """Every tenant submits one PCS per PII type in ``meta``, one with PII in ``shard_id``,
    a second PCS of that shard (lineage grouping), and a duplicate of the first."""
    out: list[Sent] = []
    for t, values in VALUES.items():
        for i, (kind, value) in enumerate(values.items()):
            pcs = make_pcs(
                key=key_of(t), version="0.2", shard_id=f"shard-{kind}", epoch=10 + i,
                meta={"source": "ingest-eu", "note": f"contact {value} today"},
            )  # fmt: skip
            r = submit(server, t, pcs)
            out.append(Sent(t, kind, pcs, r.status_code, r.content, r.headers))
        for epoch in (1, 2):
            pcs = make_pcs(key=key_of(t), version="0.2", shard_id=SHARD_EMAIL[t], epoch=epoch)
            r = submit(server, t, pcs)
            out.append(Sent(t, "shard_id", pcs, r.status_code, r.content, r.headers))
        first = next(s for s in out if s.tenant == t)
        r = submit(server, t, first.pcs)
        out.append(Sent(t, "duplicate", first.pcs, r.status_code, r.content, r.headers))
    return out


def audit_lines(srv: ServerProcess) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((srv.data_dir / "audit").rglob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line]
    return out


def audit_for(srv: ServerProcess, s: Sent) -> list[dict[str, Any]]:
    return [
        e for e in audit_lines(srv) if e["pcs_id"] == s.pcs["pcs_id"] and e["tenant_id"] == s.tenant
    ]


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def all_values(tenants: tuple[str, ...] | None = None) -> dict[str, str]:
    """``value -> tenant/type`` for the tenants given (all by default), shard emails included."""
    out = {}
    for t, values in VALUES.items():
        if tenants is None or t in tenants:
            out.update({v: f"{t}/{k}" for k, v in values.items()})
            out[SHARD_EMAIL[t]] = f"{t}/shard_id"
    return out


def needles(value: str) -> list[bytes]:
    """The value as text and as digits only (a card or SSN without its separators)."""
    out = [value.encode()]
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 9 and "@" not in value and "." not in value:
        out.append(digits.encode())
    return out


def files_containing(root: Path, values: dict[str, str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for value, what in values.items():
            if any(n in data for n in needles(value)):
                found.append(f"{what} in {path.relative_to(root)}")
    return found


# -- status, reason, stored body, audit, metrics per mode ------------------------------------------
def test_detect_and_report_only_proceed(server: ServerProcess, sent: list[Sent]) -> None:
    for s in sent:
        if s.tenant in ("t-detect", "t-ro-block", "t-ro-redact", "t-redact"):
            assert s.status == 200, (s.tenant, s.pii_type, s.body)


def test_block_refuses_naming_field_and_type_never_the_value(
    server: ServerProcess, sent: list[Sent]
) -> None:
    for s in (s for s in sent if s.tenant == "t-block"):
        assert s.status == 400, (s.pii_type, s.body)
        err = json.loads(s.body)
        assert err["error"] == "pii_detected"
        if s.pii_type == "shard_id":
            assert err["field"] == "shard_id" and "email" in err["detail"]
        elif s.pii_type != "duplicate":
            assert err["field"] == "meta.note" and s.pii_type in err["detail"], err
        for value in all_values():
            assert all(n not in s.body for n in needles(value))
        (entry,) = audit_for(server, s)[-1:]
        assert entry["verify_outcome"] == "rejected" and entry["reason"] == "pii_detected"
        assert entry["shard_id"] is None and entry["D_hat"] is None  # before authentication


def test_audit_notes_and_keyed_shard_tokens(server: ServerProcess, sent: list[Sent]) -> None:
    for s in sent:
        if s.pii_type == "duplicate":
            continue
        entries = audit_for(server, s)
        assert entries, (s.tenant, s.pii_type)
        entry = entries[0]
        want = "email" if s.pii_type == "shard_id" else s.pii_type
        path = "shard_id" if s.pii_type == "shard_id" else "meta.note"
        assert [want, path] in json.loads(entry["pii"]), entry
        if s.pii_type == "shard_id" and s.tenant != "t-block":
            assert re.fullmatch(r"\[REDACTED_EMAIL:[0-9a-f]{8}\]", entry["shard_id"])
        elif s.tenant != "t-block":
            assert entry["shard_id"] == s.pcs["shard_id"]
    for t in VALUES:
        if t == "t-block":
            continue
        tokens = {
            audit_for(server, s)[0]["shard_id"]
            for s in sent
            if s.tenant == t and s.pii_type == "shard_id"
        }
        assert len(tokens) == 1, tokens  # both epochs of the shard group under one token


def test_redaction_keeps_signature_and_replay_byte_identical(sent: list[Sent]) -> None:
    redacted = [s for s in sent if s.tenant == "t-redact"]
    first, dup = redacted[0], redacted[-1]
    assert first.status == 200 and json.loads(first.body)["accepted"] is True  # signature ok
    assert dup.pii_type == "duplicate" and dup.headers.get("idempotent-replayed") == "true"
    assert dup.status == first.status and dup.body == first.body


def test_metrics_count_by_type_and_mode(server: ServerProcess, sent: list[Sent]) -> None:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for t, (mode, ro) in MODES.items():
        acted = "detect" if ro else mode
        for kind in VALUES[t]:
            assert metric(text, "flk_pii_detections_total", type=kind, mode=acted) >= 1, (t, kind)
        if ro:
            assert metric(text, "flk_pii_would_have_total", type="email", mode=mode) >= 3
    assert metric(text, "flk_pii_would_have_total", mode="detect") == 0
    assert metric(text, "flk_rejected_total", reason="pii_detected") >= 7
    for value in all_values():
        assert value not in text


# -- nothing leaks -------------------------------------------------------------------------------
def test_no_value_in_logs_audit_or_dedup_store(server: ServerProcess, sent: list[Sent]) -> None:
    assert sent
    log = server.log_path.read_bytes()
    assert b'"msg":"submit"' in log  # the per-request DEBUG lines were written
    audit = b"".join(p.read_bytes() for p in (server.data_dir / "audit").rglob("*") if p.is_file())
    store = b"".join(
        p.read_bytes() for p in server.data_dir.glob("*") if p.is_file() and "dedup" in p.name
    )
    assert store  # the dedup store files are where we look
    for value, what in all_values().items():
        for n in needles(value):
            assert n not in log, f"{what} in the server log"
            assert n not in audit, f"{what} in the audit log"
            assert n not in store, f"{what} in the dedup store"


def test_block_and_redact_values_leave_data_dir_within_retention(
    server: ServerProcess, sent: list[Sent]
) -> None:
    assert sent
    acting = all_values(ACTS)
    # Before the retention the raw bodies are still in the inbox WAL (the one allowed place)...
    wait_until(
        lambda: not files_containing(server.data_dir, acting),
        timeout=RETENTION_S + 30,
        what=f"PII gone from DATA_DIR: {files_containing(server.data_dir, acting)}",
    )
    # ...and the detect / report-only tenants' bodies stay for WAL_RETENTION, as documented.
    kept = files_containing(server.data_dir, all_values(("t-detect",)))
    assert kept and all("wal" in k for k in kept), kept
    # The server still answers replays of the redacted requests from the dedup store.
    first = next(s for s in sent if s.tenant == "t-redact")
    again = submit(server, "t-redact", first.pcs)
    assert again.status_code == 200 and again.content == first.body
