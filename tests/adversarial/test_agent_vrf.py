"""The agent's side of VRF: --vrf-key seeds coh_star from the proof; a real server accepts it."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from server_helpers import HMAC_KEY, ServerProcess
from vrf_helpers import metric

from fractal_lba.adversarial import vrf
from fractal_lba.adversarial.vrf_gate import VrfGate
from fractal_lba.agent import build_pcs
from fractal_lba.agent.errors import AgentError
from fractal_lba.agent.events import Events
from fractal_lba.contract import make_signer
from fractal_lba.signals import compute_signals

FLK = str(Path(sys.executable).with_name("flk"))
SK, PK = vrf.keygen()


def _events(n: int = 400) -> Events:
    rng = np.random.default_rng(3)
    return Events(points=rng.random((n, 3)), timestamps=np.arange(n, dtype=float))


def test_build_pcs_derives_the_seed_from_the_proof() -> None:
    events = _events()
    signer = make_signer("hmac", HMAC_KEY)
    pcs = build_pcs(events, shard_id="s-7", epoch=9, signer=signer, vrf_key=SK,
                    tenant_id="acme", version="0.2")  # fmt: skip
    assert pcs.vrf is not None
    beta = vrf.verify(PK, b"acme|s-7|9", base64.b64decode(pcs.vrf.proof))
    assert base64.b64decode(pcs.vrf.output) == beta
    assert pcs.seed == vrf.seed_from_output(beta) != 42
    # coh_star / v_star were sampled with that seed, not the default one.
    sig = compute_signals(events.points, events.timestamps, pcs.scales, pcs.seed)
    assert (pcs.coh_star, pcs.v_star) == (sig.coh_star, sig.v_star)
    assert VrfGate.for_tenant("acme", PK, "enforce").check(pcs) is None
    assert VrfGate.for_tenant("globex", PK, "enforce").check(pcs) is not None


def test_a_vrf_proof_needs_version_02() -> None:
    with pytest.raises(AgentError, match=r"version 0\.2 or later"):
        build_pcs(_events(), shard_id="s", epoch=1, signer=make_signer("hmac", HMAC_KEY),
                  vrf_key=SK, version="0.1")  # fmt: skip


@pytest.mark.slow
def test_agent_run_against_the_embedded_default_with_vrf(tmp_path: Path) -> None:
    """README flow: VRF_ENABLED=true without VRF_PUBLIC_KEY, agent proves with data/vrf.key."""
    data = tmp_path / "data"
    server = ServerProcess(data, {"VRF_ENABLED": "true"}).start()
    try:
        events = tmp_path / "events.csv"
        subprocess.run([FLK, "gen-events", "--shape", "plane", "--n", "3000", "--out", str(events)],
                       check=True, timeout=60)  # fmt: skip
        endpoint = f"{server.url}/v1/pcs/submit"
        common = ["--in", str(events), "--shard-id", "demo", "--key", HMAC_KEY,
                  "--endpoint", endpoint, "--once", "--version", "0.2"]  # fmt: skip
        good = subprocess.run(
            [FLK, "agent", "run", *common, "--epoch", "1", "--vrf-key", f"@{data / 'vrf.key'}",
             "--outbox", str(tmp_path / "ob1")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert good.returncode == 0, good.stderr
        status = subprocess.run([FLK, "agent", "status", "--outbox", str(tmp_path / "ob1")],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        counts = dict(re.findall(r"(pending|acked|dead-lettered): (\d+)", status.stdout))
        assert (counts["pending"], counts["acked"], counts["dead-lettered"]) == ("0", "1", "0")
        # Without --vrf-key the server refuses it (a 401 is final: dead-lettered).
        bad = subprocess.run(
            [FLK, "agent", "run", *common, "--epoch", "2", "--outbox", str(tmp_path / "ob2")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert bad.returncode == 3  # dead letters left in the outbox
        text = httpx.get(server.url + "/metrics", timeout=10).text
        assert metric(text, "flk_vrf_verified_total") == 1
        assert metric(text, "flk_vrf_invalid_total", reason="missing", mode="enforce") == 1
    finally:
        server.stop()
