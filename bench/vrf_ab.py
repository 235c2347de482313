"""A/B of the embedded default with and without VRF enforcement (first-seen, wrk -c64).

Usage: python -m bench.vrf_ab [--duration 10] [--rounds 2] [--bodies 40000] [--workers 1]

A = ``flk serve`` with no VRF; B = the same with ``VRF_ENABLED=true VRF_MODE=enforce`` and
``VRF_PUBLIC_KEY`` set (everything else default: verification inline); C = B with
``VRF_VERIFY_THREADS=--alt-threads`` (default 2 worker threads).
All get the same distinct bodies (version 0.2 PCS, each with an
ECVRF proof over its own alpha and the seed derived from it; A ignores the proof). Runs are
interleaved A, B, A, B, ... each on a fresh server (empty dedup store), so every request is
first-seen. Prints req/s, server CPU us per request and B/A per round and the medians; the
target is B's throughput >= 50% of A's.
"""

from __future__ import annotations

import argparse
import base64
import random
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.pcsgen import Tenant, make_pcs, write_bodies
from bench.procs import ServerProc
from bench.run import SINGLE_KEY, SUBMIT, ensure_wrk, free_port, log, measure, run_wrk
from fractal_lba.adversarial import vrf
from fractal_lba.contract import VRFProof, encode_pcs

HERE = Path(__file__).resolve().parent


def vrf_bodies(path: Path, n: int, sk: bytes, *, start: int = 0) -> Path:
    """``n`` distinct single-tenant bodies with valid proofs (the prover's cost is offline)."""
    tenant = Tenant("default", SINGLE_KEY)
    rng = random.Random(start + 1)
    items: list[tuple[str, bytes]] = []
    for i in range(start, start + n):
        pcs = make_pcs(tenant, i, rng)
        pi = vrf.prove(sk, vrf.alpha_for(tenant.id, pcs.shard_id, pcs.epoch))
        beta = vrf.proof_to_hash(pi)
        pcs.version = "0.2"
        pcs.seed = vrf.seed_from_output(beta)
        pcs.vrf = VRFProof(
            proof=base64.b64encode(pi).decode(), output=base64.b64encode(beta).decode()
        )
        items.append((tenant.id, encode_pcs(pcs)))
    return write_bodies(path, items)


def one_run(label: str, env: dict[str, str], bodies: Path, warm: Path, args: Any) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix=f"vrf-ab-{label}-"))
    srv = ServerProc(free_port(), args.workers, env, data / "server.log", data / "d")
    srv.start()
    try:
        run_wrk(srv.url, warm, SUBMIT, 2)
        res = measure(srv, bodies, SUBMIT, args.duration)
    finally:
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)
    log(f"{label}: {res['rps']:.0f} req/s, {res['cpu_us_per_req']:.0f} CPU us/req, "
        f"status {res.get('status')}")  # fmt: skip
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bodies", type=int, default=40_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--reuse", action="store_true", help="reuse bench/out/vrf-ab-* from an earlier run"
    )
    ap.add_argument(
        "--alt-threads", type=int, default=2,
        help="VRF_VERIFY_THREADS of variant C (default 2); -1 skips C",
    )  # fmt: skip
    args = ap.parse_args(argv)
    ensure_wrk()
    out = HERE / "out"
    key_file = out / "vrf-ab.key"
    bodies, warm = out / f"vrf-ab-bodies-{args.bodies}.tsv", out / "vrf-ab-warm.tsv"
    if args.reuse and key_file.exists() and bodies.exists() and warm.exists():
        sk = bytes.fromhex(key_file.read_text())
        pk = vrf.public_key(sk)
    else:
        sk, pk = vrf.keygen()
        log(f"proving {args.bodies} bodies (+2000 warm-up)")
        vrf_bodies(bodies, args.bodies, sk)
        vrf_bodies(warm, 2000, sk, start=10_000_000)
        key_file.write_text(sk.hex())
    base = {"PCS_HMAC_KEY": SINGLE_KEY, "DEDUP_BACKEND": "sqlite"}
    envs = {
        "A (no VRF)": base,
        "B (VRF enforce)": {
            **base, "VRF_ENABLED": "true", "VRF_MODE": "enforce", "VRF_PUBLIC_KEY": pk.hex(),
        },
    }  # fmt: skip
    if args.alt_threads >= 0:
        envs[f"C (enforce, {args.alt_threads} thr)"] = {
            **envs["B (VRF enforce)"], "VRF_VERIFY_THREADS": str(args.alt_threads),
        }  # fmt: skip
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in envs}
    for r in range(args.rounds):
        for label, env in envs.items():
            rows[label].append(one_run(f"round {r + 1} {label}", env, bodies, warm, args))
    print(f"\nVRF A/B, sqlite, {args.workers} worker(s), wrk -c64, {args.duration:.0f} s per run")
    print(f"{'run':28s} {'req/s':>8s} {'CPU us/req':>11s} {'status':s}")
    for label, runs in rows.items():
        for i, res in enumerate(runs):
            print(f"{label + f' #{i + 1}':28s} {res['rps']:8.0f} {res['cpu_us_per_req']:11.0f} "
                  f"{res.get('status')}")  # fmt: skip
    a = statistics.median(x["rps"] for x in rows["A (no VRF)"])
    b = statistics.median(x["rps"] for x in rows["B (VRF enforce)"])
    a_cpu = statistics.median(x["cpu_us_per_req"] for x in rows["A (no VRF)"])
    b_cpu = statistics.median(x["cpu_us_per_req"] for x in rows["B (VRF enforce)"])
    share = b / a if a else 0.0
    print(f"median: A {a:.0f} req/s ({a_cpu:.0f} us/req), B {b:.0f} req/s ({b_cpu:.0f} us/req)")
    verdict = "met" if share >= 0.5 else "MISSED"
    print(f"target: B >= 50% of A -> {share:.0%} ({verdict}); VRF adds {b_cpu - a_cpu:.0f} us/req")
    for label in list(rows)[2:]:
        c = statistics.median(x["rps"] for x in rows[label])
        c_cpu = statistics.median(x["cpu_us_per_req"] for x in rows[label])
        print(f"{label}: {c:.0f} req/s ({c_cpu:.0f} us/req) = {c / a if a else 0:.0%} of A")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
