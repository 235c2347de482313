"""``flk vrf keygen|prove|verify`` as a user runs them (real subprocesses)."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from pathlib import Path

from fractal_lba.adversarial import vrf

FLK = str(Path(sys.executable).with_name("flk"))
VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "data/vectors/ecvrf_rfc9381.json").read_text("utf-8")
)["vectors"]


def _flk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLK, "vrf", *args], capture_output=True, text=True, timeout=60)


def test_prove_and_verify_reproduce_the_rfc_vector() -> None:
    v = VECTORS[1]
    proved = _flk("prove", "--sk", v["secret_key_seed_hex"], "--alpha", v["alpha_hex"])
    assert proved.returncode == 0, proved.stderr
    assert proved.stdout.strip() == v["pi_hex"]
    checked = _flk("verify", "--pk", v["public_key_hex"], "--alpha", v["alpha_hex"],
                   "--pi", v["pi_hex"])  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == v["beta_hex"]


def test_keygen_file_prove_verify_roundtrip(tmp_path: Path) -> None:
    key_file = tmp_path / "vrf.key"
    gen = _flk("keygen", "--out", str(key_file), "--json")
    assert gen.returncode == 0, gen.stderr
    out = json.loads(gen.stdout)
    assert "secret_key" not in out  # written to the file only
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    sk = bytes.fromhex(key_file.read_text().strip())
    assert vrf.public_key(sk).hex() == out["public_key"]
    assert base64.b64decode(out["public_key_b64"]).hex() == out["public_key"]
    pi = _flk("prove", "--sk", f"@{key_file}", "--alpha", "61").stdout.strip()
    ok = _flk("verify", "--pk", out["public_key_b64"], "--alpha", "61", "--pi", pi)
    assert (
        ok.returncode == 0
        and ok.stdout.strip() == vrf.verify(vrf.public_key(sk), b"a", bytes.fromhex(pi)).hex()
    )
    again = _flk("keygen", "--out", str(key_file))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


def test_keygen_prints_a_usable_pair() -> None:
    gen = _flk("keygen")
    lines = dict(line.split(": ", 1) for line in gen.stdout.splitlines())
    sk = bytes.fromhex(lines["secret_key"])
    assert vrf.public_key(sk).hex() == lines["public_key"]


def test_invalid_proof_exits_1_with_one_line_reason() -> None:
    v = VECTORS[0]
    bad = bytearray(bytes.fromhex(v["pi_hex"]))
    bad[40] ^= 0x10
    res = _flk("verify", "--pk", v["public_key_hex"], "--alpha", "", "--pi", bad.hex())
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "invalid: proof_invalid: proof does not verify for this key and input"
    ]
    short = _flk("verify", "--pk", v["public_key_hex"], "--alpha", "", "--pi", "00" * 79)
    assert short.returncode == 1 and short.stderr.startswith("invalid: proof_length:")


def test_malformed_arguments_exit_2_without_echoing_secrets() -> None:
    secretish = "ab" * 31 + "zz"
    res = _flk("prove", "--sk", secretish, "--alpha", "00")
    assert res.returncode == 2 and "secret key" in res.stderr and secretish not in res.stderr
    res = _flk("prove", "--sk", "ab" * 31, "--alpha", "00")
    assert res.returncode == 2 and "32 bytes" in res.stderr
    res = _flk("prove", "--sk", "@/nonexistent/vrf.key", "--alpha", "00")
    assert res.returncode == 2 and res.stderr.startswith("error: key file")
