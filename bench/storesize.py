"""Store-size scenario: first-seen latency with an empty dedup store vs one holding N records.

Usage: python -m bench.storesize [--records N] [--backend sqlite] [--rounds R] [--duration S]
(also ``python -m bench.run --store-size N``, which is what ``make bench`` passes on).

The store is prefilled directly (bulk SQL for sqlite and postgres, pipelined ``SET`` for
redis): ``N`` records shaped like the server's own (random ``pcs_id``, a ~330-byte response
body), a fraction ``--expired`` of them already expired, so the server's purge has work
while it serves. Rows go in in key order (10M random-order inserts took over an hour on the
shared 2-core machine), so the table's pages start full: the first random inserts of the
run split pages more often than a store grown by traffic would, a harsher start. Then the
normal wrk first-seen scenario (64 connections) runs against a server on that store and
against one on an empty store, interleaved ``--rounds`` times (A, B, A, B...) because the
machine is shared: p99, req/s and server CPU microseconds per request of each.

The prefilled sqlite file is kept in ``bench/out/prefill-sqlite-<N>-<expired>/`` and reused by
later runs (``--fresh`` rebuilds it); each round works on a copy of it (a reflink where the
filesystem can), so rounds start from the same store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.pcsgen import Tenant, generate, write_bodies
from bench.procs import ServerProc
from bench.run import (
    HERE,
    POSTGRES_DSN,
    REDIS_URL,
    SINGLE_KEY,
    SUBMIT,
    Ctx,
    Scenario,
    cleanup_store,
    ensure_wrk,
    free_port,
    log,
    measure,
    run_wrk,
    server_env,
)
from bench.stats import fmt, ratio

SQLITE_FILE = "dedup.sqlite3"
NAMESPACE = "benchsize"
TTL_S = 14 * 86400.0
_CHUNK = 50_000


def _body(pcs_id: str) -> bytes:
    """A response body of the size the server stores (~330 bytes)."""
    return (
        b'{"accepted":true,"escalated":false,"reason":null,"recomputed_D_hat":1.200000001,'
        b'"recomputed_budget":0.412345678,"regime":"mixed","policy_version":"1.0.0",'
        b'"anomaly_score":0.0123,"pcs_id":"' + pcs_id.encode() + b'","tenant_id":"default",'
        b'"params_hash":"' + secrets.token_hex(16).encode() + b'"}'
    )


def rows(n: int, expired: float, now: float, tenant: str = "default") -> Iterator[tuple[Any, ...]]:
    """``n`` records in ``pcs_id`` order (uniform random keys, so a B-tree fills by appending,
    fast), each with an ``expires_at`` drawn uniformly from ``[now - ttl * expired, now +
    ttl * (1 - expired)]``: about ``expired * n`` are expired, and expiry order is unrelated to
    key order, as in real traffic."""
    rng = random.Random(n)
    span = (1 << 256) // max(1, n)
    for i in range(n):
        pcs_id = f"{i * span + rng.randrange(span):064x}"
        expires = now - TTL_S * expired + rng.random() * TTL_S
        created = expires - TTL_S
        yield (
            tenant, pcs_id, 200, _body(pcs_id), secrets.token_hex(32),
            f"prefill-{i:09d}", created, expires,
        )  # fmt: skip


def prefill_sqlite(data_dir: Path, namespace: str, n: int, expired: float) -> None:
    """Create the store's table through the store itself, then bulk-insert ``n`` rows."""
    from fractal_lba.stores import SqliteStore

    path = data_dir / SQLITE_FILE
    store = SqliteStore(path, namespace=namespace)

    async def schema() -> None:
        await store.open()
        await store.close()

    asyncio.run(schema())
    conn = sqlite3.connect(path, isolation_level=None)
    # Bulk load: no journal, no fsync, the expiry index built once at the end (a sort)
    # instead of 10M random inserts into it; then back to the store's WAL mode.
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    conn.execute(f"DROP INDEX IF EXISTS {namespace}_dedup_expires")
    sql = f"INSERT INTO {namespace}_dedup VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    t0, it, done = time.monotonic(), rows(n, expired, time.time()), 0
    while done < n:
        chunk = [next(it) for _ in range(min(_CHUNK, n - done))]
        conn.execute("BEGIN")
        conn.executemany(sql, chunk)
        conn.execute("COMMIT")
        done += len(chunk)
        if done % 1_000_000 < _CHUNK:
            log(f"prefill sqlite: {done:,}/{n:,} rows ({time.monotonic() - t0:.0f} s)")
    conn.execute(f"CREATE INDEX {namespace}_dedup_expires ON {namespace}_dedup (expires_at)")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def prefill_postgres(namespace: str, n: int, expired: float) -> None:
    """Create the table through the store, then COPY ``n`` rows in."""
    import psycopg

    from fractal_lba.stores import PostgresStore

    store = PostgresStore(POSTGRES_DSN, namespace=namespace)

    async def schema() -> None:
        await store.open()
        await store.close()

    asyncio.run(schema())
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn, conn.cursor() as cur:
        cols = "tenant_id, pcs_id, status, body, payload_hash, request_id, created_at, expires_at"
        with cur.copy(f"COPY {namespace}_dedup ({cols}) FROM STDIN") as copy:
            for row in rows(n, expired, time.time()):
                copy.write_row(row)
        cur.execute(f"VACUUM ANALYZE {namespace}_dedup")


