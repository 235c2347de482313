"""Tamper evidence: verify names the first broken entry for every kind of tampering."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_helpers import canonical, lines_of, make_entry, rewrite, segment_paths
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.checkpoint import parse_checkpoint
from fractal_lba.audit.errors import AuditVerifyError
from fractal_lba.audit.integrity import verify_log
from fractal_lba.audit.worm import WormLog
from fractal_lba.cli import main
from fractal_lba.contract.keys import public_b64

N = 30


@pytest.fixture
async def log_dir(make_log: Callable[..., WormLog]) -> Path:
    """Three sealed segments of 10 entries plus an open one with 5."""
    log = make_log(seal_on_close=False)
    await log.start()
    for i in range(N):
        await log.append(make_entry(i))
        if i % 10 == 9:
            await log.seal()
    for i in range(N, N + 5):
        await log.append(make_entry(i))
    await log.close()
    return log.base_dir


def _rel(base: Path, p: Path) -> str:
    return p.relative_to(base).as_posix()


def _broken(base: Path, key: Ed25519PrivateKey) -> AuditVerifyError:
    with pytest.raises(AuditVerifyError) as info:
        verify_log(base, key.public_key())
    return info.value


def _rehash(lines: list[bytes], prev: str) -> list[bytes]:
    out = []
    for raw in lines:
        obj = json.loads(raw)
        obj["prev_hash"] = prev
        body = {k: v for k, v in obj.items() if k != "entry_hash"}
        obj["entry_hash"] = prev = hashlib.sha256(canonical(body)).hexdigest()
        out.append(canonical(obj))
    return out


@pytest.mark.anyio
async def test_intact_log_verifies(log_dir: Path, key: Ed25519PrivateKey) -> None:
    rep = verify_log(log_dir, key.public_key())
    assert rep.entries == N + 5 and rep.sealed_segments == 3 and rep.checkpoints == 3
    assert rep.open_segment == _rel(log_dir, segment_paths(log_dir)[-1])


@pytest.mark.anyio
@pytest.mark.parametrize("seg_index", [1, 3])  # a sealed segment and the open one
async def test_edited_byte(log_dir: Path, key: Ed25519PrivateKey, seg_index: int) -> None:
    seg = segment_paths(log_dir)[seg_index]
    lines = lines_of(seg)
    lines[3] = lines[3].replace(b'"accepted"', b'"escalated"')
    rewrite(seg, b"\n".join(lines) + b"\n")
    err = _broken(log_dir, key)
    assert (err.segment, err.line) == (_rel(log_dir, seg), 4)
    assert "entry_hash" in err.what


@pytest.mark.anyio
async def test_deleted_line(log_dir: Path, key: Ed25519PrivateKey) -> None:
    seg = segment_paths(log_dir)[1]
    lines = lines_of(seg)
    del lines[4]
    rewrite(seg, b"\n".join(lines) + b"\n")
    err = _broken(log_dir, key)
    assert (err.segment, err.line) == (_rel(log_dir, seg), 5)
    assert "prev_hash" in err.what


@pytest.mark.anyio
async def test_reordered_lines(log_dir: Path, key: Ed25519PrivateKey) -> None:
    seg = segment_paths(log_dir)[2]
    lines = lines_of(seg)
    lines[6], lines[7] = lines[7], lines[6]
    rewrite(seg, b"\n".join(lines) + b"\n")
    err = _broken(log_dir, key)
    assert (err.segment, err.line) == (_rel(log_dir, seg), 7)


@pytest.mark.anyio
async def test_truncated_mid_line(log_dir: Path, key: Ed25519PrivateKey) -> None:
    seg = segment_paths(log_dir)[0]
    data = seg.read_bytes()
    rewrite(seg, data[:-40])
    err = _broken(log_dir, key)
    assert (err.segment, err.line) == (_rel(log_dir, seg), 10)
    assert "incomplete" in err.what


@pytest.mark.anyio
async def test_truncated_at_line_boundary(log_dir: Path, key: Ed25519PrivateKey) -> None:
    seg = segment_paths(log_dir)[0]
    lines = lines_of(seg)
    rewrite(seg, b"\n".join(lines[:7]) + b"\n")
    err = _broken(log_dir, key)
    assert (err.segment, err.line) == (_rel(log_dir, seg), 8)
    assert "missing" in err.what


@pytest.mark.anyio
async def test_segment_rewritten_consistently(log_dir: Path, key: Ed25519PrivateKey) -> None:
    seg = segment_paths(log_dir)[1]
    lines = lines_of(seg)
    first_prev = json.loads(lines[0])["prev_hash"]
    lines[2] = lines[2].replace(b'"accepted"', b'"rejected"')
    rewrite(seg, b"\n".join(_rehash(lines, first_prev)) + b"\n")
    err = _broken(log_dir, key)
    assert err.segment == _rel(log_dir, seg) and err.line is None
    assert "Merkle root" in err.what


@pytest.mark.anyio
async def test_non_canonical_line_with_matching_hash(log_dir: Path, key: Ed25519PrivateKey) -> None:
    seg = segment_paths(log_dir)[3]  # the open segment: last line, so no later link breaks
    lines = lines_of(seg)
    obj = json.loads(lines[-1])
    body = {k: v for k, v in obj.items() if k != "entry_hash"}
    loose = json.dumps(body, sort_keys=True)  # spaces: not canonical
    obj["entry_hash"] = hashlib.sha256(loose.encode()).hexdigest()
    lines[-1] = json.dumps(obj, sort_keys=True).encode()
    rewrite(seg, b"\n".join(lines) + b"\n")
    err = _broken(log_dir, key)
    assert (err.segment, err.line) == (_rel(log_dir, seg), 5)
    assert "canonical" in err.what


@pytest.mark.anyio
async def test_deleted_sealed_segment(log_dir: Path, key: Ed25519PrivateKey) -> None:
    seg = segment_paths(log_dir)[1]
    seg.unlink()
    err = _broken(log_dir, key)
    assert err.segment == _rel(log_dir, seg) and "missing" in err.what


@pytest.mark.anyio
async def test_removed_checkpoint(log_dir: Path, key: Ed25519PrivateKey) -> None:
    ledger = log_dir / "anchors.log"
    lines = lines_of(ledger)
    idx = next(i for i, raw in enumerate(lines) if json.loads(raw)["type"] == "checkpoint")
    del lines[idx]
    rewrite(ledger, b"\n".join(lines) + b"\n")
    err = _broken(log_dir, key)
    assert err.segment == "anchors.log" and "previous checkpoint" in err.what


@pytest.mark.anyio
async def test_forged_checkpoint_signature(log_dir: Path, key: Ed25519PrivateKey) -> None:
    ledger = log_dir / "anchors.log"
    lines = lines_of(ledger)
    idx = [i for i, raw in enumerate(lines) if json.loads(raw)["type"] == "checkpoint"][1]
    rec = json.loads(lines[idx])
    cp = parse_checkpoint(rec["note"])
    rec["note"] = rec["note"].replace(f"\n{cp.size}\n", f"\n{cp.size + 1}\n")
    lines[idx] = canonical(rec)
    rewrite(ledger, b"\n".join(lines) + b"\n")
    err = _broken(log_dir, key)
    assert (err.segment, err.line) == ("anchors.log", idx + 1)
    assert "signature" in err.what


@pytest.mark.anyio
async def test_other_key_rejected(log_dir: Path) -> None:
    with pytest.raises(AuditVerifyError, match="signature"):
        verify_log(log_dir, Ed25519PrivateKey.generate().public_key())


@pytest.mark.anyio
async def test_cli_verify_exit_codes(log_dir: Path, key: Ed25519PrivateKey) -> None:
    pub = public_b64(key.public_key())
    runner = CliRunner()
    ok = runner.invoke(main, ["worm", "verify", "--base", str(log_dir), "--pubkey", pub])
    assert ok.exit_code == 0, ok.output
    assert "intact: 35 entries" in ok.output
    seg = segment_paths(log_dir)[2]
    lines = lines_of(seg)
    lines[0] = lines[0].replace(b"t1", b"t2")
    rewrite(seg, b"\n".join(lines) + b"\n")
    bad = runner.invoke(main, ["worm", "verify", "--base", str(log_dir), "--pubkey", pub])
    assert bad.exit_code == 1
    assert f"BROKEN {_rel(log_dir, seg)}:1:" in bad.output
    # a range that excludes the tampered day still verifies the checkpoint chain, and passes
    other = runner.invoke(
        main, ["worm", "verify", "--base", str(log_dir), "--pubkey", pub, "--from", "2025-01-02"]
    )
    assert other.exit_code == 0 and "intact: 0 entries" in other.output
