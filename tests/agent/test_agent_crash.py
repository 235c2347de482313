"""kill -9 of a delivering agent: nothing queued is lost, nothing is acked twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from agent_helpers import FLK, Receiver, sample_rows, write_csv

from fractal_lba.agent import Outbox, build_pcs, load_events, load_signer
from fractal_lba.wal.log import SUFFIX
from fractal_lba.wal.records import scan
from testkit import wait_until

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
            wait_until(lambda: rx.count > HOLD_AFTER, timeout=60, what="the held request")
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
    assert Outbox.read_dead_letters(outbox) == []


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
            wait_until(lambda: rx.count == 2, what="the first two PCS")
            tmp = tmp_path / "events-003.tmp"
            write_csv(tmp, sample_rows(10, seed=3))
            tmp.rename(indir / "events-003.csv")
            wait_until(lambda: rx.count == 3, what="the PCS of the new file")
            wait_until(lambda: Outbox.read_stats(outbox).acked == 3, what="the third ack")
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, err
    assert "pending: 0  acked: 3  dead-lettered: 0" in out
    assert "warning: skipped" in err and "events-009.csv:2" in err
    assert sorted(json.loads(s.body)["epoch"] for s in rx.seen) == [1, 2, 3]


# -- kill -9 in the middle of a requeue or a drop: each entry ends in exactly one place --------
DEAD = 6


def _dead_outbox(path: Path) -> dict[int, str]:
    """An outbox holding DEAD dead letters; returns {id: pcs_id}."""
    signer = load_signer("hmac", KEY)
    ids = {}
    with Outbox(path) as ob:
        for epoch in range(1, DEAD + 1):
            pcs = build_pcs(
                load_events(write_csv(path.parent / f"e{epoch}.csv", sample_rows(10, epoch))),
                shard_id="s",
                epoch=epoch,
                signer=signer,
            )
            lsn = ob.enqueue(pcs).lsn
            ob.dead_letter(lsn, status=401, error="signature_invalid", attempts=1)
            ids[lsn] = pcs.pcs_id
    return ids


def _where(outbox: Path) -> tuple[set[str], set[str]]:
    """(pending pcs_ids, dead pcs_ids) as a reader sees them, and as the next writer does."""
    dead = {d.pcs_id for d in Outbox.read_dead_letters(outbox)}
    with Outbox(outbox) as ob:
        pending = {e.pcs_id for e in ob.pending()}
        assert {d.pcs_id for d in ob.dead_letters()} == dead
        assert ob.stats().pending == len(pending) == Outbox.read_stats(outbox).pending
    return pending, dead


def _flk_crashing(point: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLK, *args],
        env={**os.environ, "FLK_FAILPOINTS": point},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("point", "requeued"),
    [
        ("wal.before_write=crash", 0),  # nothing durable yet: all still dead letters
        ("wal.after_write=crash", DEAD),  # the records are written: all in the outbox
        ("agent.dlq_requeue_mid=crash", DEAD),  # durable, no file removed yet
        ("agent.dlq_requeue_mid=2*off->crash", DEAD),  # two files removed, four left behind
    ],
)
def test_kill_9_during_requeue_loses_and_doubles_nothing(
    tmp_path: Path, point: str, requeued: int
) -> None:
    outbox = tmp_path / "ob"
    ids = _dead_outbox(outbox)
    proc = _flk_crashing(point, "agent", "dlq", "requeue", "--all", "--outbox", str(outbox))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "requeued" not in proc.stdout + proc.stderr  # nothing reported before it is durable
    pending, dead = _where(outbox)
    assert not pending & dead  # never in both
    assert pending | dead == set(ids.values())  # never in neither
    assert len(pending) == requeued
    assert list((outbox / "dlq").glob(".*")) == []  # no temp files left
    with Receiver() as rx:
        done = subprocess.run(
            [FLK, "agent", "run", "--endpoint", rx.url, "--outbox", str(outbox), "--once"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if requeued == 0:  # the requeue did not happen: do it now
            assert done.returncode == 3
            again = subprocess.run(
                [FLK, "agent", "dlq", "requeue", "--all", "--outbox", str(outbox)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert again.returncode == 0 and f"{DEAD} requeued" in again.stdout
            done = subprocess.run(
                [FLK, "agent", "run", "--endpoint", rx.url, "--outbox", str(outbox), "--once"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert done.returncode == 0, done.stderr
        assert rx.pcs_ids() == Counter(ids.values())  # each delivered exactly once
    assert _where(outbox) == (set(), set())


def test_kill_9_during_drop_leaves_each_letter_dropped_or_kept(tmp_path: Path) -> None:
    outbox = tmp_path / "ob"
    ids = _dead_outbox(outbox)
    victims = sorted(ids)[:3]
    proc = _flk_crashing(
        "agent.dlq_drop_mid=1*off->crash",
        "agent", "dlq", "drop", "--outbox", str(outbox), *map(str, victims),
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL
    pending, dead = _where(outbox)
    assert pending == set()
    assert dead == {ids[i] for i in sorted(ids)[3:]}  # the drop records were durable
    assert sorted(p.name for p in (outbox / "dlq").iterdir()) == [
        f"{i:016d}.json" for i in sorted(ids)[3:]
    ]
