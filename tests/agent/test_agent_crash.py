"""kill -9 of a delivering agent: nothing queued is lost, nothing is acked twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

from agent_helpers import FLK, Receiver, sample_rows, wait_for, write_csv

from fractal_lba.agent import Outbox, build_pcs, load_events, load_signer
from fractal_lba.wal.log import SUFFIX
from fractal_lba.wal.records import scan

KEY = "crash-test-key"
FILES = 24
HOLD_AFTER = 9


def _records(outbox: Path) -> list[dict[str, object]]:
    out = []
    for seg in sorted(outbox.glob(f"*{SUFFIX}")):
        payloads, _ = scan(seg.read_bytes())
        out.extend(json.loads(p) for p in payloads)
    return out


def test_kill_9_mid_delivery_then_restart(tmp_path: Path) -> None:
    indir = tmp_path / "in"
    indir.mkdir()
    for epoch in range(1, FILES + 1):
        write_csv(indir / f"events-{epoch:03d}.csv", sample_rows(30, seed=epoch))
    signer = load_signer("hmac", KEY)
    expected = {
        build_pcs(load_events(p), shard_id="shard-9", epoch=int(p.stem[-3:]), signer=signer).pcs_id
        for p in indir.iterdir()
    }
    assert len(expected) == FILES
    outbox = tmp_path / "outbox"
    cmd = [
        FLK, "agent", "run", "--in", str(indir), "--shard-id", "shard-9",
        "--outbox", str(outbox), "--once", "--backoff-base", "0.01",
    ]  # fmt: skip
    env = {**os.environ, "FLK_AGENT_KEY": KEY}

    with Receiver() as rx:
        rx.hold_after = HOLD_AFTER  # answer 9, then hold request 10 without answering
        first = subprocess.Popen(
            [*cmd, "--endpoint", rx.url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: rx.count > HOLD_AFTER, timeout=60, what="the held request")
            os.kill(first.pid, signal.SIGKILL)
        finally:
            first.kill()
            first.wait(30)
        assert first.returncode == -signal.SIGKILL
        seen_before = rx.pcs_ids()
        assert 0 < len(seen_before) < FILES  # killed mid-delivery
        mid = Outbox.read_stats(outbox)
        assert mid.pending == FILES - HOLD_AFTER and mid.acked == HOLD_AFTER

        rx.release()
        second = subprocess.run(
            [*cmd, "--endpoint", rx.url], env=env, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 0, second.stderr
        received = rx.pcs_ids()

    assert set(received) == expected  # none lost
    held = [pid for pid, n in received.items() if n > 1]
    assert len(held) == 1 and received[held[0]] == 2  # the unanswered one was re-sent
    with Outbox(outbox) as ob:
        stats = ob.stats()
    assert (stats.pending, stats.acked, stats.dead) == (0, FILES, 0)
    records = _records(outbox)
    entries = Counter(r["pcs_id"] for r in records if r["type"] == "entry")
    acks = Counter(r["lsn"] for r in records if r["type"] == "ack")
    assert set(entries) == expected and max(entries.values()) == 1  # restart queued nothing twice
    assert len(acks) == FILES and max(acks.values()) == 1  # no duplicate acks
    assert not (outbox / "dlq.jsonl").exists()


def test_watch_loop_picks_up_new_files_and_stops_on_sigterm(tmp_path: Path) -> None:
    indir = tmp_path / "in"
    indir.mkdir()
    for epoch in (1, 2):
        write_csv(indir / f"events-{epoch:03d}.csv", sample_rows(10, seed=epoch))
    (indir / "events-009.csv").write_text("timestamp,x,y,z\n1,2,3\n")  # bad: skipped, loop lives
    outbox = tmp_path / "outbox"
    with Receiver() as rx:
        watch = [
            FLK, "agent", "run", "--in", str(indir), "--endpoint", rx.url,
            "--shard-id", "s", "--outbox", str(outbox), "--interval", "0.1",
        ]  # fmt: skip
        proc = subprocess.Popen(
            watch,
            env={**os.environ, "FLK_AGENT_KEY": KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: rx.count == 2, what="the first two PCS")
            tmp = tmp_path / "events-003.tmp"
            write_csv(tmp, sample_rows(10, seed=3))
            tmp.rename(indir / "events-003.csv")
            wait_for(lambda: rx.count == 3, what="the PCS of the new file")
            wait_for(lambda: Outbox.read_stats(outbox).acked == 3, what="the third ack")
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, err
    assert "pending: 0  acked: 3  dead-lettered: 0" in out
    assert "warning: skipped" in err and "events-009.csv:2" in err
    assert sorted(json.loads(s.body)["epoch"] for s in rx.seen) == [1, 2, 3]
