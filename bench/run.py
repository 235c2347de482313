"""``make bench``: drive the live verifier with wrk and an open-loop driver; write RESULTS.md.

Usage: python -m bench.run [--quick] [--duration S] [--out bench/RESULTS.md] [--only NAME,...]

Each scenario starts its own ``flk serve`` (temp DATA_DIR, unique DEDUP_NAMESPACE, the null
endpoint enabled), warms it up, runs wrk closed-loop at 64 connections with pre-built bodies
(bench/rotate.lua gives every wrk thread its own slice, so first-seen bodies really are
first-seen), then drives ``POST /v1/bench/null`` on the same server for the ceiling. It
reads /metrics before and after (fsyncs per request) and /proc (CPU, RSS), then stops the
server by PID. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import openloop
from bench.pcsgen import Tenant, default_tenants, generate, read_bodies, write_bodies
from bench.procs import FLK, ServerProc, cpu_cores, machine_cores, sample_machine, sample_tree
from bench.stats import fmt, per_request, prom_value, ratio, verdict

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LUA = HERE / "rotate.lua"
SUBMIT = "/v1/pcs/submit"
NULL = "/v1/bench/null"
STARLETTE_NULL = "/v1/bench/null-starlette"
SINGLE_KEY = "bench-single-tenant-key-0123456789"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get("POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CONNECTIONS = 64
WRK_THREADS = 2
# Gates that exist and can be switched on today. STRICT_MODE narrows the sanity ranges;
# TOKEN_RATE turns the token bucket on (high enough never to refuse, so its cost is measured).
GATES = {"STRICT_MODE": "true", "TOKEN_RATE": "1000000"}
# Gates the SPEC names; the harness switches each on when the server accepts it at startup.
# VRF_ENABLED is not one of them: with it every body needs an ECVRF proof, so its cost is
# measured by its own A/B (python -m bench.vrf_ab) on bodies that carry proofs.
FUTURE_GATES = {
    "PII_SCAN_MODE": "block",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- wrk ----------------------------------------------------------------------------------
def ensure_wrk() -> str:
    """Path of wrk; installs the Debian package (apt-get update once first) when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk not found: apt-get update && apt-get install -y wrk")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed")
    return found


def run_wrk(url: str, bodies: Path, path: str, duration: float) -> dict[str, Any]:
    """Closed loop: wrk -t2 -c64 for ``duration`` seconds; the summary rotate.lua prints."""
    cmd = [
        "wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s",
        "--timeout", "10s", "-s", str(LUA), url, "--", str(bodies), path, str(WRK_THREADS),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            result: dict[str, Any] = json.loads(line[len("BENCHJSON ") :])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no summary: {out.stdout[-500:]} {out.stderr[-500:]}")


# -- scenarios ----------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    backend: str = "sqlite"
    mode: str = "first"  # first | dup
    workers: int = 1
    tenants: int = 1
    null: bool = True
    starlette_null: bool = False


@dataclass
class Ctx:
    workdir: Path
    duration: float
    quick: bool
    single_bodies: Path
    multi_bodies: Path
    warm_single: Path
    warm_multi: Path
    dup_bodies: Path
    tenants: list[Tenant]
    gates: dict[str, str]
    notes: list[str] = field(default_factory=list)


def server_env(sc: Scenario, ctx: Ctx, namespace: str) -> dict[str, str]:
    env = {
        "FLK_BENCH_NULL_ENDPOINT": "1",
        "DEDUP_BACKEND": sc.backend,
        "DEDUP_NAMESPACE": namespace,
        "REDIS_URL": REDIS_URL,
        "POSTGRES_DSN": POSTGRES_DSN,
        **ctx.gates,
    }
    if sc.tenants > 1:
        env["MULTI_TENANT"] = "true"
        env["TENANTS"] = ",".join(f"{t.id}:hmac:{t.key}" for t in ctx.tenants)
    else:
        env["PCS_HMAC_KEY"] = SINGLE_KEY
    return env


@contextlib.contextmanager
def server(sc: Scenario, ctx: Ctx, *, wrapper: list[str] | None = None) -> Iterator[ServerProc]:
    namespace = f"bench{uuid.uuid4().hex[:10]}"
    data = Path(tempfile.mkdtemp(prefix=f"{sc.name}-", dir=ctx.workdir))
    srv = ServerProc(
        free_port(), sc.workers, server_env(sc, ctx, namespace), data / "server.log", data / "d",
        wrapper=wrapper,
    )  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        cleanup_store(sc.backend, namespace)
        if not os.environ.get("FLK_BENCH_KEEP"):
            shutil.rmtree(data, ignore_errors=True)


def cleanup_store(backend: str, namespace: str) -> None:
    """Drop what a scenario left in the shared Redis / PostgreSQL (by its own namespace)."""
    try:
        if backend == "redis":
            import redis

            with redis.Redis.from_url(REDIS_URL, socket_timeout=5) as r:
                keys = list(r.scan_iter(match=f"{namespace}:*", count=5000))
                for i in range(0, len(keys), 5000):
                    r.delete(*keys[i : i + 5000])
        elif backend == "postgres":
            import psycopg
            from psycopg import sql

            with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(f"{namespace}_dedup"))
                )
    except Exception as exc:  # cleanup is best effort; the namespace is unique anyway
        log(f"cleanup of {backend} namespace {namespace} failed: {exc}")


