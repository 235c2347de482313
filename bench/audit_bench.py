"""Audit log benchmark: write N entries, then time lineage lookups and full verification.

Usage: python bench/audit_bench.py [--entries 1000000] [--dir /tmp/flk-audit-bench] [--keep]

Writes through the WormWriter batch path (the same code the group-commit thread runs, 1000
entries per write + fsync), so the write figure is the writer's own throughput, not asyncio's.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.entry import AuditEntry
from fractal_lba.audit.index import lineage
from fractal_lba.audit.integrity import verify_log
from fractal_lba.audit.writer import WormWriter


def entry(i: int) -> AuditEntry:
    return AuditEntry(
        timestamp="2025-01-01T12:00:00Z",
        pcs_id=hashlib.sha256(str(i % 900_000).encode()).hexdigest(),  # some repeats
        tenant_id=f"tenant-{i % 7}",
        merkle_root=hashlib.sha256(str(i).encode()).hexdigest(),
        D_hat=round(1.0 + (i % 1000) / 997, 9),
        coh_star=0.73,
        r=0.87,
        budget=0.42,
        regime="sticky",
        verify_outcome="accepted" if i % 10 else "escalated",
        reason=None if i % 10 else "regime_mismatch",
        status=200 if i % 10 else 202,
        verify_params_hash="cd" * 32,
        policy_version="1.4.2",
        region_id="eu-1",
        request_id=f"req-{i}",
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/flk-audit-bench"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    key = Ed25519PrivateKey.generate()

    w = WormWriter(args.dir, signing_key=key, origin="bench.example/audit")
    w.open()
    t0 = time.perf_counter()
    batch = 1000
    for start in range(0, args.entries, batch):
        w.commit([entry(i) for i in range(start, min(start + batch, args.entries))])
    w.close(seal=True)
    secs = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in args.dir.rglob("*.jsonl"))
    print(
        f"write:   {args.entries:,} entries, {w.stats.seals} segments, {size / 1e6:,.0f} MB, "
        f"{w.stats.fsyncs} fsyncs in {secs:.1f}s ({args.entries / secs:,.0f} entries/s, "
        "lineage index included)"
    )

    rng = random.Random(1)
    times = []
    found = 0
    for _ in range(200):
        pid = hashlib.sha256(str(rng.randrange(900_000)).encode()).hexdigest()
        t = time.perf_counter()
        found += len(lineage(args.dir, pid))
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(
        f"lineage: 200 lookups, {found} entries, median {statistics.median(times):.2f} ms, "
        f"p99 {times[197]:.2f} ms, max {times[-1]:.2f} ms"
    )

    for workers in (1, None):
        t = time.perf_counter()
        rep = verify_log(args.dir, key.public_key(), workers=workers)
        secs = time.perf_counter() - t
        label = "1 process" if workers == 1 else "parallel"
        print(
            f"verify ({label}): {rep.entries:,} entries, {rep.sealed_segments} sealed segments "
            f"in {secs:.2f}s -> {rep.entries / secs:,.0f} entries/s"
        )
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
