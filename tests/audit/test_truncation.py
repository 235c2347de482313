"""Issue 10 item 6: cutting the end of a stopped server's open segment is never silent.

``flk worm verify`` on the stopped directory names the gap (the lineage index recorded more
durable lines than the file holds); the next start logs it as an error with segment, offset
and the number of lost lines, records it in the anchors file, and verify keeps reporting it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_helpers import lines_of, make_entry, rewrite, segment_paths
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.anchors import read_ledger
from fractal_lba.audit.errors import AuditVerifyError
from fractal_lba.audit.integrity import verify_log
from fractal_lba.audit.worm import WormLog
from fractal_lba.cli import main
from fractal_lba.contract.keys import public_b64

pytestmark = pytest.mark.anyio

WRITTEN, CUT = 60, 40


async def _stopped_with_open_segment(make_log: Callable[..., WormLog]) -> Path:
    """A log whose writer stopped without sealing (as after kill -9): one open segment."""
    log = make_log(seal_on_close=False)
    await log.start()
    for i in range(WRITTEN):
        await log.append(make_entry(i))
    await log.close()
    [seg] = segment_paths(log.base_dir)
    return seg


@pytest.mark.parametrize("torn", [False, True], ids=["whole-lines", "mid-line"])
async def test_cut_open_segment_is_reported_by_verify_and_by_recovery(
    make_log: Callable[..., WormLog],
    key: Ed25519PrivateKey,
    caplog: pytest.LogCaptureFixture,
    torn: bool,
) -> None:
    seg = await _stopped_with_open_segment(make_log)
    base = seg.parents[3]
    kept = lines_of(seg)[: WRITTEN - CUT]
    cut = b"".join(line + b"\n" for line in kept)
    rewrite(seg, cut + (lines_of(seg)[WRITTEN - CUT][:50] if torn else b""))

    with pytest.raises(AuditVerifyError, match=f"{CUT} entries missing") as exc:
        verify_log(base, key.public_key())
    assert exc.value.segment == seg.relative_to(base).as_posix()
    assert exc.value.line == WRITTEN - CUT + 1

    caplog.set_level(logging.WARNING, logger="fractal_lba.audit")
    log = make_log()
    await log.start()
    assert log.recovery is not None and log.recovery.missing_lines == CUT
    await log.close()
    [record] = [r for r in caplog.records if getattr(r, "missing_lines", None) is not None]
    assert record.levelno == logging.ERROR
    assert record.__dict__["segment"] == seg.relative_to(base).as_posix()
    assert record.__dict__["offset"] == len(cut) and record.__dict__["missing_lines"] == CUT
    [(_, rec)] = read_ledger(base / "anchors.log").truncations
    assert (rec["lines"], rec["expected_lines"]) == (WRITTEN - CUT, WRITTEN)

    # Sealed and restarted, the loss stays on record: verify fails and says what happened.
    res = CliRunner().invoke(
        main, ["worm", "verify", "--base", str(base), "--pubkey", public_b64(key.public_key())]
    )
    assert res.exit_code == 1
    assert f"{CUT} durable entries were lost" in res.output


async def test_a_torn_write_of_a_crash_alone_is_not_a_loss(
    make_log: Callable[..., WormLog], key: Ed25519PrivateKey
) -> None:
    seg = await _stopped_with_open_segment(make_log)
    rewrite(seg, seg.read_bytes() + b'{"D_hat":1.41,"bud')  # a write the crash interrupted
    verify_log(seg.parents[3], key.public_key())  # intact (with a warning)
    log = make_log()
    await log.start()
    assert log.recovery is not None and log.recovery.missing_lines == 0
    assert log.recovery.torn_bytes > 0
    await log.close()
    assert verify_log(seg.parents[3], key.public_key()).entries == WRITTEN
