"""Issue 10 item 4 (WAL half) and item 8, against a real ``flk serve``.

``/ready`` must say what actually fails to append: on a full WAL disk it used to answer 200
(its probe wrote a 0-byte file) while every submit was ``wal_unavailable``. When space
returns it must become ready again by itself, without a submit to clear anything (a load
balancer sends none to an unready instance). ``flk wal status`` must show 0 pending once
every request was answered (the last outcome marker used to wait for the next batch).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import FLK, JSON, SUBMIT, ServerProcess
from wal_e2e import unique_body

from testkit import tmpfs, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def started() -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for s in servers:
        s.kill()


def test_ready_names_the_wal_on_a_full_disk_and_recovers_when_space_returns(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    with tmpfs(data / "wal", "2m") as fs:
        server = ServerProcess(data)
        started.append(server)
        server.start()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/ready").status_code == 200
            fs.fill(leave=0)
            statuses = set()
            for _ in range(20):  # the segment's last page takes a few more records
                statuses.add(client.post(SUBMIT, content=unique_body(), headers=JSON).status_code)
            assert 503 in statuses
            ready = client.get("/ready")
            assert ready.status_code == 503, ready.text
            assert "wal" in ready.json()["down"]
            assert "No space left" in ready.json()["checks"]["wal"]
            fs.remount("16m")
            wait_until(lambda: client.get("/ready").status_code == 200, what="ready again")
            assert client.post(SUBMIT, content=unique_body(), headers=JSON).status_code == 200
        server.stop()


def test_status_shows_nothing_pending_once_every_request_was_answered(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data)
    started.append(server)
    server.start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(5):
            assert client.post(SUBMIT, content=unique_body(), headers=JSON).status_code == 200

    def status() -> str:
        done = subprocess.run(
            [str(FLK), "wal", "status", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    wait_until(lambda: "10 records, 0 pending" in status(), timeout=10, what="0 pending")
    server.stop()
