"""Settings parsing, the signing default, the unsafe unsigned mode, metrics auth and /ready."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from server_helpers import body, make_pcs

from fractal_lba.cli import main
from fractal_lba.config import Settings
from fractal_lba.contract import Secret
from fractal_lba.errors import ConfigError
from fractal_lba.policy import default_policy
from fractal_lba.server import create_app
from fractal_lba.tenancy.resolver import single_tenant

Make = Callable[..., Any]


def test_defaults_are_the_embedded_service() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.dedup_backend, s.sign_alg) == ("127.0.0.1", 8080, "sqlite", "hmac")
    assert s.data_dir == Path("data") and s.audit_dir == Path("data/audit")
    assert s.token_rate == 0 and s.request_timeout == 5.0


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"DEDUP_BACKEND": "mongo"}, "DEDUP_BACKEND"),
        ({"TOKEN_RATE": "-1"}, "TOKEN_RATE"),
        ({"TOKEN_RATE": "nan"}, "TOKEN_RATE"),
        ({"STRICT_MODE": "maybe"}, "STRICT_MODE"),
        ({"PCS_SIGN_ALG": "rsa"}, "PCS_SIGN_ALG"),
        ({"PCS_SIGN_ALG": "ed25519"}, "PCS_ED25519_PUB_B64"),
        ({"PCS_ED25519_PUB_B64": "c2hvcnQ="}, "PCS_ED25519_PUB_B64"),
        ({"PCS_HMAC_KEY": "base64:!!!"}, "PCS_HMAC_KEY"),
        ({"PCS_HMAC_KEYS": "good,base64:"}, "PCS_HMAC_KEYS"),
        ({"PCS_HMAC_ACCEPT_LEGACY_DIGEST": "2"}, "PCS_HMAC_ACCEPT_LEGACY_DIGEST"),
        ({"METRICS_USER": "prom"}, "METRICS_PASS"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"REQUEST_TIMEOUT": "0"}, "REQUEST_TIMEOUT"),
        ({"WORM_MAX_SEGMENT_SIZE": "lots"}, "WORM_MAX_SEGMENT_SIZE"),
        ({"WAL_RETENTION": "a week"}, "WAL_RETENTION"),
        ({"DEDUP_NAMESPACE": "bad-name"}, "DEDUP_NAMESPACE"),
        ({"VRF_MODE": "sometimes"}, "VRF_MODE"),
        ({"PII_SCAN_MODE": "shred"}, "PII_SCAN_MODE"),
        ({"TENANTS": "acme:hmac"}, "TENANTS"),
        ({"MULTI_TENANT": "true"}, "MULTI_TENANT"),
        ({"VRF_PUBLIC_KEY": "c2hvcnQ="}, "VRF_PUBLIC_KEY"),
        ({"VRF_PUBLIC_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, "VRF_PUBLIC_KEY"),
        ({"PII_PHONE_REGIONS": "US,XX"}, "PII_PHONE_REGIONS"),
        ({"PII_WAL_RETENTION": "soon"}, "PII_WAL_RETENTION"),
        ({"PII_HASH_KEY": "k", "PII_HASH_KEY_FILE": "/nonexistent"}, "PII_HASH_KEY"),
    ],
)
def test_bad_config_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    msg = str(info.value)
    assert variable in msg and "\n" not in msg
    for value in env.values():
        if value not in ("true", "ed25519", "prom") and len(value) > 3:
            assert value not in msg or variable == "PCS_SIGN_ALG"


def test_secrets_never_print() -> None:
    s = Settings.from_env(
        {"PCS_HMAC_KEY": "hunter2-key", "METRICS_USER": "u", "METRICS_PASS": "pw-secret",
         "POSTGRES_DSN": "postgresql://u:dbpass@h/db"}
    )  # fmt: skip
    text = repr(s)
    for secret in ("hunter2-key", "pw-secret", "dbpass"):
        assert secret not in text
    assert s.hmac_keys == (Secret(b"hunter2-key"),)


def test_sizes_and_booleans_parse() -> None:
    s = Settings.from_env(
        {"WORM_MAX_SEGMENT_SIZE": "10MB", "STRICT_MODE": "yes", "WAL_SEGMENT_SIZE": "64K"}
    )
    assert s.worm_max_segment_size == 10 * 1024 * 1024 and s.strict_mode is True
    assert s.wal_segment_size == 64 * 1024


def test_without_a_key_a_local_key_file_is_generated_once(tmp_path: Path) -> None:
    s = Settings.from_env({"DATA_DIR": str(tmp_path)})
    tenant, path = single_tenant(s, default_policy())
    assert path == tmp_path / "hmac.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text().strip()
    assert text.startswith("base64:") and len(base64.b64decode(text[7:])) == 32
    again, _ = single_tenant(s, default_policy())
    assert path.read_text().strip() == text
    assert tenant.keyring is not None and again.keyring is not None


def test_with_a_key_no_file_is_written(tmp_path: Path) -> None:
    s = Settings.from_env({"DATA_DIR": str(tmp_path), "PCS_HMAC_KEY": "k"})
    _, path = single_tenant(s, default_policy())
    assert path is None and not (tmp_path / "hmac.key").exists()


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_create_app_opens_nothing_startup_does(tmp_path: Path, backend: str) -> None:
    """create_app creates no file or directory (not even the local key); startup does."""
    data = tmp_path / "data"
    app = create_app(Settings.from_env({"DATA_DIR": str(data), "DEDUP_BACKEND": backend}))
    assert not data.exists()
    async with app.running():
        assert (data / "hmac.key").is_file()


@pytest.mark.anyio
async def test_local_key_file_signs_end_to_end(make_harness: Make, tmp_path: Path) -> None:
    async with make_harness(PCS_HMAC_KEY="") as h:
        key = (tmp_path / "data" / "hmac.key").read_text().strip()
        assert (await h.submit(body(make_pcs(key=key)))).status_code == 200
        assert (await h.submit(body(make_pcs(epoch=2)))).status_code == 401


@pytest.mark.anyio
async def test_unsafe_unsigned_mode_warns_on_every_request(
    make_harness: Make, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_harness(PCS_SIGN_ALG="none") as h:
        caplog.set_level(logging.WARNING, logger="fractal_lba")
        for epoch in (1, 2):
            resp = await h.submit(body(make_pcs(key="whatever", epoch=epoch)))
            assert resp.status_code == 200
        warnings = [r for r in caplog.records if "verification is disabled" in r.getMessage()]
        assert len(warnings) == 2
        metrics = (await h.client.get("/metrics")).text
        assert "flk_unsafe_unsigned_total 2.0" in metrics


@pytest.mark.anyio
async def test_metrics_require_basic_auth_when_configured(make_harness: Make) -> None:
    async with make_harness(METRICS_USER="prom", METRICS_PASS="s3cret") as h:
        await h.submit(body(make_pcs()))
        assert (await h.client.get("/metrics")).status_code == 401
        bad = await h.client.get("/metrics", auth=("prom", "wrong"))
        assert bad.status_code == 401 and "basic" in bad.headers["www-authenticate"].lower()
        ok = await h.client.get("/metrics", auth=("prom", "s3cret"))
        assert ok.status_code == 200
        text = ok.text
        for name in (
            "flk_ingest_total 1.0",
            'flk_ingest_by_tenant_total{tenant_id="default"} 1.0',
            "flk_accepted_total 1.0",
            'flk_accepted_by_tenant_total{tenant_id="default"} 1.0',
            "flk_escalated_total 0.0",
            "flk_dedup_hits_total 0.0",
            "flk_signature_errors_total 0.0",
            "flk_wal_errors_total 0.0",
            "flk_hmac_legacy_digest_total 0.0",
            "flk_anomaly_score_count 1.0",
            'flk_request_duration_seconds_count{code="200",route="submit"} 1.0',
            "flk_wal_fsync_batch_size_count",
            "flk_wal_fsync_seconds_count",
        ):
            assert name in text, name


@pytest.mark.anyio
async def test_metrics_open_without_credentials_configured(make_harness: Make) -> None:
    async with make_harness() as h:
        assert (await h.client.get("/metrics")).status_code == 200


@pytest.mark.anyio
async def test_legacy_digest_is_counted_only_when_allowed(make_harness: Make) -> None:
    import hashlib
    import hmac

    from fractal_lba.contract import signature_payload

    pcs = make_pcs()
    fields = ("pcs_id", "merkle_root", "epoch", "shard_id", "D_hat", "coh_star", "r", "budget")
    payload = signature_payload(**{k: pcs[k] for k in fields})
    digest = hashlib.sha256(payload).digest()
    legacy = base64.b64encode(hmac.new(b"test-hmac-key", digest, hashlib.sha256).digest()).decode()
    pcs["sig"] = legacy
    async with make_harness() as h:
        assert (await h.submit(body(pcs))).status_code == 401
    async with make_harness(PCS_HMAC_ACCEPT_LEGACY_DIGEST="true") as h:
        assert (await h.submit(body(pcs))).status_code == 200
        assert "flk_hmac_legacy_digest_total 1.0" in (await h.client.get("/metrics")).text


@pytest.mark.anyio
async def test_health_and_ready(make_harness: Make) -> None:
    async with make_harness() as h:
        assert (await h.client.get("/health")).json() == {"status": "ok"}
        ready = await h.client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"store": "ok", "wal": "ok", "audit": "ok"}


def test_cli_serve_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["serve"], env={"PORT": "nope", "DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2
    assert result.output.strip() == "error: PORT must be an integer in [0, 65535]"


def test_cli_serve_refuses_memory_backend_with_workers(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--workers", "2", "--dedup-backend", "memory", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "DEDUP_BACKEND=memory" in result.output and "--workers" in result.output
    assert "Traceback" not in result.output


def test_cli_wal_compact_refuses_a_locked_directory(tmp_path: Path) -> None:
    from fractal_lba.wal import WalLog

    held = WalLog(tmp_path / "wal" / "inbox-0")
    held.open()
    try:
        stopped = WalLog(tmp_path / "wal" / "inbox-1")  # a stopped worker's directory
        stopped.open()
        stopped.close()
        result = CliRunner().invoke(main, ["wal", "compact", "--data-dir", str(tmp_path)])
    finally:
        held.close()
    assert result.exit_code == 2
    assert "inbox-0: in use by a running server, skipped" in result.output
    assert "inbox-1: removed 0 segments" in result.output
    status = CliRunner().invoke(main, ["wal", "status", "--data-dir", str(tmp_path)])
    assert status.exit_code == 0 and "inbox-0: 1 segments, 0 records, 0 pending" in status.output


def test_cli_wal_compact_bad_retention(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["wal", "compact", "--data-dir", str(tmp_path), "--retention", "soon"]
    )
    assert result.exit_code == 2 and "--retention" in result.output


def test_the_serving_process_tunes_the_gc_and_the_library_does_not(tmp_path: Path) -> None:
    """``flk serve``'s factory raises the young-GC threshold and freezes setup objects;
    importing or building the app elsewhere (tests, embedding) leaves the GC alone."""
    code = (
        "import gc, json\n"
        "from fractal_lba.server.factory import GC_THRESHOLDS, app_from_env, create_app\n"
        "from fractal_lba.config import Settings\n"
        "create_app(Settings.from_env())\n"
        "before = gc.get_threshold()\n"
        "app_from_env()\n"
        "print(json.dumps([before == GC_THRESHOLDS, gc.get_threshold() == GC_THRESHOLDS,"
        " gc.get_freeze_count() > 0]))\n"
    )
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True, True]


def test_settings_repr_shows_no_secret_value() -> None:
    """Keys, tokens, passwords and DSN credentials never appear in a repr (logs, tracebacks)."""
    single = Settings.from_env(
        {
            "PCS_HMAC_KEYS": "hmac-s3cr3t-one,hmac-s3cr3t-two",
            "ADMIN_TOKEN": "admin-s3cr3t-token",
            "METRICS_USER": "ops",
            "METRICS_PASS": "metrics-s3cr3t",
            "REDIS_URL": "redis://:redis-s3cr3t@127.0.0.1:6379/0",
            "POSTGRES_DSN": "postgresql://u:pg-s3cr3t@127.0.0.1/db",
            "PII_HASH_KEY": "pii-s3cr3t",
        }
    )
    multi = Settings.from_env({"MULTI_TENANT": "true", "TENANTS": "acme:hmac:tenant-s3cr3t-key"})
    for s in (single, multi):
        assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s)
    assert multi.tenants is not None and b"tenant-s3cr3t-key" in multi.tenants.reveal()


def test_only_the_settings_loader_reads_the_environment() -> None:
    """``os.environ`` (or ``getenv``) appears in one module of the package: config."""
    src = Path(__file__).resolve().parents[2] / "src" / "fractal_lba"
    readers = sorted(
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if any(w in p.read_text("utf-8") for w in ("os.environ", "getenv", "import environ"))
    )
    assert readers == ["config/__init__.py"]
