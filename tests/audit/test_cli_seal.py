"""flk worm seal (offline, and via a running server) and flk worm reindex."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_helpers import make_entry, segment_paths
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.anchors import read_ledger
from fractal_lba.audit.integrity import verify_log
from fractal_lba.audit.worm import WormLog, load_or_create_audit_key
from fractal_lba.cli import main


@pytest.mark.anyio
async def test_seal_offline_and_via_server(tmp_path: Path) -> None:
    keyfile = tmp_path / "k.key"
    key = load_or_create_audit_key(keyfile)
    base = tmp_path / "worm"
    log = WormLog(base, signing_key=key, maintenance_interval=0.05, seal_on_close=False)
    await log.start()
    await log.append(make_entry(1))
    args = ["worm", "seal", "--base", str(base), "--key-file", str(keyfile), "--timeout", "20"]
    res = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert res.exit_code == 0 and "sealed by the running server" in res.output, res.output
    assert len(read_ledger(base / "anchors.log").checkpoints) == 1
    await log.append(make_entry(2))
    await log.close()  # leaves the second segment open
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and res.output.startswith("sealed: "), res.output
    assert len(read_ledger(base / "anchors.log").checkpoints) == 2
    assert verify_log(base, key.public_key()).open_segment is None


@pytest.mark.anyio
async def test_reindex_cli(make_log: Callable[..., WormLog], key: Ed25519PrivateKey) -> None:
    log = make_log()
    await log.start()
    for i in range(4):
        await log.append(make_entry(i))
    res = CliRunner().invoke(main, ["worm", "reindex", "--base", str(log.base_dir)])
    assert res.exit_code == 2 and "running server" in res.output  # locked by the writer
    await log.close()
    res = CliRunner().invoke(main, ["worm", "reindex", "--base", str(log.base_dir)])
    assert res.exit_code == 0 and "indexed 4 entries" in res.output
    assert len(segment_paths(log.base_dir)) == 1
