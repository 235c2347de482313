"""``flk build-pcs`` and ``flk agent``: CliRunner for behaviour, real subprocesses for bad input."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import msgspec
import pytest
from agent_helpers import FLK, Answer, Receiver, sample_rows, write_csv
from click.testing import CliRunner

from fractal_lba.cli import main
from fractal_lba.contract import KeyRing, VerificationKey, decode_pcs, decode_signature
from fractal_lba.contract.model import signed_bytes

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
    ring.verify(
        signed_bytes(pcs, msgspec.to_builtins(pcs), "default"),
        decode_signature(pcs.sig),
        0,
        full_record=pcs.version == "0.3",
    )
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
    ring.verify(
        signed_bytes(pcs, msgspec.to_builtins(pcs), "default"),
        decode_signature(pcs.sig),
        0,
        full_record=pcs.version == "0.3",
    )


def test_build_pcs_missing_key_is_a_usage_error(events: Path) -> None:
    code, _, err = run("build-pcs", "--in", str(events), "--shard-id", "s", "--epoch", "1")
    assert code == 2 and "--key" in err


def test_help_texts() -> None:
    for args in (["build-pcs"], ["agent"], ["agent", "run"], ["agent", "enqueue"],
                 ["agent", "status"], ["agent", "dlq"], ["agent", "dlq", "list"],
                 ["agent", "dlq", "requeue"], ["agent", "dlq", "drop"]):  # fmt: skip
        code, out, _ = run(*args, "--help")
        assert code == 0 and "Usage:" in out and len(out.splitlines()) > 4
    for args in (["build-pcs"], ["agent", "enqueue"]):
        _, out, _ = run(*args, "--help")
        out = out[out.index("Options:") :]
        for flag in ("--key", "--shard-id"):
            block = out[out.index(flag) :].split("\n  -", 1)[0]
            assert "[required]" in block, (args, flag)
    _, out, _ = run("agent", "run", "--help")
    assert "Needed with --in" in out and "--max-age" in out and "7d" in out


def test_a_key_typed_on_the_command_line_gets_a_warning(events: Path, tmp_path: Path) -> None:
    base = ["build-pcs", "--in", str(events), "--shard-id", "s", "--epoch", "1"]
    code, _, err = run(*base, "--key", KEY)
    assert code == 0 and "warning: a key given with --key is visible in ps" in err
    assert "@FILE" in err and "env:VAR" in err and KEY not in err
    keyfile = tmp_path / "k"
    keyfile.write_text(KEY)
    for args, env in (
        (["--key", f"@{keyfile}"], None),
        (["--key", "env:MY_KEY"], {"MY_KEY": KEY}),
        ([], {"FLK_AGENT_KEY": KEY}),
    ):
        code, _, err = run(*base, *args, env=env)
        assert code == 0 and err == "", args


def test_agent_run_once_delivers_and_status_reports(tmp_path: Path) -> None:
    indir = tmp_path / "in"
    indir.mkdir()
    for epoch in (5, 6, 7):
        write_csv(indir / f"batch-{epoch:04d}.csv", sample_rows(20, seed=epoch))
    outbox = tmp_path / "outbox"
    with Receiver([Answer(503, headers={"Retry-After": "0"})]) as rx:
        code, out, err = run(
            "agent", "run", "--in", str(indir), "--endpoint", rx.url, "--shard-id", "s",
            "--outbox", str(outbox), "--tenant-id", "acme", "--once", "--backoff-base", "0",
            env={"FLK_AGENT_KEY": KEY},
        )  # fmt: skip
        assert code == 0, err
        bodies = [json.loads(s.body) for s in rx.seen]
    assert sorted(b["epoch"] for b in bodies) == [5, 5, 6, 7]  # one 503 then retried
    assert "pending: 0  acked: 3  dead-lettered: 0" in out
    assert err.count("queued: ") == 3
    assert "retry: #1 attempt 1 failed: HTTP 503; next try in 0.0 s (Retry-After 0 s)" in err
    code, out, _ = run("agent", "status", "--outbox", str(outbox), "--json")
    assert json.loads(out)["pending"] == 0 and json.loads(out)["acked"] == 3
    code, out, _ = run("agent", "status", "--outbox", str(outbox))
    assert out == "pending: 0  acked: 3  dead-lettered: 0\n"  # one line, as the README shows


def test_dead_letters_exit_3_until_requeued_and_delivered_exactly_once(tmp_path: Path) -> None:
    ev = write_csv(tmp_path / "e-0001.csv", sample_rows(10))
    outbox = str(tmp_path / "ob")
    env = {"FLK_AGENT_KEY": KEY}
    args = ["agent", "enqueue", "--in", str(ev), "--shard-id", "s", "--outbox", outbox]
    assert run(*args, env=env)[0] == 0
    code, _, err = run(*args, env=env)
    assert code == 0 and "already queued" in err
    code, out, _ = run("agent", "status", "--outbox", outbox, "--json")
    assert json.loads(out)["pending"] == 1
    with Receiver(default=Answer(401, body={"error": "signature_invalid"})) as rx:
        code, out, err = run("agent", "run", "--endpoint", rx.url, "--outbox", outbox, "--once")
    assert code == 3, err
    assert "pending: 0  acked: 0  dead-lettered: 1" in out
    assert "error: 1 dead letter in the outbox:" in err
    assert f"#1 {ev}: rejected, HTTP 401 signature_invalid" in err
    assert "flk agent dlq requeue" in err
    # a re-run queues nothing, delivers nothing, and still fails: the loss is not hidden
    with Receiver() as rx:
        code, out, err = run(
            "agent", "run", "--in", str(ev), "--endpoint", rx.url, "--shard-id", "s",
            "--outbox", outbox, "--once", env=env,
        )  # fmt: skip
        assert rx.count == 0
    assert code == 3 and "dead-lettered earlier" in err and "dlq #1" in err
    assert "1 dead letter in the outbox" in err
    code, out, _ = run("agent", "status", "--outbox", outbox)
    assert out.splitlines() == [
        "pending: 0  acked: 0  dead-lettered: 1",
        f"dead letters: see `flk agent dlq list --outbox {outbox}`",
    ]
    code, out, _ = run("agent", "dlq", "list", "--outbox", outbox)
    header, row = out.splitlines()
    assert header.split()[:3] == ["ID", "REASON", "ATTEMPTS"] and "SOURCE" in header
    assert row.split()[:4] == ["#1", "rejected", "1", "401"] and str(ev) in row
    assert row.endswith("HTTP 401 signature_invalid")
    code, out, _ = run("agent", "dlq", "list", "--outbox", outbox, "--json")
    doc = json.loads(out)
    assert (doc["id"], doc["reason"], doc["status"], doc["attempts"]) == (1, "rejected", 401, 1)
    assert doc["source"] == str(ev) and doc["first_attempt_at"] and doc["last_attempt_at"]
    assert KEY not in out
    code, _, err = run("agent", "dlq", "requeue", "--outbox", outbox)
    assert code == 2 and "IDs or --all" in err
    code, _, err = run("agent", "dlq", "requeue", "--outbox", outbox, "7")
    assert code == 2 and "no dead letter 7" in err
    code, out, err = run("agent", "dlq", "requeue", "--outbox", outbox, "#1")
    assert code == 0 and "requeued: #1 -> #" in err and "1 requeued" in out
    with Receiver() as rx:
        code, out, err = run("agent", "run", "--endpoint", rx.url, "--outbox", outbox, "--once")
        assert code == 0, err
        assert rx.count == 1  # exactly once
    assert "pending: 0  acked: 1  dead-lettered: 0" in out
    code, out, _ = run("agent", "dlq", "list", "--outbox", outbox)
    assert out == "no dead letters\n"


def test_drop_and_the_lock_of_a_running_agent(tmp_path: Path) -> None:
    from fractal_lba.agent import Outbox

    ev = write_csv(tmp_path / "e-0002.csv", sample_rows(10))
    outbox = str(tmp_path / "ob")
    run("agent", "enqueue", "--in", str(ev), "--shard-id", "s", "--outbox", outbox,
        env={"FLK_AGENT_KEY": KEY})  # fmt: skip
    with Receiver(default=Answer(400, body={"error": "invalid_pcs"})) as rx:
        assert run("agent", "run", "--endpoint", rx.url, "--outbox", outbox, "--once")[0] == 3
    with Outbox(outbox):  # as a running agent holds it
        code, _, err = run("agent", "dlq", "drop", "--outbox", outbox, "1")
        assert code == 2 and "in use by a running `flk agent run`" in err
        code, out, _ = run("agent", "dlq", "list", "--outbox", outbox)  # reading works
        assert "#1" in out
    code, _, err = run("agent", "dlq", "drop", "--outbox", outbox, "x1")
    assert code == 2 and "'x1' is not a dead letter id" in err
    code, out, _ = run("agent", "dlq", "drop", "--outbox", outbox, "1")
    assert code == 0 and out == "dropped: #1\n"
    with Receiver() as rx:
        code, _, _ = run("agent", "run", "--endpoint", rx.url, "--outbox", outbox, "--once")
        assert code == 0 and rx.count == 0


def test_status_shows_the_oldest_pending_entry_and_the_last_error(tmp_path: Path) -> None:
    import httpx

    from fractal_lba.agent import Deliverer, Outbox

    ev = write_csv(tmp_path / "e-0003.csv", sample_rows(10))
    outbox = str(tmp_path / "ob")
    run("agent", "enqueue", "--in", str(ev), "--shard-id", "s", "--outbox", outbox,
        env={"FLK_AGENT_KEY": KEY})  # fmt: skip
    answer = httpx.Response(503, json={"error": "store_unavailable"})
    client = httpx.Client(transport=httpx.MockTransport(lambda _req: answer))
    with Outbox(outbox) as ob, Deliverer(ob, "http://v.test/x", client=client) as d:
        d.deliver_pending(until=0)  # one attempt, then return instead of waiting
    _, out, _ = run("agent", "status", "--outbox", outbox)
    lines = out.splitlines()
    assert lines[0] == "pending: 1  acked: 0  dead-lettered: 0"
    assert lines[1].startswith("oldest pending: #1, queued ")
    assert "; last error " in lines[1]
    assert lines[1].endswith(" ago: HTTP 503 store_unavailable (#1, attempt 1)")
    _, out, _ = run("agent", "status", "--outbox", outbox, "--json")
    doc = json.loads(out)
    assert doc["oldest_pending_lsn"] == 1 and 0 <= doc["oldest_pending_age_s"] < 600
    assert doc["last_error"]["status"] == 503 and doc["last_error"]["attempts"] == 1


def test_run_against_a_dead_endpoint_says_what_it_does(tmp_path: Path) -> None:
    with Receiver() as rx:
        url = rx.url  # closed once the receiver is gone
    ev = write_csv(tmp_path / "e-0004.csv", sample_rows(10))
    code, out, err = run(
        "agent", "run", "--in", str(ev), "--endpoint", url, "--shard-id", "s",
        "--outbox", str(tmp_path / "ob"), "--once", "--max-age", "1s",
        "--backoff-base", "0.05", "--backoff-cap", "0.1", env={"FLK_AGENT_KEY": KEY},
    )  # fmt: skip
    assert code == 3
    retries = [line for line in err.splitlines() if line.startswith("retry: ")]
    assert retries and all("connection refused (ConnectError)" in r for r in retries)
    assert "retry: #1 attempt 1 failed: connection refused (ConnectError); next try in" in err
    assert "expired" in err and KEY not in err + out
    code, _, err = run(
        "agent", "run", "--endpoint", url, "--outbox", str(tmp_path / "ob"), "--max-age", "soon"
    )
    assert code == 2 and "--max-age" in err


def test_agent_run_needs_epoch_from_option_or_file_name(tmp_path: Path) -> None:
    ev = write_csv(tmp_path / "events.csv", sample_rows(5))
    code, _, err = run(
        "agent", "run", "--in", str(ev), "--endpoint", "http://127.0.0.1:9/x",
        "--shard-id", "s", "--outbox", str(tmp_path / "ob"), "--once",
        env={"FLK_AGENT_KEY": KEY},
    )  # fmt: skip
    assert code == 2 and "epoch" in err


def test_agent_run_with_inputs_needs_a_key(tmp_path: Path) -> None:
    ev = write_csv(tmp_path / "e-0001.csv", sample_rows(5))
    code, _, err = run(
        "agent", "run", "--in", str(ev), "--endpoint", "http://127.0.0.1:9/x",
        "--shard-id", "s", "--outbox", str(tmp_path / "ob"), "--once",
        env={"FLK_AGENT_KEY": ""},
    )  # fmt: skip
    assert code == 2 and "missing option --key (needed with --in)" in err


def test_status_of_missing_outbox(tmp_path: Path) -> None:
    code, _, err = run("agent", "status", "--outbox", str(tmp_path / "none"))
    assert code == 2 and err.startswith("error: no outbox")


# -- bad input through a real subprocess -----------------------------------------------------
def _flk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "FLK_AGENT_KEY"} | (env or {})
    return subprocess.run(
        [FLK, *args], capture_output=True, text=True, timeout=60, env=full, check=False
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
                "--key", key if key.startswith("@") else "env:K", "--alg", alg,
                env={"K": key})  # fmt: skip
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
        "agent", "run", "--in", str(ev), "--endpoint", "http://127.0.0.1:9/x",
        "--shard-id", "s", "--outbox", str(tmp_path / "ob"), "--epoch", "1",
        env={"FLK_AGENT_KEY": KEY},
    )  # fmt: skip
    assert code == 2 and "--epoch needs --once" in err
    assert not (tmp_path / "ob").exists()


def test_the_progress_bar_says_what_delivery_waits_for(capsys: pytest.CaptureFixture[str]) -> None:
    from fractal_lba.agent import Failure, Result, RetryNotice
    from fractal_lba.cli.agent_output import Reporter

    reporter = Reporter(terminal=True)
    reporter.delivery_started(3)
    refused = Failure(None, "connect_error", "connection refused (ConnectError)")
    reporter.waiting(RetryNotice(4, 7, refused, 12.4))
    reporter.echo("retry: a line while the bar is drawn")
    reporter.delivered(Result(4, "p", "acked", 200, 8))
    reporter.delivery_finished()
    err = capsys.readouterr().err
    assert "waiting for the verifier (connection refused), retry in 12 s" in err
    assert "retry: a line while the bar is drawn\n" in err
    assert "1/3" in err
