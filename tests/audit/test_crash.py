"""Crash recovery: kill -9 a writer process mid-stream, restart, verify; torn lines recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from audit_helpers import T0, make_entry, rewrite, segment_paths
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.anchors import read_ledger
from fractal_lba.audit.errors import AuditVerifyError
from fractal_lba.audit.integrity import verify_log
from fractal_lba.audit.worm import WormLog, load_or_create_audit_key
from fractal_lba.cli import main
from fractal_lba.contract.keys import public_b64
from testkit import FakeClock

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from audit_helpers import make_entry
    from fractal_lba.audit.worm import WormLog, load_or_create_audit_key

    async def run() -> None:
        log = WormLog(Path(sys.argv[1]), signing_key=load_or_create_audit_key(Path(sys.argv[2])),
                      maintenance_interval=None, max_segment_bytes=200_000)
        await log.start()
        i = 0
        while True:
            await asyncio.gather(*(log.append(make_entry(i + j)) for j in range(50)))
            i += 50

    asyncio.run(run())
    """
)


def _count_lines(base: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in segment_paths(base))


@pytest.mark.anyio
async def test_kill_9_then_recover_and_verify(tmp_path: Path) -> None:
    base, keyfile = tmp_path / "worm", tmp_path / "audit.key"
    key = load_or_create_audit_key(keyfile)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(base), str(keyfile), str(Path(__file__).parent)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while _count_lines(base) < 2000 if base.exists() else True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "child wrote too little"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    open_seg = segment_paths(base)[-1]
    rel = open_seg.relative_to(base).as_posix()
    sealed = rel in read_ledger(base / "anchors.log").checkpoints  # killed just after a seal
    data = open_seg.read_bytes()
    if not sealed and (not data or data.endswith(b"\n")):
        # The kill landed between two writes (or right after a rotation created the segment);
        # simulate the torn write it could have hit.
        rewrite(open_seg, data + b'{"D_hat":1.41,"budget":0.4')
    torn_len = len(open_seg.read_bytes()) - open_seg.read_bytes().rfind(b"\n") - 1
    before = _count_lines(base)

    log = WormLog(base, signing_key=key, maintenance_interval=None)
    await log.start()
    assert log.recovery is not None and log.recovery.torn_bytes == torn_len
    after_entry = await log.append(make_entry(10**6))
    await log.close()

    led = read_ledger(base / "anchors.log")
    assert led.anchored == set(led.checkpoints)  # anything sealed but unanchored was re-anchored
    if not sealed:
        rec = next(r for _, r in led.recoveries if r["segment"] == rel)
        assert rec["length"] == torn_len and rec["segment"] == rel
        assert (base / rec["sidecar"]).stat().st_size == torn_len
    rep = verify_log(base, key.public_key())
    assert rep.entries == before + 1 and rep.recoveries == len(led.recoveries) >= (
        0 if sealed else 1
    )
    last_line = open_seg.read_bytes().split(b"\n")[-2]
    assert after_entry.prev_hash == json.loads(last_line)["entry_hash"]
    res = CliRunner().invoke(
        main, ["worm", "verify", "--base", str(base), "--pubkey", public_b64(key.public_key())]
    )
    assert res.exit_code == 0, res.output
    assert f"{len(led.recoveries)} crash recoveries" in res.output


@pytest.mark.anyio
async def test_torn_tail_is_moved_aside_not_dropped(tmp_path: Path) -> None:
    key, clock = Ed25519PrivateKey.generate(), FakeClock(T0)
    base = tmp_path / "worm"
    log = WormLog(
        base, signing_key=key, clock=clock, maintenance_interval=None, seal_on_close=False
    )
    await log.start()
    for i in range(3):
        await log.append(make_entry(i))
    await log.close()
    seg = segment_paths(base)[0]
    torn = b'{"D_hat":1.41,"budget":0.4'
    rewrite(seg, seg.read_bytes() + torn)
    warnings = verify_log(base, key.public_key()).warnings  # open segment: only a warning
    assert any("incomplete line" in w for w in warnings)
    log2 = WormLog(base, signing_key=key, clock=clock, maintenance_interval=None)
    await log2.start()
    await log2.close()
    side = base / (seg.relative_to(base).as_posix() + ".torn")
    assert side.read_bytes() == torn
    rep = verify_log(base, key.public_key())
    assert rep.entries == 3 and rep.recoveries == 1
    side.unlink()  # destroying the evidence is itself detected
    with pytest.raises(AuditVerifyError, match="sidecar"):
        verify_log(base, key.public_key())
