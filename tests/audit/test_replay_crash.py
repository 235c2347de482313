"""Issue 10 item 5: a crash during orphan replay never gets a request audited twice.

A dead worker left admits without outcome in ``inbox-1``. A server starts (worker 0), adopts
that directory and replays it into its own audit chain; a real ``kill -9`` hits it in the
crash window (entry written, outcome marker not yet). The next start adopts ``inbox-1``
again: the requests already audited must only get their markers, although their entries are
in worker 0's chain, not in the dead worker's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
from server_helpers import FLK, ServerProcess, body, make_pcs

from fractal_lba.audit.index import audit_chains
from fractal_lba.audit.segments import list_segments
from fractal_lba.server.inbox import Admit, encode_record, pending_admits
from fractal_lba.wal import WalLog

PENDING = 300
CRASH_AFTER = 100  # replayed requests audited before the kill (plus those in flight)


def _entries(audit_root: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for chain in audit_chains(audit_root)
        for seg in list_segments(chain)
        for line in (chain / seg.rel).read_bytes().split(b"\n")[:-1]
    ]


def test_kill_9_during_orphan_replay_audits_every_request_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    dead = data / "wal" / "inbox-1"
    now = time.time()
    with WalLog(dead) as wal:
        wal.append(
            [
                encode_record(Admit(f"dead-{i}", "default", now, body(make_pcs(epoch=i + 1))))
                for i in range(PENDING)
            ]
        )

    crashing = ServerProcess(
        data, {"FLK_FAILPOINTS": f"replay.after_audit={CRASH_AFTER}*off->crash"}
    )
    crashing.start(wait=False)
    assert crashing.wait_exit(timeout=120) == -signal.SIGKILL, crashing.logs()
    audited_before = Counter(str(e["request_id"]) for e in _entries(data / "audit"))
    assert len(audited_before) > CRASH_AFTER  # the kill landed during the orphan's replay
    with WalLog(dead) as wal:
        assert len(pending_admits(wal.iter_records())) > PENDING - len(audited_before)

    server = ServerProcess(data)
    server.start()  # startup replay is done before /health answers
    try:
        assert httpx.get(server.url + "/ready", timeout=10).json()["deferred"] == 0
    finally:
        server.stop()

    per_request = Counter(str(e["request_id"]) for e in _entries(data / "audit"))
    assert set(per_request) == {f"dead-{i}" for i in range(PENDING)}
    twice = sorted(rid for rid, n in per_request.items() if n > 1)
    assert not twice, f"{len(twice)} requests audited twice, e.g. {twice[:3]}"
    with WalLog(dead) as wal:
        assert pending_admits(wal.iter_records()) == []
    for chain in audit_chains(data / "audit"):
        res = subprocess.run(
            [str(FLK), "worm", "verify", "--base", str(chain)], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stdout + res.stderr
