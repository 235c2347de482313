"""Real ``flk serve`` processes: Redis limiter exact across two replicas, SIGHUP reload,
quota counters across a restart, dedup isolation over the wire."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from server_helpers import ServerProcess, wait_until
from tenancy_helpers import hmac_key, pcs_body, write_toml

pytestmark = pytest.mark.slow


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for s in started:
        s.stop()


def post(url: str, body: bytes, tenant: str) -> httpx.Response:
    headers = {"content-type": "application/json", "x-tenant-id": tenant}
    return httpx.post(url + "/v1/pcs/submit", content=body, headers=headers, timeout=10)


@pytest.mark.redis
def test_redis_limiter_is_exact_across_two_servers(
    tmp_path: Path, redis_url: str, namespace: str, servers: list[ServerProcess]
) -> None:
    burst = 10
    key, other = hmac_key(), hmac_key()
    path = write_toml(tmp_path / "t.toml", [
        {"id": "a", "token_rate": 0.001, "burst": burst,
         "keys": [{"id": "k", "alg": "hmac", "key": key}]},
        {"id": "b", "keys": [{"id": "k", "alg": "hmac", "key": other}]},
    ])  # fmt: skip
    env = {
        "MULTI_TENANT": "true", "TENANTS_FILE": str(path), "RATE_LIMIT_BACKEND": "redis",
        "DEDUP_BACKEND": "redis", "REDIS_URL": redis_url, "DEDUP_NAMESPACE": namespace,
    }  # fmt: skip
    for name in ("one", "two"):
        servers.append(ServerProcess(tmp_path / name, env).start())
    urls = [s.url for s in servers]
    jobs = [(urls[i % 2], pcs_body(key, epoch=i)) for i in range(3 * burst)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(lambda j: post(j[0], j[1], "a").status_code, jobs))
    assert sorted(codes) == [200] * burst + [429] * (2 * burst)
    per_server = [sum(c == 200 for c in codes[i::2]) for i in (0, 1)]
    assert sum(per_server) == burst
    assert post(urls[1], pcs_body(other, epoch=1), "b").status_code == 200
    assert post(urls[0], pcs_body(key, epoch=99), "a").status_code == 429


def test_sighup_reloads_the_tenants_file(tmp_path: Path, servers: list[ServerProcess]) -> None:
    a, b = hmac_key(), hmac_key()
    path = write_toml(
        tmp_path / "t.toml", [{"id": "a", "keys": [{"id": "k", "alg": "hmac", "key": a}]}]
    )
    server = ServerProcess(tmp_path / "srv", {"MULTI_TENANT": "true", "TENANTS_FILE": str(path)})
    servers.append(server.start())
    assert post(server.url, pcs_body(b, epoch=1), "b").status_code == 401
    write_toml(path, [
        {"id": "a", "keys": [{"id": "k", "alg": "hmac", "key": a}]},
        {"id": "b", "keys": [{"id": "k", "alg": "hmac", "key": b}]},
    ])  # fmt: skip
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGHUP)  # only the server this test started
    epochs = iter(range(2, 10_000))
    wait_until(lambda: post(server.url, pcs_body(b, epoch=next(epochs)), "b").status_code == 200,
               timeout=20, what="tenant b after SIGHUP")  # fmt: skip
    # Same pcs_id for a and b over the wire: two independent records.
    ra, rb = (
        post(server.url, pcs_body(a, epoch=5000), "a"),
        post(server.url, pcs_body(b, epoch=5000), "b"),
    )
    assert ra.status_code == rb.status_code == 200
    assert "idempotent-replayed" not in ra.headers and "idempotent-replayed" not in rb.headers
    path.write_text(path.read_text().replace('id = "b"', 'id = "a"'))  # duplicate id
    os.kill(server.proc.pid, signal.SIGHUP)
    wait_until(lambda: "tenant reload failed" in server.logs(), timeout=20, what="reload error")
    line = next(x for x in server.logs().splitlines() if "tenant reload failed" in x)
    assert "duplicate tenant id" in line and a not in line and b not in line
    assert post(server.url, pcs_body(b, epoch=6000), "b").status_code == 200  # old config kept
    assert server.proc.poll() is None


def test_quota_counters_survive_a_server_restart(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    key = hmac_key()
    path = write_toml(tmp_path / "t.toml", [
        {"id": "a", "daily_quota": 3, "keys": [{"id": "k", "alg": "hmac", "key": key}]},
    ])  # fmt: skip
    env = {"MULTI_TENANT": "true", "TENANTS_FILE": str(path), "ADMIN_TOKEN": "t0ken"}
    server = ServerProcess(tmp_path / "srv", env)
    servers.append(server.start())
    assert [post(server.url, pcs_body(key, epoch=i), "a").status_code for i in range(2)] == [
        200
    ] * 2
    server.stop()  # graceful: pending counts are flushed to DATA_DIR/quota.sqlite3
    server.start()
    codes = [post(server.url, pcs_body(key, epoch=10 + i), "a").status_code for i in range(2)]
    assert codes == [200, 429]
    usage = httpx.get(server.url + "/v1/tenants/a/usage",
                      headers={"authorization": "Bearer t0ken"}, timeout=5).json()  # fmt: skip
    assert usage["daily_quota"]["used"] == 3


def test_admin_reload_reaches_every_worker(tmp_path: Path, servers: list[ServerProcess]) -> None:
    """With --workers 2 the worker that validated the file asks the supervisor for a rolling
    restart; afterwards every worker serves the new tenant."""
    a, b = hmac_key(), hmac_key()
    path = write_toml(
        tmp_path / "t.toml", [{"id": "a", "keys": [{"id": "k", "alg": "hmac", "key": a}]}]
    )
    env = {"MULTI_TENANT": "true", "TENANTS_FILE": str(path), "ADMIN_TOKEN": "t0ken"}
    server = ServerProcess(tmp_path / "srv", env, workers=2)
    servers.append(server.start())
    write_toml(path, [
        {"id": "a", "keys": [{"id": "k", "alg": "hmac", "key": a}]},
        {"id": "b", "keys": [{"id": "k", "alg": "hmac", "key": b}]},
    ])  # fmt: skip
    resp = httpx.post(server.url + "/v1/admin/reload",
                      headers={"authorization": "Bearer t0ken"}, timeout=10)  # fmt: skip
    assert resp.status_code == 200
    assert resp.json() == {"reloaded": True, "tenants": 2, "workers": "rolling restart"}
    epochs = iter(range(1, 100_000))
    streak = [0]

    def all_workers_know_b() -> bool:
        try:
            ok = post(server.url, pcs_body(b, epoch=next(epochs)), "b").status_code == 200
        except httpx.HTTPError:
            ok = False
        streak[0] = streak[0] + 1 if ok else 0
        return streak[0] >= 30

    wait_until(all_workers_know_b, timeout=60, what="every worker serving tenant b")
    assert server.proc is not None and server.proc.poll() is None
