"""The audit log on a real full disk (issue 10 item 3): a server whose WORM_BASE_DIR is a 1 MiB
tmpfs answers 503 ``audit_unavailable`` while it is full, /ready names the audit log, and when
the tmpfs is remounted larger the server recovers by itself: /ready turns 200, the deferred
backlog drains, every request ends with exactly one audit entry and ``flk worm verify`` passes.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import httpx
from server_helpers import FLK, JSON, ServerProcess, body, make_pcs

from fractal_lba.audit.segments import list_segments
from testkit import tmpfs, wait_until

REQUESTS_WHILE_FULL = 20


def _submit(client: httpx.Client, epoch: int) -> httpx.Response:
    return client.post("/v1/pcs/submit", content=body(make_pcs(epoch=epoch)), headers=JSON)


def _entries(base: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for seg in list_segments(base)
        for line in (base / seg.rel).read_bytes().split(b"\n")[:-1]
    ]


def test_full_audit_disk_recovers_without_a_restart(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "auditfs", "1m") as fs:
        audit_dir = fs.path / "audit"
        server = ServerProcess(tmp_path / "data", {"WORM_BASE_DIR": str(audit_dir)})
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                assert _submit(client, 1).status_code == 200
                assert client.get("/ready").status_code == 200
                fs.fill()
                ready = client.get("/ready")
                assert ready.status_code == 503 and "audit" in ready.json()["down"], ready.text
                # The open segment's last page may still take a few lines (tmpfs allocates
                # pages): the first 503 comes within a page's worth of entries.
                epoch = 2
                while (resp := _submit(client, epoch)).status_code == 200:
                    epoch += 1
                    assert epoch < 20, "appends kept succeeding on a full disk"
                first_503 = epoch
                for epoch in range(first_503, first_503 + REQUESTS_WHILE_FULL):
                    resp = resp if epoch == first_503 else _submit(client, epoch)
                    assert resp.status_code == 503, resp.text
                    assert resp.json()["error"] == "audit_unavailable"
                    assert resp.headers["retry-after"]
                deferred = range(first_503, first_503 + REQUESTS_WHILE_FULL)
                assert client.get("/ready").json()["deferred"] == REQUESTS_WHILE_FULL

                fs.remount(size="20m")  # space returns; nobody restarts anything

                def recovered() -> bool:
                    r = client.get("/ready")
                    return r.status_code == 200 and r.json()["deferred"] == 0

                wait_until(recovered, timeout=30, what="/ready 200 with the backlog drained")
                assert _submit(client, 100).status_code == 200
                for epoch in deferred:  # the clients' retries get the replayed outcome
                    resp = _submit(client, epoch)
                    assert resp.status_code == 200, resp.text
                    assert resp.headers["idempotent-replayed"] == "true"
        finally:
            server.stop()
        entries = _entries(audit_dir)
        per_request = Counter(str(e["request_id"]) for e in entries)
        assert per_request and max(per_request.values()) == 1  # nobody audited twice
        outcomes = Counter(str(e["verify_outcome"]) for e in entries)
        assert outcomes == {
            "accepted": first_503 + REQUESTS_WHILE_FULL,
            "duplicate": REQUESTS_WHILE_FULL,
        }
        res = subprocess.run(
            [str(FLK), "worm", "verify", "--base", str(audit_dir)],
            capture_output=True,
            text=True,
            env={**server.env},
        )
        assert res.returncode == 0, res.stdout + res.stderr
