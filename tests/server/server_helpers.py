"""Helpers of the verifier tests: PCS builders, a counting store, an in-memory audit log,
real server processes, and polling with deadlines (never fixed sleeps)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from collections.abc import Set
from pathlib import Path
from typing import Any, TypeVar

import httpx

from fractal_lba.audit import AuditEntry, AuditError
from fractal_lba.contract import HmacSigner, compute_pcs_id, parse_hmac_key, signature_payload
from fractal_lba.signals import budget, d_hat, regime
from fractal_lba.stores import DedupStore, StoredOutcome
from testkit import POSTGRES_DSN as POSTGRES_DSN
from testkit import REDIS_URL as REDIS_URL
from testkit import TcpProxy as TcpProxy
from testkit import eventually as eventually
from testkit import free_port as free_port
from testkit import service_missing as service_missing
from testkit import wait_until as wait_until

T = TypeVar("T")

HMAC_KEY = "test-hmac-key"
REPO = Path(__file__).resolve().parents[2]
FLK = Path(sys.executable).with_name("flk")
SUBMIT = "/v1/pcs/submit"


# --- PCS ---------------------------------------------------------------------------------

SCALES = [2, 4, 8, 16, 32]


def counts_for(dim: float) -> dict[str, int]:
    """N_j with slope ``dim`` in log2/log2 space (non-decreasing)."""
    return {str(s): max(1, round(s**dim)) for s in SCALES}


def make_pcs(
    *,
    key: str | None = HMAC_KEY,
    dim: float = 1.0,
    coh_star: float = 0.75,
    r: float = 0.5,
    shard_id: str = "shard-001",
    epoch: int = 1,
    merkle_root: str = "ab" * 32,
    version: str = "0.1",
    **claims: Any,
) -> dict[str, Any]:
    """A PCS that passes every check unless ``claims`` overrides signed/claimed fields.

    ``D_hat``, ``budget`` and ``regime`` default to the values the verifier recomputes.
    """
    n_j = claims.pop("N_j", counts_for(dim))
    dh = round(d_hat(SCALES, [n_j[str(s)] for s in SCALES]), 9)
    pcs: dict[str, Any] = {
        "pcs_id": compute_pcs_id(merkle_root, epoch, shard_id),
        "schema": "fractal-lba-kakeya",
        "version": version,
        "shard_id": shard_id,
        "epoch": epoch,
        "attempt": 1,
        "sent_at": "2025-01-01T00:00:00Z",
        "seed": 42,
        "scales": list(SCALES),
        "N_j": n_j,
        "coh_star": coh_star,
        "v_star": [0.0, 1.0, 0.0],
        "D_hat": dh,
        "r": r,
        "regime": regime(dh, coh_star),
        "budget": round(budget(dh, coh_star, r), 9),
        "merkle_root": merkle_root,
        "sig": "",
        "ft": {"outbox_seq": 1, "degraded": False, "fallbacks": [], "clock_skew_ms": 0},
    }
    pcs.update(claims)
    if key is not None:
        pcs["sig"] = sign(pcs, key)
    return pcs


def sign(pcs: dict[str, Any], key: str = HMAC_KEY) -> str:
    payload = signature_payload(
        pcs_id=pcs["pcs_id"],
        merkle_root=pcs["merkle_root"],
        epoch=pcs["epoch"],
        shard_id=pcs["shard_id"],
        D_hat=pcs["D_hat"],
        coh_star=pcs["coh_star"],
        r=pcs["r"],
        budget=pcs["budget"],
    )
    return HmacSigner(parse_hmac_key(key)).sign(payload)


def resign(pcs: dict[str, Any], key: str = HMAC_KEY, **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(pcs)
    out.update(changes)
    out["sig"] = sign(out, key)
    return out


def body(pcs: dict[str, Any]) -> bytes:
    return json.dumps(pcs).encode()


JSON = {"content-type": "application/json"}


# --- test doubles around real parts ------------------------------------------------------


class CountingStore:
    """Wraps a real store and counts calls (proves what never reaches the store)."""

    def __init__(self, inner: DedupStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.gets = 0
        self.puts = 0

    async def open(self) -> None:
        await self.inner.open()

    async def get(self, tenant_id: str, pcs_id: str) -> StoredOutcome | None:
        self.gets += 1
        return await self.inner.get(tenant_id, pcs_id)

    async def put_if_absent(
        self, tenant_id: str, pcs_id: str, outcome: StoredOutcome, ttl_s: float
    ) -> StoredOutcome:
        self.puts += 1
        return await self.inner.put_if_absent(tenant_id, pcs_id, outcome, ttl_s)

    async def ping(self) -> None:
        await self.inner.ping()

    async def purge_expired(self, limit: int | None = None) -> int:
        return await self.inner.purge_expired(limit)

    async def close(self) -> None:
        await self.inner.close()


class _NoFsyncs:
    fsyncs = 0


class ListAudit:
    """In-memory AuditLog for logic tests (the WORM log has its own tests)."""

    stats = _NoFsyncs()

    def __init__(self, entries: list[AuditEntry] | None = None) -> None:
        self.entries: list[AuditEntry] = entries if entries is not None else []
        self.fail = False

    async def start(self) -> None:
        return None

    async def append(self, entry: AuditEntry) -> AuditEntry:
        if self.fail:
            raise AuditError("audit disk full (test)")
        self.entries.append(entry)
        return entry

    def find_requests(self, request_ids: Set[str], since: float) -> set[str]:
        return {e.request_id for e in self.entries if e.request_id in request_ids}

    def check_writable(self) -> None:
        if self.fail:
            raise AuditError("audit disk full (test)")

    async def close(self) -> None:
        return None

    def by_request(self, request_id: str) -> list[AuditEntry]:
        return [e for e in self.entries if e.request_id == request_id]


# --- real server processes -----------------------------------------------------------------


class ServerProcess:
    """``flk serve`` as a child process on a free port; only this PID is ever signalled."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, *, workers: int = 1):
        self.data_dir = data_dir
        self.port = free_port()
        self.workers = workers
        self.env = {
            **os.environ,
            "DATA_DIR": str(data_dir),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PCS_HMAC_KEY": HMAC_KEY,
            "LOG_LEVEL": "INFO",
            **(env or {}),
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 -- the child owns it for its life
        self.proc = subprocess.Popen(
            [str(FLK), "serve", "--workers", str(self.workers)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.logs()}")
            try:
                return httpx.get(self.url + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=timeout, what="server /health")

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL after a deadline; group = this server's workers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
