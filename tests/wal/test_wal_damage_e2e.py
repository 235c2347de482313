"""Issue 10 item 2 end to end: a flipped byte half-way through the active inbox segment of a
stopped server stops startup with one line (segment + offset); ``flk wal check`` and
``flk wal status`` report it; ``flk wal salvage`` copies the intact records out, and the
restarted server finishes the pending requests: each admitted request audited once."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import FLK, JSON, SUBMIT, ServerProcess
from wal_e2e import audit_by_request, unique_body, wal_admits

from fractal_lba.wal import WalLog
from testkit import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def started() -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for s in servers:
        s.kill()


def flk(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLK), "wal", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_mid_segment_damage_stops_startup_then_salvage_and_replay_finish_the_work(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    crashing = ServerProcess(data, {"FLK_FAILPOINTS": "inbox.after_admit=40*off->crash"})
    started.append(crashing)
    crashing.start()
    with httpx.Client(base_url=crashing.url, timeout=10) as client:
        for _ in range(40):
            assert client.post(SUBMIT, content=unique_body(), headers=JSON).status_code == 200
        with pytest.raises(httpx.TransportError):
            client.post(SUBMIT, content=unique_body(), headers=JSON)
    assert crashing.wait_exit() == -9
    admitted = wal_admits(data / "wal")
    assert len(admitted) == 41

    [seg] = WalLog(data / "wal" / "inbox-0").segments()
    raw = bytearray(seg.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    seg.write_bytes(bytes(raw))

    refused = ServerProcess(data)
    started.append(refused)
    refused.start(wait=False)
    assert refused.wait_exit(timeout=60) != 0
    out = refused.logs()
    assert "Traceback" not in out
    [line] = [ln for ln in out.splitlines() if '"CRITICAL"' in ln]
    assert "startup failed" in line
    assert seg.name in line and "at byte" in line

    checked = flk("check", data=data)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert seg.name in checked.stdout and "corrupt at byte" in checked.stdout
    status = flk("status", data=data)
    assert status.returncode == 0 and "DAMAGED" in status.stdout

    salvaged = flk("salvage", data=data)
    assert salvaged.returncode == 0, salvaged.stderr
    assert "recovered" in salvaged.stdout and "lost lsns" in salvaged.stdout
    assert (seg.parent / (seg.name + ".damaged")).exists()
    assert flk("check", data=data).returncode == 0

    restarted = ServerProcess(data)
    started.append(restarted)
    restarted.start()

    def ready() -> bool:
        return httpx.get(restarted.url + "/ready", timeout=5).status_code == 200

    wait_until(ready, timeout=60, what="replay finished")
    restarted.stop()
    audit = audit_by_request(data / "audit")
    survivors = wal_admits(data / "wal")
    assert len(survivors) >= len(admitted) - 1  # one flipped byte costs one record at most
    assert all(len(audit.get(rid, [])) == 1 for rid in survivors), {
        rid: len(audit.get(rid, [])) for rid in survivors if len(audit.get(rid, [])) != 1
    }
