"""Retention pruning (only sealed + anchored + old) and the lineage index."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from audit_helpers import make_entry, segment_paths
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.anchors import read_ledger
from fractal_lba.audit.errors import AuditError
from fractal_lba.audit.index import INDEX_NAME, audit_chains, lineage, lineage_all, reindex
from fractal_lba.audit.integrity import verify_log
from fractal_lba.audit.prune import prune
from fractal_lba.audit.worm import WormLog
from fractal_lba.cli import main
from testkit import FakeClock

DAY = 86400.0


@pytest.mark.anyio
async def test_prune_only_sealed_anchored_old(
    make_log: Callable[..., WormLog], clock: FakeClock, key: Ed25519PrivateKey
) -> None:
    log = make_log(seal_on_close=False)
    await log.start()
    for day in range(4):  # one sealed segment per day, then an open one
        await log.append(make_entry(day))
        await log.seal()
        clock.now += DAY
    await log.append(make_entry(99))
    await log.close()
    base = log.base_dir
    segs = [p.relative_to(base).as_posix() for p in segment_paths(base)]
    dry = prune(base, 2.5 * DAY, now=clock.now, dry_run=True)
    assert dry.segments == segs[:2] and all((base / s).exists() for s in segs)
    res = prune(base, 2.5 * DAY, now=clock.now)
    assert res.segments == segs[:2] and res.reason == "within retention"
    assert not (base / segs[0]).exists() and (base / segs[2]).exists()
    rec = read_ledger(base / "anchors.log").prunes[0][1]
    assert rec["segments"] == segs[:2] and len(rec["last_entry_hash"]) == 64
    rep = verify_log(base, key.public_key())
    assert rep.pruned_segments == 2 and rep.entries == 3
    # everything old enough now, but the open segment is never pruned
    assert prune(base, 0, now=clock.now + DAY).segments == segs[2:4]
    assert (base / segs[4]).exists()
    verify_log(base, key.public_key())


@pytest.mark.anyio
async def test_prune_keeps_unanchored(make_log: Callable[..., WormLog], clock: FakeClock) -> None:
    log = make_log()
    await log.start()
    await log.append(make_entry(1))
    await log.close()
    ledger = log.base_dir / "anchors.log"
    kept = [raw for raw in ledger.read_bytes().splitlines() if b'"anchored"' not in raw]
    ledger.write_bytes(b"\n".join(kept) + b"\n")
    res = prune(log.base_dir, 0, now=clock.now + DAY)
    assert res.segments == [] and res.reason == "sealed but not anchored yet"


@pytest.mark.anyio
async def test_cli_prune(make_log: Callable[..., WormLog]) -> None:
    log = make_log()
    await log.start()
    await log.append(make_entry(1))
    await log.close()
    args = ["worm", "prune", "--older-than", "90d", "--base", str(log.base_dir)]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0 and "would delete 1 segments" in dry.output
    assert len(segment_paths(log.base_dir)) == 1
    res = CliRunner().invoke(main, args)  # sealed at the fake clock in 2025: past 90 days
    assert res.exit_code == 0 and "deleted 1 segments" in res.output
    assert segment_paths(log.base_dir) == []
    bad = CliRunner().invoke(main, ["worm", "prune", "--older-than", "soon"])
    assert bad.exit_code == 2


@pytest.mark.anyio
async def test_lineage_returns_every_entry(make_log: Callable[..., WormLog]) -> None:
    pcs = hashlib.sha256(b"target").hexdigest()
    log = make_log(max_segment_bytes=2500)
    await log.start()
    for i in range(30):
        await log.append(make_entry(i))
        if i in (3, 17, 25):
            outcome = "duplicate" if i != 3 else "accepted"
            e = msgspec.structs.replace(
                make_entry(i, tenant="t2" if i == 25 else "t1", pcs_id=pcs),
                verify_outcome=outcome,
                policy_version=f"1.{i}.0",
            )
            await log.append(e)
    rows = lineage(log.base_dir, pcs)
    assert [r["policy_version"] for r in rows] == ["1.3.0", "1.17.0", "1.25.0"]
    assert [r["verify_outcome"] for r in rows] == ["accepted", "duplicate", "duplicate"]
    assert len({r["segment"] for r in rows}) > 1
    for r in rows:
        raw = (log.base_dir / r["segment"]).read_bytes()[r["offset"] :].split(b"\n")[0]
        assert json.loads(raw)["entry_hash"] == r["entry_hash"]
    assert [r["tenant_id"] for r in lineage(log.base_dir, pcs, "t2")] == ["t2"]
    assert lineage(log.base_dir, "nope") == []
    await log.close()
    (log.base_dir / INDEX_NAME).unlink()
    with pytest.raises(AuditError, match="reindex"):
        lineage(log.base_dir, pcs)
    assert reindex(log.base_dir) == 33
    assert len(lineage(log.base_dir, pcs)) == 3
    res = CliRunner().invoke(main, ["worm", "lineage", pcs, "--base", str(log.base_dir)])
    assert res.exit_code == 0 and len(res.output.splitlines()) == 3


@pytest.mark.anyio
async def test_index_caught_up_on_start(make_log: Callable[..., WormLog]) -> None:
    log = make_log(lineage_index=False, seal_on_close=False)
    await log.start()
    await log.append(make_entry(5))
    await log.close()
    log2 = make_log()
    await log2.start()
    assert log2.recovery is not None and log2.recovery.indexed == 1
    assert len(lineage(log2.base_dir, hashlib.sha256(b"5").hexdigest())) == 1
    await log2.close()


@pytest.mark.anyio
async def test_lineage_all_merges_the_chains_of_every_worker(
    tmp_path: Path, key: Ed25519PrivateKey, clock: FakeClock
) -> None:
    pcs = hashlib.sha256(b"target").hexdigest()
    base = tmp_path / "audit"
    chains = [base, tmp_path / "audit-1", tmp_path / "audit-2"]
    (tmp_path / "audit-x").mkdir()  # not a worker chain
    outcomes = ["accepted", "duplicate", "conflict"]
    for n, (chain, outcome) in enumerate(zip(chains, outcomes, strict=True)):
        log = WormLog(chain, signing_key=key, clock=clock, maintenance_interval=None)
        await log.start()
        clock.now += 1
        await log.append(msgspec.structs.replace(make_entry(n, pcs_id=pcs), verify_outcome=outcome))
        await log.close()
    assert audit_chains(base) == chains
    rows = lineage_all(base, pcs)
    assert [(r["chain"], r["verify_outcome"]) for r in rows] == [
        ("audit", "accepted"),
        ("audit-1", "duplicate"),
        ("audit-2", "conflict"),
    ]
    res = CliRunner().invoke(main, ["worm", "lineage", pcs, "--base", str(base)])
    assert res.exit_code == 0 and len(res.output.splitlines()) == 3


@pytest.mark.anyio
async def test_lineage_of_a_worker_still_creating_its_index_is_empty_not_an_error(
    tmp_path: Path, key: Ed25519PrivateKey, clock: FakeClock
) -> None:
    """A worker that is starting has created lineage.sqlite but not yet its tables: a lineage
    query across the chains (admin endpoint) answers from the others instead of failing."""
    pcs = hashlib.sha256(b"target").hexdigest()
    base = tmp_path / "audit"
    log = WormLog(base, signing_key=key, clock=clock, maintenance_interval=None)
    await log.start()
    await log.append(make_entry(0, pcs_id=pcs))
    await log.close()
    starting = tmp_path / "audit-1"
    starting.mkdir()
    sqlite3.connect(starting / INDEX_NAME).close()  # the file exists, the schema not yet
    assert lineage(starting, pcs) == []
    assert [r["chain"] for r in lineage_all(base, pcs)] == ["audit"]