def prefill_redis(namespace: str, n: int, expired: float) -> None:
    """Pipelined ``SET ... PX`` in the store's own key and value format."""
    import msgspec
    import redis

    from fractal_lba.stores import RedisStore, StoredOutcome

    keyer = RedisStore(REDIS_URL, namespace=namespace)
    enc = msgspec.msgpack.Encoder()
    with redis.Redis.from_url(REDIS_URL) as r:
        pipe = r.pipeline(transaction=False)
        for i, row in enumerate(rows(n, expired, time.time())):
            tenant, pcs_id, status, body, ph, rid, created, expires = row
            value = (
                repr(expires).encode()
                + b"|"
                + enc.encode(StoredOutcome(status, body, ph, rid, created))
            )
            # Redis' own TTL as the store sets it (from the write time: the full TTL).
            pipe.set(keyer.key(tenant, pcs_id), value, px=int(TTL_S * 1000))
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()


def prefill(backend: str, data_dir: Path, namespace: str, n: int, expired: float) -> None:
    log(f"prefill {backend}: {n:,} records, {expired:.0%} of them expired")
    t0 = time.monotonic()
    if backend == "sqlite":
        prefill_sqlite(data_dir, namespace, n, expired)
    elif backend == "postgres":
        prefill_postgres(namespace, n, expired)
    elif backend == "redis":
        prefill_redis(namespace, n, expired)
    else:
        raise SystemExit(f"store-size scenario: backend {backend} cannot be prefilled")
    log(f"prefill done in {time.monotonic() - t0:.0f} s")


