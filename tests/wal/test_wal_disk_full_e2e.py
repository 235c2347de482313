"""Issue 10 item 1, end to end: the inbox WAL on a real tmpfs that fills up under load.

Load until ``wal_unavailable``, give the space back (remount bigger), keep loading, kill -9
under load, restart: every admitted request is processed exactly once and nothing that was
acknowledged is missing from the WAL (a partial record left by the failed append used to be
taken for the torn tail on restart, and every record behind it was cut away).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import JSON, SUBMIT, ServerProcess
from wal_e2e import Ledger, audit_by_request, load, wal_admits

from testkit import tmpfs, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def started() -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for s in servers:
        s.kill()


def ready(server: ServerProcess) -> bool:
    try:
        return httpx.get(server.url + "/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_full_wal_disk_then_space_returns_then_kill_9_loses_nothing(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    with tmpfs(data / "wal", "3m") as fs:
        fs.fill(leave=96 * 1024)
        server = ServerProcess(data)
        started.append(server)
        server.start()

        full = Ledger()
        for _ in range(40):
            load(server.url, full, n=80)
            if full.errors.get("wal_unavailable", 0) >= 20:
                break
        assert full.errors.get("wal_unavailable", 0) >= 20, (full.statuses, full.errors)
        assert set(full.errors) == {"wal_unavailable"}, full.errors

        fs.remount("60m")
        after = Ledger()
        load(server.url, after, n=300)
        assert after.statuses == {200: 300}, (after.statuses, after.errors)

        inflight = Ledger()
        stop = threading.Event()
        loader = threading.Thread(
            target=load, args=(server.url, inflight), kwargs={"n": 5000, "stop": stop}
        )
        loader.start()
        try:
            wait_until(lambda: len(inflight.acked) >= 100, timeout=60, what="load under way")
            server.kill()
        finally:
            stop.set()
            loader.join(timeout=60)

        restarted = ServerProcess(data)
        started.append(restarted)
        restarted.start()
        wait_until(lambda: ready(restarted), timeout=60, what="replay finished (/ready)")
        acked = {**full.acked, **after.acked, **inflight.acked}
        sample = list(acked.values())[:: max(1, len(acked) // 20)]
        with httpx.Client(base_url=restarted.url, timeout=15) as client:
            for content, status in sample:
                again = client.post(SUBMIT, content=content, headers=JSON)
                assert again.status_code == status
                assert again.headers.get("idempotent-replayed") == "true"
        restarted.stop()

        admits = wal_admits(data / "wal")
        audit = audit_by_request(data / "audit")
        missing = sorted(set(acked) - set(admits))
        assert not missing, f"{len(missing)} acknowledged requests are gone from the WAL"
        unaudited = sorted(rid for rid in admits if len(audit.get(rid, [])) != 1)
        assert not unaudited, (
            f"{len(unaudited)} admitted requests without exactly one audit entry, e.g. "
            f"{[(r, len(audit.get(r, []))) for r in unaudited[:5]]}"
        )
        resubmits = {rid for rid, entries in audit.items() if rid not in admits}
        assert not resubmits, "audit entries for requests the WAL never admitted"
