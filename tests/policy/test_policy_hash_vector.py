"""``Policy.hash()`` pinned by stored vectors: it is persisted as ``verify_params_hash`` in
every audit entry, so it must never change by accident (key order, float formatting,
escaping, defaults, the signature's exclusion)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fractal_lba.policy import Policy, default_policy

VECTORS = Path(__file__).resolve().parents[1] / "data" / "vectors" / "policy-hash.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text("utf-8"))["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_policy_hash_is_the_stored_vector(case: dict[str, Any]) -> None:
    policy = msgspec.convert(case["policy"], Policy)
    assert policy.canonical() == case["canonical"].encode("utf-8")
    assert policy.hash() == case["verify_params_hash"]
    assert hashlib.sha256(case["canonical"].encode()).hexdigest() == case["verify_params_hash"]


def test_the_built_in_policy_keeps_its_hash() -> None:
    [default] = [c for c in CASES if c["name"] == "default"]
    assert default_policy().hash() == default["verify_params_hash"]
