"""Smoke tests of the harness logic (no server, no wrk)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from bench.openloop import build_request, parse_response
from bench.pcsgen import (
    Tenant,
    check_accepted,
    default_tenants,
    generate,
    read_bodies,
    write_bodies,
)
from bench.procs import parse_stat, parse_status_kb
from bench.run import targets
from bench.stats import percentile, prom_value, summarize, verdict

from fractal_lba.contract import KeyRing, VerificationKey, decode_pcs, decode_signature


def test_generated_bodies_are_distinct_accepted_and_signed(tmp_path: Path) -> None:
    tenants = default_tenants(3)
    items = list(generate(tenants, 300, seed=9))
    ids = {decode_pcs(body).pcs_id for _, body in items}
    assert len(ids) == 300
    assert {t for t, _ in items} == {t.id for t in tenants}
    keys = {t.id: t.key for t in tenants}
    for tenant_id, body in items[:30]:
        check_accepted(body, tenant_id)
        pcs = decode_pcs(body)
        ring = KeyRing([VerificationKey.from_text("k", "hmac", keys[tenant_id])])
        ring.verify(pcs.signed_payload(), decode_signature(pcs.sig), 0.0)
    path = write_bodies(tmp_path / "b.txt", items)
    assert read_bodies(path) == items


def test_check_accepted_refuses_a_pcs_the_verifier_would_escalate() -> None:
    ((tenant_id, body),) = generate([Tenant("t", "k")], 1)
    tampered = body.replace(b'"regime":"sticky"', b'"regime":"non_sticky"')
    assert tampered != body
    with pytest.raises(AssertionError):
        check_accepted(tampered, tenant_id)


def test_percentiles_and_summary() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert math.isnan(percentile([], 50))
    s = summarize([3.0, 1.0, 2.0])
    assert (s["p50"], s["max"], s["count"]) == (2.0, 3.0, 3.0)


def test_prometheus_parsing_sums_workers_and_filters_labels() -> None:
    text = (
        "# HELP flk_ingest_total x\n"
        "flk_ingest_total 10.0\n"
        "flk_ingest_total 5.0\n"
        'flk_rejected_total{reason="a"} 2.0\n'
        'flk_rejected_total{reason="b"} 3.0\n'
        "flk_ingest_created 1.7e9\n"
    )
    assert prom_value(text, "flk_ingest_total") == 15.0
    assert prom_value(text, "flk_rejected_total", {"reason": "b"}) == 3.0
    assert prom_value(text, "flk_missing_total") == 0.0


def test_proc_parsing_handles_spaces_in_the_command_name() -> None:
    fields = " ".join(str(i) for i in range(3, 53))  # field 3 .. 52
    ppid, ticks = parse_stat(f"123 (my (odd) name) {fields}")
    assert ppid == 4 and ticks == 14 + 15
    assert parse_status_kb("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS") == 2048
    assert parse_status_kb("Name:\tx\n", "VmHWM") == 0


def test_http_response_parsing_waits_for_the_whole_body() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nIdempotent-Replayed: true\r\n\r\nhel"
    buf = bytearray(raw)
    assert parse_response(buf) is None
    buf += b"loHTTP/1.1"
    assert parse_response(buf) == (200, True, len(raw) + 2)
    req = build_request("h:1", "/p", "t", b"{}")
    assert req.startswith(b"POST /p HTTP/1.1\r\n") and req.endswith(b"\r\n\r\n{}")


def test_targets_report_missed_and_met() -> None:
    assert verdict(5.0, 3.0) == "met"
    assert verdict(0.3, 0.2, at_most=True) == "MISSED"
    assert verdict(math.nan, 1.0) == "n/a"
    sub = {"rps": 3500.0, "wal_fsyncs_per_req": 0.05, "audit_fsyncs_per_req": 0.3}
    results = {
        "scenarios": [
            {"scenario": {"name": "sqlite-first"}, "submit": sub, "null": {"rps": 10000.0}},
        ]
    }
    got = {t: v for t, _, v in targets(results)}
    assert got["first-seen sqlite 1 worker >= 3,000 req/s"] == "met"
    assert got["ratio to null >= 40% (1 worker)"] == "MISSED"
    assert got["audit fsyncs/request <= 0.2 at 64 connections"] == "MISSED"
    assert got["first-seen sqlite 2 workers >= 4,000 req/s"] == "n/a"


def test_store_size_prefill_writes_records_the_store_reads_and_purges(tmp_path: Path) -> None:
    import asyncio
    import sqlite3

    from bench.storesize import NAMESPACE, SQLITE_FILE, prefill_sqlite

    from fractal_lba.stores import SqliteStore

    prefill_sqlite(tmp_path, NAMESPACE, 400, 0.5)
    with sqlite3.connect(tmp_path / SQLITE_FILE) as conn:
        ids = [r[0] for r in conn.execute(f"SELECT pcs_id FROM {NAMESPACE}_dedup")]
    assert len(set(ids)) == 400

    async def check() -> tuple[int, int]:
        store = SqliteStore(tmp_path / SQLITE_FILE, namespace=NAMESPACE)
        await store.open()
        try:
            live = [o for o in [await store.get("default", i) for i in ids] if o is not None]
            assert all(o.status == 200 and o.body.startswith(b'{"accepted":true') for o in live)
            return len(live), await store.purge_expired()
        finally:
            await store.close()

    live, purged = asyncio.run(check())
    assert 190 <= live <= 210 and live + purged == 400