def measure(srv: ServerProc, bodies: Path, path: str, duration: float) -> dict[str, Any]:
    """One wrk run with /metrics and /proc readings around it."""
    m0, s0, c0 = srv.metrics(), sample_tree(srv.pid), sample_machine()
    res = run_wrk(srv.url, bodies, path, duration)
    c1, s1, m1 = sample_machine(), sample_tree(srv.pid), srv.metrics()
    admitted = prom_value(m1, "flk_ingest_total") - prom_value(m0, "flk_ingest_total")
    res["admitted"] = admitted
    res["replayed"] = prom_value(m1, "flk_dedup_hits_total") - prom_value(
        m0, "flk_dedup_hits_total"
    )
    res["wal_fsyncs_per_req"] = per_request(
        prom_value(m0, "flk_wal_fsyncs_total"), prom_value(m1, "flk_wal_fsyncs_total"), admitted
    )
    res["audit_fsyncs_per_req"] = per_request(
        prom_value(m0, "flk_audit_fsyncs_total"),
        prom_value(m1, "flk_audit_fsyncs_total"),
        admitted,
    )
    res["server_cpu_cores"] = cpu_cores(s0, s1)
    res["machine_busy_cores"] = machine_cores(c0, c1)
    res["cpu_us_per_req"] = ratio(res["server_cpu_cores"] * 1e6, res["rps"])
    res["peak_rss_mb"] = max(s1.hwm_kb.values(), default=0) / 1024
    res["rss_mb"] = s1.rss_kb / 1024
    return res


def prime(url: str, bodies: Path) -> dict[str, Any]:
    """Send every body once (so a later run of the same bodies is all duplicates)."""
    host = url.split("//", 1)[1]
    reqs = [openloop.build_request(host, SUBMIT, t, b) for t, b in read_bodies(bodies)]
    rate = 2000.0
    return asyncio.run(openloop.drive(url, reqs, rate, len(reqs) / rate))


def run_scenario(sc: Scenario, ctx: Ctx) -> dict[str, Any]:
    log(f"scenario {sc.name}: backend={sc.backend} mode={sc.mode} workers={sc.workers} "
        f"tenants={sc.tenants}")  # fmt: skip
    multi = sc.tenants > 1
    out: dict[str, Any] = {"scenario": sc.__dict__.copy()}
    try:
        with server(sc, ctx) as srv:
            warm = ctx.warm_multi if multi else ctx.warm_single
            run_wrk(srv.url, warm, SUBMIT, 2 if ctx.quick else 3)
            if sc.mode == "dup":
                primed = prime(srv.url, ctx.dup_bodies)
                out["primed"] = primed["status"]
                bodies = ctx.dup_bodies
            else:
                bodies = ctx.multi_bodies if multi else ctx.single_bodies
            out["submit"] = measure(srv, bodies, SUBMIT, ctx.duration)
            if sc.null:
                out["null"] = measure(srv, bodies, NULL, min(ctx.duration, 10))
            if sc.starlette_null:
                out["starlette_null"] = measure(srv, bodies, STARLETTE_NULL, min(ctx.duration, 10))
    except RuntimeError as exc:
        log(f"scenario {sc.name} skipped: {exc}")
        out["skipped"] = str(exc)
    return out


