"""``flk build-pcs`` and ``flk agent``: CliRunner for behaviour, real subprocesses for bad input."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from agent_helpers import FLK, Answer, Receiver, sample_rows, write_csv
from click.testing import CliRunner

from fractal_lba.cli import main
from fractal_lba.contract import KeyRing, VerificationKey, decode_pcs, decode_signature

KEY = "cli-s3cret-hmac-key"
EVENT_VALUE = "987654.321"


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "events.csv", sample_rows(40))


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_build_pcs_prints_a_verifiable_pcs(events: Path) -> None:
    code, out, err = run(
        "build-pcs", "--in", str(events), "--shard-id", "shard-001", "--epoch", "3",
        "--key", KEY, "--scales", "2,4,8", "--seed", "9", "--version", "0.1",
    )  # fmt: skip
    assert code == 0, err
    pcs = decode_pcs(out.encode())
    assert (pcs.shard_id, pcs.epoch, pcs.seed, pcs.version) == ("shard-001", 3, 9, "0.1")
    assert pcs.scales == [2, 4, 8]
    ring = KeyRing([VerificationKey.from_text("k", "hmac", KEY)])
    ring.verify(pcs.signed_payload(), decode_signature(pcs.sig), now=0)
    assert KEY not in out


def test_build_pcs_out_file_and_key_sources(events: Path, tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    out = tmp_path / "pcs.json"
    base = ["build-pcs", "--in", str(events), "--shard-id", "s", "--epoch", "1"]
    code, stdout, err = run(*base, "--key", f"@{keyfile}", "--out", str(out))
    assert code == 0, err
    assert stdout == ""
    from_file = decode_pcs(out.read_bytes())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    code, stdout, _ = run(*base, "--key", "env:MY_KEY", env={"MY_KEY": KEY})
    assert code == 0
    assert decode_pcs(stdout.encode()).sig == from_file.sig
    code, stdout, _ = run(*base, env={"FLK_AGENT_KEY": KEY})
    assert code == 0
    assert decode_pcs(stdout.encode()).sig == from_file.sig


def test_build_pcs_ed25519_and_meta(events: Path) -> None:
    code, out, _ = run("keygen", "--alg", "ed25519", "--json")
    keys = json.loads(out)
    code, out, err = run(
        "build-pcs", "--in", str(events), "--shard-id", "s", "--epoch", "1",
        "--alg", "ed25519", "--key", keys["private"], "--meta", "source=eu",
    )  # fmt: skip
    assert code == 0, err
    pcs = decode_pcs(out.encode())
    assert pcs.meta == {"source": "eu"}
    ring = KeyRing([VerificationKey.from_text("k", "ed25519", keys["public"])])
    ring.verify(pcs.signed_payload(), decode_signature(pcs.sig), now=0)


def test_build_pcs_missing_key_is_a_usage_error(events: Path) -> None:
    code, _, err = run("build-pcs", "--in", str(events), "--shard-id", "s", "--epoch", "1")
    assert code == 2 and "--key" in err


def test_help_texts() -> None:
    for args in (["build-pcs"], ["agent"], ["agent", "run"], ["agent", "enqueue"],
                 ["agent", "status"]):  # fmt: skip
        code, out, _ = run(*args, "--help")
        assert code == 0 and "Usage:" in out and len(out.splitlines()) > 4


def test_agent_run_once_delivers_and_status_reports(tmp_path: Path) -> None:
    indir = tmp_path / "in"
    indir.mkdir()
    for epoch in (5, 6, 7):
        write_csv(indir / f"batch-{epoch:04d}.csv", sample_rows(20, seed=epoch))
    outbox = tmp_path / "outbox"
    with Receiver([Answer(503, headers={"Retry-After": "0"})]) as rx:
        code, out, err = run(
            "agent", "run", "--in", str(indir), "--endpoint", rx.url, "--key", KEY,
            "--shard-id", "s", "--outbox", str(outbox), "--tenant-id", "acme", "--once",
            "--backoff-base", "0",
        )  # fmt: skip
        assert code == 0, err
        bodies = [json.loads(s.body) for s in rx.seen]
    assert sorted(b["epoch"] for b in bodies) == [5, 5, 6, 7]  # one 503 then retried
    assert "pending: 0  acked: 3  dead-lettered: 0" in out
    assert err.count("queued: ") == 3
    code, out, _ = run("agent", "status", "--outbox", str(outbox), "--json")
    assert json.loads(out)["pending"] == 0 and json.loads(out)["acked"] == 3
    code, out, _ = run("agent", "status", "--outbox", str(outbox))
    assert out.splitlines()[:3] == ["pending: 0", "acked: 3", "dead-lettered: 0"]


def test_agent_enqueue_then_run_without_inputs_and_dlq_exit_status(tmp_path: Path) -> None:
    ev = write_csv(tmp_path / "e.csv", sample_rows(10))
    outbox = str(tmp_path / "ob")
    args = ["agent", "enqueue", "--in", str(ev), "--epoch", "1", "--key", KEY,
            "--shard-id", "s", "--outbox", outbox]  # fmt: skip
    assert run(*args)[0] == 0
    code, _, err = run(*args)
    assert code == 0 and "already queued" in err
    code, out, _ = run("agent", "status", "--outbox", outbox, "--json")
    assert json.loads(out)["pending"] == 1
    with Receiver(default=Answer(401, body={"error": "signature_invalid"})) as rx:
        code, out, err = run("agent", "run", "--endpoint", rx.url, "--outbox", outbox, "--once")
    assert code == 1
    assert "dead-lettered: 1" in out and "dlq.jsonl" in err
    dead = json.loads((tmp_path / "ob" / "dlq.jsonl").read_text())
    assert dead["status"] == 401 and dead["error"] == "signature_invalid"


def test_agent_run_needs_epoch_from_option_or_file_name(tmp_path: Path) -> None:
    ev = write_csv(tmp_path / "events.csv", sample_rows(5))
    code, _, err = run(
        "agent", "run", "--in", str(ev), "--endpoint", "http://127.0.0.1:9/x", "--key", KEY,
        "--shard-id", "s", "--outbox", str(tmp_path / "ob"), "--once",
    )  # fmt: skip
    assert code == 2 and "epoch" in err


def test_status_of_missing_outbox(tmp_path: Path) -> None:
    code, _, err = run("agent", "status", "--outbox", str(tmp_path / "none"))
    assert code == 2 and err.startswith("error: no outbox")


# -- bad input through a real subprocess -----------------------------------------------------
def _flk(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLK_AGENT_KEY"}
    return subprocess.run(
        [FLK, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def _bad_input_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = write_csv(tmp_path / "good.csv", sample_rows(5))
    malformed = tmp_path / "malformed.csv"
    malformed.write_text(f"timestamp,x,y,z\n1,2,3,4\n2,{EVENT_VALUE},3\n")
    non_numeric = tmp_path / "non_numeric.csv"
    non_numeric.write_text(f"timestamp,x,y,z\n1,2,3,4\n\n3,4,x{EVENT_VALUE},6\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text(f'{{"timestamp": 1, "x": 1, "y": 1, "z": "{EVENT_VALUE}"}}\n')
    return {
        "missing file": ([str(tmp_path / "nope.csv"), KEY, "hmac"], "no such file"),
        "malformed row": ([str(malformed), KEY, "hmac"], "malformed.csv:3: malformed row"),
        "non-numeric": ([str(non_numeric), KEY, "hmac"], "non_numeric.csv:4: column 3"),
        "empty file": ([str(empty), KEY, "hmac"], "file is empty"),
        "bad jsonl": ([str(jsonl), KEY, "hmac"], "bad.jsonl:1: field 'z' must be a number"),
        "wrong key format": ([str(good), KEY, "ed25519"], "Ed25519 private key"),
        "missing key file": ([str(good), f"@{tmp_path / 'nokey'}", "hmac"], "key file"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "malformed row",
        "non-numeric",
        "empty file",
        "bad jsonl",
        "wrong key format",
        "missing key file",
    ],
)
def test_bad_input_exits_with_one_clean_line(tmp_path: Path, case: str) -> None:
    (path, key, alg), expected = _bad_input_cases(tmp_path)[case]
    proc = _flk("build-pcs", "--in", path, "--shard-id", "s", "--epoch", "1",
                "--key", key, "--alg", alg)  # fmt: skip
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""
    for secret in (KEY, EVENT_VALUE):
        assert secret not in proc.stderr + proc.stdout


def test_watch_loop_refuses_an_explicit_epoch(tmp_path: Path) -> None:
    ev = write_csv(tmp_path / "e.csv", sample_rows(5))
    code, _, err = run(
        "agent", "run", "--in", str(ev), "--endpoint", "http://127.0.0.1:9/x", "--key", KEY,
        "--shard-id", "s", "--outbox", str(tmp_path / "ob"), "--epoch", "1",
    )  # fmt: skip
    assert code == 2 and "--epoch needs --once" in err
    assert not (tmp_path / "ob").exists()
