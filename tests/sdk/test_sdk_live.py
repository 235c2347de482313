"""The SDK against a live verifier process (``flk serve``) over real HTTP: HMAC and Ed25519,
single- and multi-tenant, PCS 0.1 / 0.2 / 0.3, duplicates, the exception tree, and a real
429 with ``Retry-After`` (delays counted with an injected sleep, never really slept)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import HMAC_KEY, ServerProcess

from fractal_lba.contract.keys import generate_key
from fractal_lba_client import (
    AsyncFractalLBAClient,
    AuthenticationError,
    BadRequestError,
    FractalLBAClient,
    RateLimitError,
    compute_pcs_id,
)

ED = generate_key("ed25519")
assert ED.public is not None


def record(epoch: int, shard: str = "sdk-live", **over: Any) -> dict[str, Any]:
    pcs: dict[str, Any] = {
        "shard_id": shard, "epoch": epoch, "seed": 42, "scales": [2, 4, 8, 16, 32],
        "N_j": {"2": 2, "4": 4, "8": 8, "16": 16, "32": 32}, "coh_star": 0.75,
        "v_star": [0.0, 1.0, 0.0], "D_hat": 1.0, "r": 0.5, "regime": "sticky", "budget": 0.4,
        "merkle_root": "ab" * 32,
    }  # fmt: skip
    pcs.update(over)
    return pcs


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("single") / "data").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("multi")
    tenants = work / "tenants.toml"
    tenants.write_text(
        f'[[tenants]]\nid = "alice"\n[[tenants.keys]]\nid = "a"\nalg = "hmac"\nkey = "{HMAC_KEY}"\n'
        f'[[tenants]]\nid = "bob"\nmin_pcs_version = "0.3"\n'
        f'[[tenants.keys]]\nid = "b"\nalg = "ed25519"\nkey = "{ED.public}"\n'
        '[[tenants]]\nid = "slow"\ntoken_rate = 0.01\nburst = 1\n'
        f'[[tenants.keys]]\nid = "s"\nalg = "hmac"\nkey = "{HMAC_KEY}"\n'
    )
    env = {"MULTI_TENANT": "true", "TENANTS_FILE": str(tenants)}
    srv = ServerProcess(work / "data", env).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3"])
def test_single_tenant_hmac_each_version(single: ServerProcess, version: str) -> None:
    epoch = {"0.1": 1, "0.2": 2, "0.3": 3}[version]
    with FractalLBAClient(single.url, signing_key=HMAC_KEY, pcs_version=version) as client:
        assert client.health_check().status == "ok"
        first = client.submit_pcs(record(epoch))
        assert first.accepted and first.status_code == 200 and not first.replayed
        assert first.pcs_id == compute_pcs_id("ab" * 32, epoch, "sdk-live")
        again = client.submit_pcs(record(epoch))
        assert again.replayed and again.pcs_id == first.pcs_id


def test_a_wrong_key_is_an_authentication_error(single: ServerProcess) -> None:
    with (
        FractalLBAClient(single.url, signing_key="not-the-key") as client,
        pytest.raises(AuthenticationError) as exc,
    ):
        client.submit_pcs(record(10))
    assert exc.value.status_code == 401 and exc.value.error == "signature_invalid"


def test_an_unknown_tenant_is_an_authentication_error(single: ServerProcess) -> None:
    with FractalLBAClient(single.url, signing_key=HMAC_KEY, tenant_id="nobody") as client:
        with pytest.raises(AuthenticationError) as exc:
            client.submit_pcs(record(11))
        assert exc.value.error == "unknown_tenant"


def test_multi_tenant_hmac_and_ed25519(multi: ServerProcess) -> None:
    with FractalLBAClient(multi.url, tenant_id="alice", signing_key=HMAC_KEY) as alice:
        assert alice.submit_pcs(record(1)).tenant_id == "alice"
    with FractalLBAClient(
        multi.url, tenant_id="bob", signing_key=ED.secret, signing_alg="ed25519"
    ) as bob:
        result = bob.submit_pcs(record(1))
        assert result.accepted and result.tenant_id == "bob"
    for version in ("0.1", "0.2"):  # bob's min_pcs_version is 0.3
        with (
            FractalLBAClient(
                multi.url, tenant_id="bob", signing_key=ED.secret, signing_alg="ed25519",
                pcs_version=version,
            ) as old,
            pytest.raises(BadRequestError) as exc,
        ):  # fmt: skip
            old.submit_pcs(record(2))
        assert (exc.value.error, exc.value.field) == ("version_below_minimum", "version")
    for version in ("0.1", "0.2", "0.3"):
        with FractalLBAClient(
            multi.url, tenant_id="alice", signing_key=HMAC_KEY, pcs_version=version
        ) as c:
            assert c.submit_pcs(record(20 + int(version[-1]))).accepted


def test_a_03_record_signed_for_alice_is_refused_for_slow(multi: ServerProcess) -> None:
    # same key, other tenant: the 0.3 signature is bound to the tenant
    with FractalLBAClient(multi.url, tenant_id="alice", signing_key=HMAC_KEY) as alice:
        from fractal_lba_client._core import prepare_record

        signed = prepare_record(
            record(40), signer=alice._signer, tenant_id="alice", pcs_version="0.3"
        )
    with (
        FractalLBAClient(multi.url, tenant_id="slow") as slow,
        pytest.raises(AuthenticationError),
    ):
        slow.submit_pcs(signed)


def test_a_real_429_is_retried_after_retry_after_then_raised(multi: ServerProcess) -> None:
    slept: list[float] = []
    with (
        FractalLBAClient(
            multi.url, tenant_id="slow", signing_key=HMAC_KEY, sleep=slept.append, max_retries=2
        ) as client,
        pytest.raises(RateLimitError) as exc,
    ):  # one token a 100 s: the 2nd call at most
        for epoch in (50, 51):
            client.submit_pcs(record(epoch))
    assert exc.value.error == "rate_limited" and exc.value.retry_after is not None
    assert len(slept) == 2 and all(0 < s <= 60 for s in slept)  # Retry-After, capped


def test_async_client_live(multi: ServerProcess) -> None:
    async def run() -> list[bool]:
        async with AsyncFractalLBAClient(
            multi.url, tenant_id="bob", signing_key=ED.secret, signing_alg="ed25519"
        ) as client:
            health = await client.health_check()
            assert health.status == "ok"
            results = await asyncio.gather(*(client.submit_pcs(record(60 + i)) for i in range(5)))
            return [r.accepted for r in results]

    assert asyncio.run(run()) == [True] * 5


def test_the_examples_file_runs_against_a_live_server(single: ServerProcess) -> None:
    example = Path(__file__).resolve().parents[2] / "sdk" / "python" / "examples" / "quickstart.py"
    out = subprocess.run(
        [sys.executable, str(example), single.url, HMAC_KEY],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("VerifyResult(accepted=True") == 2


def test_the_readme_five_lines_run(single: ServerProcess, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### The Python SDK in five lines", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) == 5
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hmac.key").write_text(HMAC_KEY + "\n")
    code = code.replace("http://127.0.0.1:8080", single.url)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first.startswith("VerifyResult(accepted=True") and second == "True"