def run_openloop(ctx: Ctx, rate: float, duration: float) -> dict[str, Any]:
    """Open loop against submit and null on one sqlite server (driver in its own process)."""
    sc = Scenario("openloop", null=True)
    log(f"open loop: {rate:.0f} req/s for {duration:.0f} s (submit), then the null endpoint")
    out: dict[str, Any] = {}
    with server(sc, ctx) as srv:
        run_wrk(srv.url, ctx.warm_single, SUBMIT, 2)
        for name, path in (("submit", SUBMIT), ("null", NULL)):
            s0 = sample_tree(srv.pid)
            cmd = [
                sys.executable, "-m", "bench.openloop", "--url", srv.url, "--bodies",
                str(ctx.single_bodies), "--path", path, "--rate", str(rate), "--duration",
                str(duration),
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"open-loop driver failed: {proc.stderr[-800:]}")
            res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
            res["server_cpu_cores"] = cpu_cores(s0, sample_tree(srv.pid))
            out[name] = res
    return out


def run_rss(ctx: Ctx, duration: float, bodies: Path) -> dict[str, Any]:
    """RSS over a long first-seen run: growth from the end of warm-up to the end."""
    sc = Scenario("rss", null=False)
    log(f"RSS flatness: {duration:.0f} s of first-seen submissions at {CONNECTIONS} connections")
    with server(sc, ctx) as srv:
        run_wrk(srv.url, ctx.warm_single, SUBMIT, 3)
        samples: list[tuple[float, float]] = []
        t0 = time.monotonic()
        cmd = [
            "wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{round(duration)}s", "--timeout",
            "10s", "-s", str(LUA), srv.url, "--", str(bodies), SUBMIT, str(WRK_THREADS),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        while proc.poll() is None:
            samples.append((time.monotonic() - t0, sample_tree(srv.pid).rss_kb / 1024))
            time.sleep(1.0)
        stdout = proc.stdout.read() if proc.stdout else ""
        final = sample_tree(srv.pid)
        summary: dict[str, Any] = next(
            (json.loads(x[10:]) for x in stdout.splitlines() if x.startswith("BENCHJSON ")), {}
        )
    base = next((mb for t, mb in samples if t >= duration * 0.2), samples[0][1] if samples else 0)
    end = samples[-1][1] if samples else 0
    return {
        "duration_s": duration,
        "requests": summary.get("requests", 0),
        "wraps": summary.get("wraps", 0),
        "status": summary.get("status", {}),
        "rss_after_warmup_mb": base,
        "rss_end_mb": end,
        "peak_rss_mb": max(final.hwm_kb.values(), default=0) / 1024,
        "growth_pct": (end - base) / base * 100 if base else math.nan,
        "samples": [(round(t, 1), round(mb, 1)) for t, mb in samples],
    }


def run_strace_check(ctx: Ctx, duration: float) -> dict[str, Any]:
    """Cross-check fsync counts with strace (seccomp-bpf filter: only fsync-family stops)."""
    if not shutil.which("strace"):
        return {"skipped": "strace not installed"}
    sc = Scenario("strace", null=False)
    trace = ctx.workdir / "strace.txt"
    wrapper = ["strace", "-f", "--seccomp-bpf", "-qq", "-y", "-e", "trace=fsync,fdatasync",
               "-o", str(trace)]  # fmt: skip
    log("fsync cross-check under strace")
    try:
        with server(sc, ctx, wrapper=wrapper) as srv:
            run_wrk(srv.url, ctx.warm_single, SUBMIT, 2)
            start = trace.stat().st_size
            m0 = srv.metrics()
            res = run_wrk(srv.url, ctx.single_bodies, SUBMIT, duration)
            m1 = srv.metrics()
            with open(trace, "rb") as fh:
                fh.seek(start)
                lines = fh.read().decode(errors="replace").splitlines()
    except RuntimeError as exc:
        return {"skipped": str(exc)}
    admitted = prom_value(m1, "flk_ingest_total") - prom_value(m0, "flk_ingest_total")
    counts = {"wal": 0, "audit": 0, "other": 0}
    for line in lines:
        if "fsync(" not in line and "fdatasync(" not in line:
            continue
        if "/wal/inbox-" in line:
            counts["wal"] += 1
        elif "/audit" in line:
            counts["audit"] += 1
        else:
            counts["other"] += 1
    return {
        "requests": res["requests"],
        "admitted": admitted,
        "rps_under_strace": res["rps"],
        "strace_fsyncs": counts,
        "metric_wal": prom_value(m1, "flk_wal_fsyncs_total")
        - prom_value(m0, "flk_wal_fsyncs_total"),
        "metric_audit": prom_value(m1, "flk_audit_fsyncs_total")
        - prom_value(m0, "flk_audit_fsyncs_total"),
    }


def probe_gates(ctx: Ctx) -> None:
    """Switch on each future gate the server accepts at startup; note the refused ones."""
    for var, value in FUTURE_GATES.items():
        sc = Scenario(f"probe-{var.lower()}", null=False)
        saved = dict(ctx.gates)
        ctx.gates[var] = value
        try:
            with server(sc, ctx):
                pass
            ctx.notes.append(f"gate {var}={value}: switched on")
        except RuntimeError as exc:
            ctx.gates = saved
            ctx.notes.append(f"gate {var}={value}: refused by the server at startup ({exc})")


# -- agent figures --------------------------------------------------------------------------
def agent_figures(workdir: Path, events: int) -> dict[str, Any]:
    import numpy as np

    from fractal_lba.signals import coherence

    log(f"agent figures: flk build-pcs on {events:,} CSV events; coh_star 100k x 100")
    rng = np.random.default_rng(7)
    pts = rng.random((events, 3))
    csv = workdir / "events.csv"
    with open(csv, "w") as fh:
        fh.write("timestamp,x,y,z\n")
        ts = np.arange(events, dtype=np.float64) * 0.001 + 1.7e9
        np.savetxt(fh, np.column_stack([ts, pts]), delimiter=",", fmt="%.6f")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(FLK), "build-pcs", "--in", str(csv), "--epoch", "1", "--key", SINGLE_KEY,
         "--shard-id", "bench", "--out", str(workdir / "pcs.json")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    build_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"flk build-pcs failed: {proc.stderr[-500:]}")
    pts100k = rng.random((100_000, 3))
    times = []
    for _ in range(3):
        t1 = time.perf_counter()
        coherence(pts100k, 42, m=100)
        times.append(time.perf_counter() - t1)
    return {"events": events, "build_pcs_s": build_s, "coh_star_100k_x100_s": min(times)}


