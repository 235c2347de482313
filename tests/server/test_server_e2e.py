"""End to end: the real ``flk serve`` process over HTTP, crash + replay, shared stores."""

from __future__ import annotations

import concurrent.futures
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import JSON, SUBMIT, ServerProcess, body, make_pcs

from fractal_lba.server.inbox import Admit, decode_record
from fractal_lba.wal import scan
from testkit import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def servers() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(data_dir: Path, env: dict[str, str] | None = None, **kw: Any) -> ServerProcess:
        server = ServerProcess(data_dir, env, **kw)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


def audit_entries(audit_dir: Path) -> list[dict[str, Any]]:
    out = []
    for seg in sorted(audit_dir.rglob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*.jsonl")):
        out.extend(json.loads(line) for line in seg.read_text().splitlines() if line.strip())
    return out


def wal_admits(data_dir: Path) -> list[Admit]:
    out: list[Admit] = []
    for seg in sorted((data_dir / "wal").rglob("*.wal")):
        for payload in scan(seg.read_bytes())[0]:
            rec = decode_record(payload)
            if isinstance(rec, Admit):
                out.append(rec)
    return out


def test_real_server_accepts_replays_and_keeps_malformed_bodies(
    tmp_path: Path, servers: Callable[..., ServerProcess]
) -> None:
    server = servers(tmp_path / "data")
    with httpx.Client(base_url=server.url, timeout=10) as c:
        pcs = body(make_pcs())
        first = c.post(SUBMIT, content=pcs, headers=JSON)
        assert first.status_code == 200, first.text
        second = c.post(SUBMIT, content=pcs, headers=JSON)
        assert second.content == first.content and second.headers["idempotent-replayed"] == "true"
        garbage = b"\x00\xffnot json"
        bad = c.post(SUBMIT, content=garbage, headers=JSON)
        assert bad.status_code == 400 and bad.json()["field"] == "body"
        assert garbage in [a.body for a in wal_admits(tmp_path / "data")]
        assert c.get("/ready").status_code == 200
        assert "flk_ingest_total 3.0" in c.get("/metrics").text
    server.stop()
    entries = audit_entries(tmp_path / "data" / "audit")
    assert sorted(e["verify_outcome"] for e in entries) == ["accepted", "duplicate", "rejected"]


def test_kill_9_after_wal_append_is_finished_by_replay(
    tmp_path: Path, servers: Callable[..., ServerProcess]
) -> None:
    data = tmp_path / "data"
    crashing = servers(data, {"FLK_FAILPOINTS": "inbox.after_admit=crash"})
    pcs = make_pcs()
    with pytest.raises(httpx.TransportError):
        httpx.post(crashing.url + SUBMIT, content=body(pcs), headers=JSON, timeout=10)
    assert crashing.wait_exit() == -9
    [admit] = wal_admits(data)
    assert admit.body == body(pcs)
    assert audit_entries(data / "audit") == []

    restarted = servers(data)
    retry = httpx.post(restarted.url + SUBMIT, content=body(pcs), headers=JSON, timeout=10)
    assert retry.status_code == 200
    assert retry.headers["idempotent-replayed"] == "true"  # the outcome came from replay
    restarted.stop()
    entries = audit_entries(data / "audit")
    by_request = {e["request_id"]: e["verify_outcome"] for e in entries}
    assert by_request[admit.request_id] == "accepted"
    assert sorted(by_request.values()) == ["accepted", "duplicate"]


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def shared_backend(
    request: pytest.FixtureRequest, store_url_for: Callable[[str], dict[str, str]], namespace: str
) -> dict[str, str]:
    env = store_url_for(request.param)
    env["DEDUP_NAMESPACE"] = namespace
    return env


def test_two_server_processes_sharing_a_store_store_one_outcome(
    tmp_path: Path, servers: Callable[..., ServerProcess], shared_backend: dict[str, str]
) -> None:
    sqlite = shared_backend["DEDUP_BACKEND"] == "sqlite"
    # sqlite shares DATA_DIR (the database lives there): the second process takes inbox-1 and
    # writes the audit chain audit-1.
    dirs = [tmp_path / "shared"] * 2 if sqlite else [tmp_path / "a", tmp_path / "b"]
    a = servers(dirs[0], shared_backend)
    b = servers(dirs[1], shared_backend)
    for round_ in range(5):
        pcs = body(make_pcs(epoch=round_, shard_id=f"race-{uuid.uuid4().hex[:8]}"))

        def post(url: str, content: bytes = pcs) -> httpx.Response:
            return httpx.post(url + SUBMIT, content=content, headers=JSON, timeout=15)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(post, [a.url, b.url] * 4))
        assert {r.status_code for r in responses} == {200}
        assert len({r.content for r in responses}) == 1
        fresh = [r for r in responses if "idempotent-replayed" not in r.headers]
        assert len(fresh) == 1, [r.headers.get("idempotent-replayed") for r in responses]
    a.stop()
    b.stop()
    if sqlite:
        assert (tmp_path / "shared" / "audit-1").is_dir()
    outcomes = [e["verify_outcome"] for e in audit_entries(tmp_path)]
    assert sorted(outcomes) == ["accepted"] * 5 + ["duplicate"] * 35


