"""A verifier outage during delivery: a real ``flk serve`` is stopped and started again.

With default settings the agent keeps retrying (one line per retry) and, once the verifier
is back, every PCS is accepted exactly once and nothing is dead-lettered. The outage lasts
``FLK_AGENT_OUTAGE_S`` seconds: 15 in ``make test``, the full 2 minutes in ``make chaos``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from agent_helpers import FLK, sample_rows, write_csv

from fractal_lba.agent import Outbox, build_pcs, load_events, load_signer
from fractal_lba.contract import PCS, encode_pcs
from testkit import wait_until

# The one copy of the real-server helper lives with the verifier tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from server_helpers import HMAC_KEY, SUBMIT, ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

OUTAGE_S = float(os.environ.get("FLK_AGENT_OUTAGE_S", "15"))
COUNT = 50
SHARD = "shard-outage"


def test_a_verifier_outage_during_delivery_dead_letters_nothing(tmp_path: Path) -> None:
    indir = tmp_path / "in"
    indir.mkdir()
    for epoch in range(1, COUNT + 1):
        write_csv(indir / f"events-{epoch:04d}.csv", sample_rows(20, seed=epoch))
    outbox = tmp_path / "outbox"
    server = ServerProcess(tmp_path / "data").start()
    log = tmp_path / "agent.log"
    cmd = [
        FLK, "agent", "run", "--in", str(indir), "--once", "--shard-id", SHARD,
        "--endpoint", server.url + SUBMIT, "--outbox", str(outbox),
    ]  # fmt: skip
    env = {
        **os.environ,
        "FLK_AGENT_KEY": HMAC_KEY,
        "FLK_FAILPOINTS": "agent.after_send=sleep(50)",  # stretch delivery over ~3 s
    }
    with open(log, "wb") as out:
        agent = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: Outbox.read_stats(outbox).acked >= 10, timeout=60, what="10 acks")
        server.stop()  # SIGTERM, as a rolling deploy or a reboot stops it
        down_at = time.monotonic()
        assert Outbox.read_stats(outbox).pending > 0  # the outage hit mid-delivery

        def outage_over() -> bool:
            assert agent.poll() is None, log.read_text()  # still retrying, not given up
            assert Outbox.read_stats(outbox).dead == 0
            return time.monotonic() - down_at >= OUTAGE_S

        wait_until(outage_over, timeout=OUTAGE_S + 10, what="the end of the outage")
        assert "retry: " in log.read_text()
        server.start()
        code = agent.wait(timeout=120)
        replays = [
            _replay(server, pcs)
            for pcs in _built(indir)  # the verifier holds one accepted outcome for each
        ]
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        server.stop()
    text = log.read_text()
    assert code == 0, text
    stats = Outbox.read_stats(outbox)
    assert (stats.pending, stats.acked, stats.dead) == (0, COUNT, 0)
    assert Outbox.read_dead_letters(outbox) == []
    assert f"pending: 0  acked: {COUNT}  dead-lettered: 0" in text

    retries = [line for line in text.splitlines() if line.startswith("retry: ")]
    assert any("connection refused (ConnectError)" in line for line in retries)
    assert HMAC_KEY not in text
    for pcs in _built(indir):  # no payload value in any line
        assert pcs.sig not in text and pcs.merkle_root not in text
    for status, replayed, accepted in replays:
        assert status in (200, 202) and replayed == "true" and accepted is True


def _built(indir: Path) -> list[PCS]:
    signer = load_signer("hmac", HMAC_KEY)
    return [
        build_pcs(load_events(p), shard_id=SHARD, epoch=int(p.stem[-4:]), signer=signer)
        for p in sorted(indir.iterdir())
    ]


def _replay(server: ServerProcess, pcs: PCS) -> tuple[int, str | None, object]:
    """Submit ``pcs`` again: a stored outcome answers with ``Idempotent-Replayed``."""
    answer = httpx.post(
        server.url + SUBMIT,
        content=encode_pcs(pcs),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    return (
        answer.status_code,
        answer.headers.get("idempotent-replayed"),
        answer.json().get("accepted"),
    )
