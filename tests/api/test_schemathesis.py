"""Conformance: schemathesis against a live verifier process, over real HTTP.

Every operation of ``api/openapi.yaml``, positive and negative data, the default checks (no
server error, status code, content type, headers, response schema, negative data refused).
The server runs with ``PCS_SIGN_ALG=none`` (loopback only) so that generated records can
reach the decision and be accepted, and with an admin token and metrics credentials so the
authenticated routes answer. Bounded: a few dozen examples per operation.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import ServerProcess

SPEC_PATH = Path(__file__).resolve().parents[2] / "api" / "openapi.yaml"
ADMIN = "schemathesis-admin-token-0123456789abcdef"
BASIC = "Basic " + base64.b64encode(b"prom:metrics-pass").decode()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "PCS_SIGN_ALG": "none",
        "ADMIN_TOKEN": ADMIN,
        "METRICS_USER": "prom",
        "METRICS_PASS": "metrics-pass",
        "LOG_LEVEL": "WARNING",
    }
    srv = ServerProcess(tmp_path_factory.mktemp("st") / "data", env).start()
    try:
        yield srv
    finally:
        srv.stop()


SCHEMA = schemathesis.openapi.from_path(SPEC_PATH)
OPERATIONS = {
    f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in SCHEMA.get_all_operations())
}


def _auth(path: str) -> dict[str, str]:
    if path == "/metrics":
        return {"Authorization": BASIC}
    if path.startswith(("/v1/admin", "/v1/tenants", "/v1/audit")):
        return {"Authorization": f"Bearer {ADMIN}"}
    return {}


def _has_inputs(op: Any) -> bool:
    """Negative data exists only for operations that take parameters or a body."""
    raw = op.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))


CASES = [(name, GenerationMode.POSITIVE) for name in sorted(OPERATIONS)] + [
    (name, GenerationMode.NEGATIVE) for name in sorted(OPERATIONS) if _has_inputs(OPERATIONS[name])
]


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_every_operation_conforms(live: ServerProcess, name: str, mode: GenerationMode) -> None:
    """schemathesis' default checks on generated requests (its pytest plugin is bypassed:
    the operations are driven through their Hypothesis strategies, bounded here)."""
    op = OPERATIONS[name]
    # A schema-valid PCS is still refused when its pcs_id is not sha256(merkle_root|epoch|
    # shard_id) or a text breaks the Unicode-category rule: JSON Schema cannot say either, so
    # "positive data accepted" does not hold for submit (the other checks do).
    excluded = [positive_data_acceptance] if op.path == "/v1/pcs/submit" else []

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck),
              database=None, derandomize=True)  # fmt: skip
    def run(case: Any) -> None:
        headers = {**(case.headers or {}), **_auth(op.path)}
        case.call_and_validate(base_url=live.url, headers=headers, excluded_checks=excluded)

    run()
