"""Noisy neighbour: does a tenant flooding far past its rate hurt a quiet tenant's latency?

Starts one real ``flk serve`` in multi-tenant mode (SQLite dedup store, a tenants file with
``quiet``: 1000 req/s allowed, and ``noisy``: 100 req/s allowed), then measures the quiet
tenant at its normal open-loop rate twice: alone, and while the noisy tenant is driven at
``--noisy-rate`` (20x its limit by default) from a separate driver process (so the two
drivers do not share an event loop). Latency is from the scheduled send time (no
coordinated omission). Alone and flood phases alternate for ``--rounds`` rounds; prints
each round, the median p95 of each phase and their ratio (target: within 2x), the quiet
tenant's success rate and the noisy tenant's 429 share. Exit status 1 when over target.

Usage: python -m bench.noisy_neighbour [--quiet-rate 200] [--noisy-rate 2000] [--duration 10]
       [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.openloop import build_request, drive
from bench.pcsgen import Tenant, generate, write_bodies
from bench.procs import ServerProc
from bench.run import free_port

QUIET = Tenant("quiet", "quiet-key-0123456789abcdef0123456789")
NOISY = Tenant("noisy", "noisy-key-0123456789abcdef0123456789")
TARGET_RATIO = 2.0


def tenants_toml(quiet_rate: float, noisy_rate_limit: float) -> str:
    return "\n".join(
        f'[[tenants]]\nid = "{t.id}"\ntoken_rate = {rate!r}\nburst = {rate!r}\n'
        f'keys = [{{ id = "k1", alg = "hmac", key = "{t.key}" }}]\n'
        for t, rate in ((QUIET, quiet_rate), (NOISY, noisy_rate_limit))
    )


def quiet_run(url: str, bodies: list[tuple[str, bytes]], rate: float, duration: float) -> Any:
    host = url.removeprefix("http://")
    reqs = [build_request(host, "/v1/pcs/submit", t, b) for t, b in bodies]
    try:
        import uvloop

        return uvloop.run(drive(url, reqs, rate, duration))
    except ImportError:
        return asyncio.run(drive(url, reqs, rate, duration))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quiet-rate", type=float, default=200.0)
    ap.add_argument("--noisy-rate", type=float, default=2000.0)
    ap.add_argument("--noisy-limit", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3, help="alone/flood pairs; medians reported")
    args = ap.parse_args(argv)
    n_quiet = int(args.quiet_rate * args.duration)
    alone: list[dict[str, Any]] = []
    shared: list[dict[str, Any]] = []
    noisy: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="flk-noisy-") as tmp:
        work = Path(tmp)
        quiet = list(generate([QUIET], 2 * args.rounds * n_quiet + 200, seed=1))
        noisy_file = write_bodies(work / "noisy.txt", list(generate([NOISY], 5000, seed=2)))
        tenants = work / "tenants.toml"
        tenants.write_text(tenants_toml(1000.0, args.noisy_limit))
        env = {"MULTI_TENANT": "true", "TENANTS_FILE": str(tenants), "DEDUP_BACKEND": "sqlite"}
        srv = ServerProc(free_port(), 1, env, work / "server.log", work / "data")
        srv.start()
        try:
            quiet_run(srv.url, quiet[:200], 100.0, 2.0)  # warm-up (connections, caches)
            chunks = iter(range(200, len(quiet), n_quiet))
            for _ in range(args.rounds):
                i = next(chunks)
                alone.append(quiet_run(srv.url, quiet[i : i + n_quiet], args.quiet_rate,
                                       args.duration))  # fmt: skip
                flood = subprocess.Popen(
                    [sys.executable, "-m", "bench.openloop", "--url", srv.url, "--bodies",
                     str(noisy_file), "--rate", str(args.noisy_rate),
                     "--duration", str(args.duration + 2.0)],
                    stdout=subprocess.PIPE,
                )  # fmt: skip
                try:
                    i = next(chunks)
                    shared.append(quiet_run(srv.url, quiet[i : i + n_quiet], args.quiet_rate,
                                            args.duration))  # fmt: skip
                finally:
                    out, _ = flood.communicate(timeout=args.duration + 60)
                noisy.append(json.loads(out))
        finally:
            srv.stop()
    return report(args, alone, shared, noisy)


def report(
    args: argparse.Namespace,
    alone: list[dict[str, Any]],
    shared: list[dict[str, Any]],
    noisy: list[dict[str, Any]],
) -> int:
    """Print per-round figures and the ratio of the median p95s; exit 1 if over target."""
    print(f"quiet tenant at {args.quiet_rate:g} req/s, {args.duration:g}s per phase, "
          f"open loop; noisy tenant at {args.noisy_rate:g} req/s "
          f"(its limit {args.noisy_limit:g}/s)")  # fmt: skip
    for n, (a, s, z) in enumerate(zip(alone, shared, noisy, strict=True), 1):
        la, ls = a["latency_ms"], s["latency_ms"]
        print(f"  round {n}: alone p50 {la['p50']:.2f} p95 {la['p95']:.2f} p99 {la['p99']:.2f} ms"
              f" | with flood p50 {ls['p50']:.2f} p95 {ls['p95']:.2f} p99 {ls['p99']:.2f} ms"
              f" | quiet ok {s['status'].get('200', 0)}/{s['sent']}"
              f" | noisy 429 {z['status'].get('429', 0) / max(1, z['sent']):.1%}")  # fmt: skip
    p95_alone = statistics.median(a["latency_ms"]["p95"] for a in alone)
    p95_shared = statistics.median(s["latency_ms"]["p95"] for s in shared)
    ok = sum(s["status"].get("200", 0) for s in shared) / max(1, sum(s["sent"] for s in shared))
    ratio = p95_shared / p95_alone if p95_alone > 0 else float("inf")
    verdict = "PASS" if ratio <= TARGET_RATIO and ok == 1.0 else "FAIL"
    print(f"quiet p95 (median of rounds): alone {p95_alone:.2f} ms, with flood {p95_shared:.2f} ms")
    print(f"quiet success with flood: {ok:.2%}")
    print(f"p95 ratio (with / without): {ratio:.2f}x (target <= {TARGET_RATIO:g}x) {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
