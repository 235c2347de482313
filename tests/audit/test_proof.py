"""Inclusion proofs: built from the log, verified offline, any changed byte fails."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_helpers import make_entry
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.errors import AuditError, CheckpointError
from fractal_lba.audit.proof import build_proofs, check_proof, proof_bytes
from fractal_lba.audit.worm import WormLog
from fractal_lba.cli import main
from fractal_lba.contract.keys import public_b64
from fractal_lba.merkle import ProofError

PCS = hashlib.sha256(b"7").hexdigest()


@pytest.fixture
async def sealed_dir(make_log: Callable[..., WormLog]) -> Path:
    log = make_log()
    await log.start()
    for i in range(13):
        await log.append(make_entry(i))
    await log.close()  # seals
    return log.base_dir


@pytest.mark.anyio
async def test_proof_verifies_offline(sealed_dir: Path, key: Ed25519PrivateKey) -> None:
    (proof,) = build_proofs(sealed_dir, PCS)
    assert proof["leaf_index"] == 7 and proof["tree_size"] == 13
    data = proof_bytes(proof)
    entry = check_proof(data, proof["root"], public_key=key.public_key())
    assert entry["pcs_id"] == PCS and entry["request_id"] == "req-7"
    assert check_proof(data, proof["root"])["pcs_id"] == PCS  # with the embedded vkey


@pytest.mark.anyio
async def test_any_changed_byte_fails(sealed_dir: Path) -> None:
    (proof,) = build_proofs(sealed_dir, PCS)
    data = proof_bytes(proof)
    root = proof["root"]
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises((ProofError, CheckpointError, AuditError)):
            check_proof(bytes(bad), root)


@pytest.mark.anyio
async def test_wrong_root_or_key_fails(sealed_dir: Path) -> None:
    (proof,) = build_proofs(sealed_dir, PCS)
    data = proof_bytes(proof)
    with pytest.raises(ProofError):
        check_proof(data, "00" * 32)
    with pytest.raises(ProofError, match="pinned"):
        check_proof(data, proof["root"], public_key=Ed25519PrivateKey.generate().public_key())


@pytest.mark.anyio
async def test_unsealed_entry_is_named(make_log: Callable[..., WormLog]) -> None:
    log = make_log(seal_on_close=False)
    await log.start()
    await log.append(make_entry(7))
    with pytest.raises(AuditError, match="not sealed yet"):
        build_proofs(log.base_dir, PCS)
    await log.seal()
    assert build_proofs(log.base_dir, PCS)[0]["tree_size"] == 1
    await log.close()


@pytest.mark.anyio
async def test_cli_prove_and_check(
    sealed_dir: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["worm", "prove", PCS, "--base", str(sealed_dir)])
    assert res.exit_code == 0, res.output
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(res.output)
    root = json.loads(res.output)["root"]
    pub = public_b64(key.public_key())
    ok = runner.invoke(
        main, ["worm", "check-proof", str(proof_file), "--root", root, "--pubkey", pub]
    )
    assert ok.exit_code == 0 and ok.output.startswith("valid:"), ok.output
    proof_file.write_text(res.output.replace('"line":8', '"line":9'))
    bad = runner.invoke(main, ["worm", "check-proof", str(proof_file), "--root", root])
    assert bad.exit_code == 1 and bad.output.startswith("INVALID")
