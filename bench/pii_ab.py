"""A/B of the PII gate on the live submit path: first-seen PCS with ``PII_SCAN_MODE=block``
against the same run without it (SPEC section 8 target: throughput within 10%).

    .venv/bin/python -m bench.pii_ab [--rounds 3] [--duration 8]

Each round starts one server per arm (fresh ``DATA_DIR``, SQLite store, one worker), in
alternating order, warms it up, then drives distinct PCS through wrk (the harness of
``bench/run.py``) and reads the server's CPU from ``/proc``. The bodies are version 0.2 with
four realistic ``meta`` values (region, build, host, timestamp) and no PII, the case the
gate must make cheap. Reported: req/s and server CPU microseconds per request per arm
(median over rounds) and their ratios; CPU per request is the figure to trust on a shared
machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path

import msgspec

from bench.pcsgen import Tenant, make_pcs, write_bodies
from bench.run import SINGLE_KEY, SUBMIT, Ctx, Scenario, ensure_wrk, measure, run_wrk, server
from fractal_lba.contract import encode_pcs


def bodies(n: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    tenant = Tenant("default", SINGLE_KEY)
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        pcs = make_pcs(tenant, i, rng)  # the 0.1/0.2 signature does not cover meta
        pcs = msgspec.structs.replace(
            pcs,
            version="0.2",
            meta={
                "region": "eu-west-1", "build": f"2024.11.{i % 28 + 1:02d}-rc{i % 5}",
                "host": f"ingest-{i % 97:02d}.pool-b", "window": "2024-11-05T10:22:33Z",
            },
        )  # fmt: skip
        out.append(("default", encode_pcs(pcs)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--bodies", type=int, default=60_000)
    args = ap.parse_args(argv)
    ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="pii-ab-"))
    main_bodies = write_bodies(work / "first.tsv", bodies(args.bodies, 1))
    warm = write_bodies(work / "warm.tsv", bodies(3000, 2))
    ctx = Ctx(
        work, args.duration, True, main_bodies, main_bodies, warm, warm, main_bodies, [], {}
    )
    sc = Scenario("pii-ab", null=False)
    arms: dict[str, dict[str, str]] = {"off": {}, "block": {"PII_SCAN_MODE": "block"}}
    results: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    for r in range(args.rounds):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for arm in order:
            ctx.gates = arms[arm]
            with server(sc, ctx) as srv:
                run_wrk(srv.url, warm, SUBMIT, 2)
                res = measure(srv, main_bodies, SUBMIT, args.duration)
            results[arm].append(res)
            print(
                f"round {r + 1} {arm:>5}: {res['rps']:8.0f} req/s  "
                f"{res['cpu_us_per_req']:7.1f} CPU us/req  status {res.get('status')}",
                flush=True,
            )
    med = {
        a: (
            statistics.median(x["rps"] for x in rs),
            statistics.median(x["cpu_us_per_req"] for x in rs),
        )
        for a, rs in results.items()
    }
    (rps_off, cpu_off), (rps_on, cpu_on) = med["off"], med["block"]
    print(f"median off:   {rps_off:8.0f} req/s  {cpu_off:7.1f} CPU us/req")
    print(f"median block: {rps_on:8.0f} req/s  {cpu_on:7.1f} CPU us/req")
    print(
        f"block / off: throughput {rps_on / rps_off:.3f}, CPU per request {cpu_on / cpu_off:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