def _clone(src: Path, dst: Path) -> None:
    """Copy a prefilled data dir (reflink when the filesystem can, else a plain copy)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        subprocess.run(["cp", "--reflink=auto", str(f), str(dst / f.name)], check=True)


def sqlite_stats(data_dir: Path) -> dict[str, float]:
    out = {}
    for name in (SQLITE_FILE, SQLITE_FILE + "-wal"):
        p = data_dir / name
        out[name] = p.stat().st_size / 1e6 if p.exists() else 0.0
    return out


def run_one(
    backend: str, ctx: Ctx, data_dir: Path, namespace: str, bodies: Path, label: str
) -> dict[str, Any]:
    sc = Scenario(f"storesize-{label}", backend=backend, null=False)
    env = server_env(sc, ctx, namespace)
    srv = ServerProc(free_port(), 1, env, data_dir / "server.log", data_dir)
    srv.start(timeout=300)
    try:
        run_wrk(srv.url, ctx.warm_single, SUBMIT, 3)
        res = measure(srv, bodies, SUBMIT, ctx.duration)
        purged = srv.metrics()
    finally:
        srv.stop()
    res["label"] = label
    res["purged"] = _prom(purged, "flk_dedup_purged_total")
    if backend == "sqlite":
        res["files_mb"] = sqlite_stats(data_dir)
    return res


def _prom(text: str, name: str) -> float:
    from bench.stats import prom_value

    return prom_value(text, name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="first-seen latency: empty store vs N records")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--backend", default="sqlite", choices=("sqlite", "redis", "postgres"))
    ap.add_argument("--expired", type=float, default=0.5, help="fraction already expired")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--fresh", action="store_true", help="rebuild the cached prefill")
    ap.add_argument("--prefill-only", action="store_true", help="only build the sqlite prefill")
    ap.add_argument("--json", type=Path, default=HERE / "out" / "storesize.json")
    args = ap.parse_args(argv)
    if args.prefill_only:
        cached_prefill(args.records, args.expired, fresh=args.fresh)
        return 0
    result = run(args.backend, args.records, args.expired, args.rounds, args.duration,
                 fresh=args.fresh)  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    print(render(result))
    return 0


def cached_prefill(n: int, expired: float, *, fresh: bool = False) -> Path:
    """The data dir of a prefilled sqlite store in bench/out/ (built when missing)."""
    cache = HERE / "out" / f"prefill-sqlite-{n}-{expired:g}"
    if fresh or not (cache / SQLITE_FILE).exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        prefill("sqlite", cache, NAMESPACE, n, expired)
    return cache


def run(
    backend: str, n: int, expired: float, rounds: int, duration: float, *, fresh: bool = False
) -> dict[str, Any]:
    """Interleaved rounds of (empty store, N-record store); the figures of each run."""
    ensure_wrk()
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="storesize-", dir=out_dir))
    single = [Tenant("default", SINGLE_KEY)]
    per_run = int(8_000 * duration * 1.2)
    log(f"generating {per_run * rounds * 2:,} first-seen bodies")
    all_bodies = list(generate(single, per_run * rounds * 2, seed=11))
    ctx = Ctx(
        workdir=workdir, duration=duration, quick=False,
        single_bodies=workdir / "unused", multi_bodies=workdir / "unused",
        warm_single=write_bodies(workdir / "warm.txt", list(generate(single, 30_000, seed=12))),
        warm_multi=workdir / "unused", dup_bodies=workdir / "unused",
        tenants=single, gates={"STRICT_MODE": "true", "TOKEN_RATE": "1000000"},
    )  # fmt: skip
    namespace = NAMESPACE
    cache = cached_prefill(n, expired, fresh=fresh) if backend == "sqlite" else out_dir
    runs: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            for label in ("empty", f"{n}"):
                part = all_bodies[len(runs) * per_run : (len(runs) + 1) * per_run]
                bodies = write_bodies(workdir / f"bodies-{len(runs)}.txt", part)
                data = workdir / f"data-{len(runs)}"
                ns = f"bench{uuid.uuid4().hex[:10]}"
                if label == "empty":
                    data.mkdir()
                elif backend == "sqlite":
                    _clone(cache, data)
                    ns = namespace
                else:
                    data.mkdir()
                    prefill(backend, data, ns, n, expired)
                log(f"round {r + 1}/{rounds}: {label} store ({backend})")
                try:
                    runs.append(run_one(backend, ctx, data, ns, bodies, label))
                finally:
                    if backend != "sqlite":
                        cleanup_store(backend, ns)
                    shutil.rmtree(data, ignore_errors=True)
                log(f"  {fmt(runs[-1]['rps'])} req/s, p99 {fmt(runs[-1]['p99_us'] / 1000, 1)} ms,"
                    f" {fmt(runs[-1]['cpu_us_per_req'])} CPU us/req")  # fmt: skip
    finally:
        if not os.environ.get("FLK_BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
    return {"backend": backend, "records": n, "expired": expired, "duration": duration,
            "runs": runs}  # fmt: skip


def render(result: dict[str, Any]) -> str:
    n, runs = result["records"], result["runs"]
    lines = [
        f"## Store size: first-seen, {result['backend']}, empty vs {n:,} records "
        f"({result['expired']:.0%} expired), wrk 64 connections, {result['duration']:.0f} s",
        "",
        "| store | req/s | p50 ms | p99 ms | CPU us/req | purged during run | status mix |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        mix = " ".join(f"{k}:{v}" for k, v in sorted(r["status"].items()))
        lines.append(
            f"| {r['label']} | {fmt(r['rps'])} | {fmt(r['p50_us'] / 1000, 1)} | "
            f"{fmt(r['p99_us'] / 1000, 1)} | {fmt(r['cpu_us_per_req'])} | "
            f"{fmt(r.get('purged', 0))} | {mix} |"
        )
    empty = [r for r in runs if r["label"] == "empty"]
    full = [r for r in runs if r["label"] != "empty"]
    if empty and full:

        def med(xs: list[float]) -> float:
            s = sorted(xs)
            return s[len(s) // 2]

        p99 = ratio(med([r["p99_us"] for r in full]), med([r["p99_us"] for r in empty]))
        rps = ratio(med([r["rps"] for r in full]), med([r["rps"] for r in empty]))
        lines += [
            "",
            f"p99 {n:,} / empty: {fmt(p99, 2)}x (target <= 2x: {'met' if p99 <= 2 else 'MISSED'});"
            f" req/s {n:,} / empty: {fmt(rps, 2)} (target >= 0.9: "
            f"{'met' if rps >= 0.9 else 'MISSED'})",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