# -- report -----------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for pkg in ("uvicorn", "uvloop", "httptools", "starlette", "msgspec", "prometheus_client",
                "redis", "psycopg", "numpy"):  # fmt: skip
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "-"
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    out["wrk"] = (wrk.stdout or wrk.stderr).split("\n")[0].split(" [")[0]
    with contextlib.suppress(Exception):
        import redis

        with redis.Redis.from_url(REDIS_URL, socket_timeout=2) as r:
            out["redis-server"] = str(r.info("server")["redis_version"])
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(POSTGRES_DSN, connect_timeout=2) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            out["postgresql"] = str(row[0]) if row else "-"
    return out


def machine() -> dict[str, str]:
    model = "-"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "-"
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        kb = int(fh.readline().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    return {"nproc": str(os.cpu_count()), "cpu": model, "memory": mem,
            "kernel": platform.release()}  # fmt: skip


def _mix(status: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(status.items())) or "-"


def render(results: dict[str, Any]) -> str:
    r = results
    lines = [
        "# Benchmark results",
        "",
        f"Run: `{r['command']}` at {r['started']} ({r['wall_s']:.0f} s wall). "
        "Regenerate with `make bench` (or `make bench BENCH_ARGS=--quick`).",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in r["machine"].items()],
        *[f"| {k} | {v} |" for k, v in r["versions"].items()],
        "",
        "wrk and the open-loop driver run on the same 2 cores as the server: every figure below "
        "is what the server gets while sharing the machine with its load generator.",
        "",
        "Gates on in every scenario: "
        + ", ".join(f"`{k}={v}`" for k, v in r["gates"].items())
        + ". Full durability always: every request's WAL record and audit entry are fdatasync'd "
        "before the answer.",
        "",
        *[f"- {n}" for n in r["notes"]],
        "",
        f"## Closed loop (wrk, {CONNECTIONS} connections, {WRK_THREADS} threads, "
        f"{r['duration']:.0f} s per run)",
        "",
        "| scenario | backend | workers | tenants | req/s | p50 ms | p95 ms | p99 ms | status mix "
        "| errors | server CPU (cores) | CPU us/req | machine busy (cores) | peak RSS MB "
        "| WAL fsync/req | audit fsync/req | null req/s | null CPU us/req | ratio to null |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["scenarios"]:
        sc = s["scenario"]
        if "skipped" in s:
            lines.append(
                f"| {sc['name']} | {sc['backend']} | {sc['workers']} | {sc['tenants']} | "
                f"skipped: {s['skipped'][:160]} |" + " |" * 14
            )
            continue
        sub, nul = s["submit"], s.get("null", {})
        errs = sum(sub["errors"].values())
        lines.append(
            f"| {sc['name']} | {sc['backend']} | {sc['workers']} | {sc['tenants']} | "
            f"{fmt(sub['rps'])} | {fmt(sub['p50_us'] / 1000, 1)} | {fmt(sub['p95_us'] / 1000, 1)}"
            f" | {fmt(sub['p99_us'] / 1000, 1)} | {_mix(sub['status'])}"
            f"{' (replayed ' + fmt(sub['replayed']) + ')' if sub.get('replayed') else ''}"
            f"{' (wrapped ' + str(sub['wraps']) + 'x)' if sub['wraps'] else ''} | {errs} | "
            f"{fmt(sub['server_cpu_cores'], 2)} | {fmt(sub['cpu_us_per_req'])} | "
            f"{fmt(sub['machine_busy_cores'], 2)} | {fmt(sub['peak_rss_mb'])} | "
            f"{fmt(sub['wal_fsyncs_per_req'], 3)} | {fmt(sub['audit_fsyncs_per_req'], 3)} | "
            f"{fmt(nul.get('rps', math.nan))} | {fmt(nul.get('cpu_us_per_req', math.nan))} | "
            f"{fmt(100 * ratio(sub['rps'], nul.get('rps', math.nan)), 1)}% |"
        )
    ref = [s for s in r["scenarios"] if "starlette_null" in s and "skipped" not in s]
    if ref:
        lines += [
            "",
            "The null endpoint above is raw ASGI on uvicorn, the same stack as the submit path. "
            "For reference, the same fixed answer through a Starlette route on the same server "
            '(the stack the targets were first stated against: "a bare starlette endpoint on '
            'uvicorn did about 12,000 req/s"): '
            + "; ".join(
                f"{s['scenario']['name']}: Starlette null {fmt(s['starlette_null']['rps'])} req/s "
                f"({fmt(s['starlette_null']['cpu_us_per_req'])} us CPU/req), submit at "
                f"{fmt(100 * ratio(s['submit']['rps'], s['starlette_null']['rps']), 1)}% of it"
                for s in ref
            )
            + ". The targets' verdicts below use the raw-ASGI null.",
        ]
    ol = r.get("openloop")
    if ol:
        lines += [
            "",
            f"## Open loop ({ol['submit']['rate']:.0f} req/s for {ol['submit']['duration_s']:.0f} "
            "s, latency from the scheduled send time)",
            "",
            "| endpoint | sent | completed | achieved req/s | errors | p50 ms | p95 ms | p99 ms "
            "| p99.9 ms | max ms | driver send lag p99 ms | server CPU (cores) | status mix |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name in ("submit", "null"):
            o = ol[name]
            lat, lag = o["latency_ms"], o["send_lag_ms"]
            lines.append(
                f"| {name} | {o['sent']} | {o['completed']} | {fmt(o['achieved_rps'])} | "
                f"{o['errors']} | {fmt(lat['p50'], 2)} | {fmt(lat['p95'], 2)} | "
                f"{fmt(lat['p99'], 2)} | {fmt(lat['p999'], 2)} | {fmt(lat['max'], 2)} | "
                f"{fmt(lag['p99'], 2)} | {fmt(o['server_cpu_cores'], 2)} | {_mix(o['status'])} |"
            )
        lines += [
            "",
            "The null row is the driver's own overhead plus the HTTP stack: submit latency above "
            "it is the verifier's.",
        ]
    rss = r.get("rss")
    if rss:
        lines += [
            "",
            "## RSS flatness",
            "",
            f"{rss['requests']:,} first-seen requests in {rss['duration_s']:.0f} s "
            f"(status {_mix(rss['status'])}; wrapped {rss['wraps']}x): RSS "
            f"{rss['rss_after_warmup_mb']:.1f} MB after the first 20% -> {rss['rss_end_mb']:.1f} "
            f"MB at the end (**{rss['growth_pct']:+.1f}%**), peak {rss['peak_rss_mb']:.1f} MB.",
        ]
    st = r.get("strace")
    if st and "skipped" not in st:
        c = st["strace_fsyncs"]
        lines += [
            "",
            "## fsync cross-check (strace)",
            "",
            f"{st['admitted']:.0f} requests admitted under `strace -f --seccomp-bpf -e "
            f"trace=fsync,fdatasync` ({fmt(st['rps_under_strace'])} req/s): strace saw "
            f"{c['wal']} WAL, {c['audit']} audit, {c['other']} other fsyncs; the metrics said "
            f"{st['metric_wal']:.0f} WAL and {st['metric_audit']:.0f} audit "
            f"({fmt(per_request(0, c['wal'], st['admitted']), 3)} and "
            f"{fmt(per_request(0, c['audit'], st['admitted']), 3)} per request).",
        ]
    elif st:
        lines += ["", f"fsync cross-check with strace skipped: {st['skipped']}"]
    ag = r.get("agent")
    if ag:
        lines += [
            "",
            "## Agent figures",
            "",
            f"- `flk build-pcs` on {ag['events']:,} CSV events: {ag['build_pcs_s']:.2f} s wall "
            "(process start, CSV parse, signals, Merkle root, signing)",
            f"- `coherence` (coh_star) on 100,000 points x 100 directions: "
            f"{ag['coh_star_100k_x100_s'] * 1000:.0f} ms (best of 3)",
        ]
    if r.get("storesize"):
        from bench import storesize

        lines += ["", storesize.render(r["storesize"])]
    lines += ["", "## Targets", "", "| target | figure | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {f} | {v} |" for t, f, v in targets(r)]
    return "\n".join(lines) + "\n"


def _by_name(r: dict[str, Any], name: str) -> dict[str, Any] | None:
    for s in r["scenarios"]:
        if s["scenario"]["name"] == name and "skipped" not in s:
            found: dict[str, Any] = s
            return found
    return None


def targets(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []

    def rps(name: str) -> float:
        s = _by_name(r, name)
        return float(s["submit"]["rps"]) if s else math.nan

    def null_rps(name: str) -> float:
        s = _by_name(r, name)
        return float(s["null"]["rps"]) if s and "null" in s else math.nan

    w1, w2 = rps("sqlite-first"), rps("sqlite-first-2w")
    out.append(("first-seen sqlite 1 worker >= 3,000 req/s", fmt(w1), verdict(w1, 3000)))
    out.append(("first-seen sqlite 2 workers >= 4,000 req/s", fmt(w2), verdict(w2, 4000)))
    rn = ratio(w1, null_rps("sqlite-first"))
    out.append(("ratio to null >= 40% (1 worker)", f"{fmt(100 * rn, 1)}%", verdict(rn, 0.4)))
    dn = ratio(rps("sqlite-dup"), null_rps("sqlite-dup"))
    out.append(("duplicate path >= 80% of null", f"{fmt(100 * dn, 1)}%", verdict(dn, 0.8)))
    for backend, want in (("redis", 0.8), ("postgres", 0.6)):
        x = ratio(rps(f"{backend}-first"), w1)
        out.append((f"{backend} >= {want}x sqlite", f"{fmt(x, 2)}x", verdict(x, want)))
    s = _by_name(r, "sqlite-first")
    if s:
        for kind in ("wal", "audit"):
            v = float(s["submit"][f"{kind}_fsyncs_per_req"])
            out.append(
                (f"{kind} fsyncs/request <= 0.2 at 64 connections", fmt(v, 3),
                 verdict(v, 0.2, at_most=True))
            )  # fmt: skip
    ol = r.get("openloop")
    if ol:
        o = ol["submit"]
        p99 = float(o["latency_ms"]["p99"])
        ok = p99 <= 20 and o["errors"] == 0 and set(o["status"]) <= {"200"}
        out.append(
            (f"open loop {o['rate']:.0f} req/s {o['duration_s']:.0f} s: p99 <= 20 ms, no errors",
             f"p99 {fmt(p99, 2)} ms, errors {o['errors']}, {_mix(o['status'])}",
             "met" if ok else "MISSED")
        )  # fmt: skip
    rss = r.get("rss")
    if rss:
        out.append(("RSS < 200 MB", fmt(rss["peak_rss_mb"], 1) + " MB",
                    verdict(rss["peak_rss_mb"], 200, at_most=True)))  # fmt: skip
        out.append(("RSS growth < 10%", f"{rss['growth_pct']:+.1f}%",
                    verdict(rss["growth_pct"], 10, at_most=True)))  # fmt: skip
    ag = r.get("agent")
    if ag:
        build_s = float(ag["build_pcs_s"])
        out.append(
            (f"flk build-pcs on {ag['events']:,} CSV events <= 3 s", f"{fmt(build_s, 2)} s",
             verdict(build_s, 3.0, at_most=True))
        )  # fmt: skip
        coh_ms = float(ag["coh_star_100k_x100_s"]) * 1000
        out.append(
            ("coh_star 100k points x 100 directions <= 150 ms", f"{fmt(coh_ms)} ms",
             verdict(coh_ms, 150, at_most=True))
        )  # fmt: skip
    for backend in ("sqlite", "redis", "postgres"):
        out.append(_scaling(r, backend))
    return out


def _scaling(r: dict[str, Any], backend: str) -> tuple[str, str, str]:
    """2 workers vs 1, next to what the stack itself (the null endpoint) and the machine allow.

    The machine has ``nproc`` cores for the server, the load generator and (redis, postgres)
    the database server; when the 2-worker run already keeps every core busy, 1.6x cannot be
    reached by any server on it, and the null endpoint's own scaling shows the ceiling.
    """
    name = f"{backend} 2 workers >= 1.6x one worker (where cores allow)"
    one, two = _by_name(r, f"{backend}-first"), _by_name(r, f"{backend}-first-2w")
    if one is None or two is None:
        return name, "-", "n/a"
    sc = ratio(two["submit"]["rps"], one["submit"]["rps"])
    nan = {"rps": math.nan}
    null_sc = ratio(two.get("null", nan)["rps"], one.get("null", nan)["rps"])
    busy = float(two["submit"]["machine_busy_cores"])
    nproc = os.cpu_count() or 1
    figure = (
        f"{fmt(sc, 2)}x (null endpoint {fmt(null_sc, 2)}x; relative to null "
        f"{fmt(ratio(sc, null_sc), 2)}; machine {fmt(busy, 2)} of {nproc} cores busy)"
    )
    if sc >= 1.6:
        return name, figure, "met"
    if busy >= 0.95 * nproc:
        return name, figure, "cores do not allow (machine saturated)"
    return name, figure, "MISSED"


# -- main -------------------------------------------------------------------------------------
SCENARIOS = [
    Scenario("sqlite-first", starlette_null=True),
    Scenario("sqlite-dup", mode="dup", starlette_null=True),
    Scenario("memory-first", backend="memory"),
    Scenario("redis-first", backend="redis"),
    Scenario("postgres-first", backend="postgres"),
    Scenario("sqlite-first-4tenants", tenants=4),
    Scenario("sqlite-first-2w", workers=2),
    Scenario("redis-first-2w", backend="redis", workers=2),
    Scenario("postgres-first-2w", backend="postgres", workers=2),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fractal-lba benchmark harness")
    ap.add_argument("--quick", action="store_true", help="short runs (~4 min overall)")
    ap.add_argument("--duration", type=float, help="seconds per closed-loop run")
    ap.add_argument("--openloop-rate", type=float, default=1000.0)
    ap.add_argument("--openloop-duration", type=float)
    ap.add_argument("--rss-duration", type=float)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--only", help="comma list of scenario names (skips the other sections)")
    ap.add_argument(
        "--store-size", type=int, metavar="N",
        help="also run the store-size scenario: empty sqlite store vs N prefilled records "
        "(bench/storesize.py; use --only storesize for it alone)",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--json", type=Path, default=HERE / "out" / "results.json")
    ap.add_argument(
        "--render", type=Path, metavar="JSON",
        help="only re-render RESULTS.md from a results.json of an earlier full run",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.render is not None:
        args.out.write_text(render(json.loads(args.render.read_text())))
        log(f"wrote {args.out}")
        return 0
    ensure_wrk()
    started = time.time()
    duration = args.duration or (5.0 if args.quick else 15.0)
    ol_duration = args.openloop_duration or (15.0 if args.quick else 60.0)
    rss_duration = args.rss_duration or (20.0 if args.quick else 60.0)
    workroot = HERE / "out"
    workroot.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=workroot))
    tenants = default_tenants(4)
    single = [Tenant("default", SINGLE_KEY)]
    # Enough distinct bodies that no run wraps (2 workers on this box: ~10k req/s at most).
    n_main = int(14_000 * max(duration, ol_duration / 10) * 1.2)
    n_rss = int(9_000 * rss_duration)
    log(f"generating {n_main:,} + {n_rss:,} signed PCS bodies")
    ctx = Ctx(
        workdir=workdir,
        duration=duration,
        quick=args.quick,
        single_bodies=write_bodies(workdir / "single.txt", list(generate(single, n_main, seed=1))),
        multi_bodies=write_bodies(workdir / "multi.txt", list(generate(tenants, n_main, seed=2))),
        warm_single=write_bodies(workdir / "warm1.txt", list(generate(single, 60_000, seed=3))),
        warm_multi=write_bodies(workdir / "warm4.txt", list(generate(tenants, 60_000, seed=4))),
        dup_bodies=write_bodies(workdir / "dup.txt", list(generate(single, 4_000, seed=5))),
        tenants=tenants,
        gates=dict(GATES),
    )
    probe_gates(ctx)
    wanted = set(args.only.split(",")) if args.only else None
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "started": dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "gates": ctx.gates,
        "notes": ctx.notes,
        "duration": duration,
        "scenarios": [],
    }
    for sc in SCENARIOS:
        if wanted is None or sc.name in wanted:
            results["scenarios"].append(run_scenario(sc, ctx))
    if args.store_size:
        from bench import storesize

        results["storesize"] = storesize.run("sqlite", args.store_size, 0.5, 2, max(duration, 10.0))
    if wanted is None:
        results["openloop"] = run_openloop(ctx, args.openloop_rate, ol_duration)
        rss_bodies = write_bodies(workdir / "rss.txt", list(generate(single, n_rss, seed=6)))
        results["rss"] = run_rss(ctx, rss_duration, rss_bodies)
        results["strace"] = run_strace_check(ctx, 5.0)
        results["agent"] = agent_figures(workdir, args.events)
    results["wall_s"] = time.time() - started
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    text = render(results)
    if wanted is None:
        args.out.write_text(text)
        log(f"wrote {args.out}")
    print(text)
    if not os.environ.get("FLK_BENCH_KEEP"):
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