def test_two_workers_get_their_own_wal_and_audit_dirs_and_shared_metrics(
    tmp_path: Path, servers: Callable[..., ServerProcess]
) -> None:
    data = tmp_path / "data"
    server = servers(data, workers=2)
    # Ready means one worker answers; the other may still be starting (it takes its inbox
    # directory during startup).
    wait_until(lambda: len(list((data / "wal").glob("inbox-*"))) == 2, what="both workers started")
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for epoch in range(20):
            assert (
                c.post(SUBMIT, content=body(make_pcs(epoch=epoch)), headers=JSON).status_code == 200
            )
        assert "flk_accepted_total 20.0" in c.get("/metrics").text  # summed over workers
    server.stop()
    assert sorted(p.name for p in (data / "wal").iterdir()) == ["inbox-0", "inbox-1"]
    assert len(audit_entries(tmp_path)) == 20


def test_memory_backend_is_refused_with_workers(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", {"DEDUP_BACKEND": "memory"}, workers=2)
    server.start(wait=False)
    assert server.wait_exit() == 2
    out = server.logs()
    assert "error: DEDUP_BACKEND=memory" in out and "Traceback" not in out


def test_lineage_endpoint_spans_every_workers_audit_chain(
    tmp_path: Path, servers: Callable[..., ServerProcess]
) -> None:
    data = tmp_path / "data"
    server = servers(data, {"ADMIN_TOKEN": "adm-token"}, workers=2)
    admin = {"Authorization": "Bearer adm-token"}
    pcs_list = [make_pcs(epoch=epoch) for epoch in range(12)]
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for pcs in pcs_list:  # first-seen, then a duplicate: often on the other worker
            assert c.post(SUBMIT, content=body(pcs), headers=JSON).status_code == 200
        for pcs in pcs_list:
            c.post(SUBMIT, content=body(pcs), headers={**JSON, "Connection": "close"})
        pcs_id = pcs_list[0]["pcs_id"]
        assert c.get(f"/v1/audit/lineage/{pcs_id}").status_code == 401
        assert c.get("/v1/audit/lineage/not-hex", headers=admin).status_code == 400
        chains: set[str] = set()
        for pcs in pcs_list:
            got = c.get(f"/v1/audit/lineage/{pcs['pcs_id']}", headers=admin)
            assert got.status_code == 200, got.text
            entries = got.json()["entries"]
            assert [e["verify_outcome"] for e in entries] == ["accepted", "duplicate"]
            assert {e["tenant_id"] for e in entries} == {"default"}
            assert all(e["policy_version"] and e["verify_params_hash"] for e in entries)
            chains.update(e["chain"] for e in entries)
        other = c.get(f"/v1/audit/lineage/{pcs_id}?tenant_id=other", headers=admin)
        assert other.json()["entries"] == []
    assert chains <= {"audit", "audit-1"}
