"""The audit writer's fast canonical encoder equals the reference ``json.dumps`` rule."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from fractal_lba.audit.entry import (
    AuditEntry,
    chain_entry,
    compute_entry_hash,
    entry_to_dict,
)
from fractal_lba.canonical_json import canonical_json

_text = st.text(max_size=40)  # any unicode, control characters and quotes included
_num = st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70)

entries = st.builds(
    AuditEntry,
    timestamp=_text,
    pcs_id=st.none() | _text,
    tenant_id=_text,
    merkle_root=st.none() | _text,
    D_hat=_num,
    coh_star=_num,
    r=_num,
    budget=_num,
    regime=st.none() | _text,
    verify_outcome=st.sampled_from(["accepted", "escalated", "rejected", "duplicate", "conflict"]),
    reason=st.none() | _text,
    status=st.integers(100, 599),
    verify_params_hash=st.none() | _text,
    policy_version=st.none() | _text,
    region_id=_text,
    request_id=_text,
    prev_hash=_text,
    entry_hash=_text,
)


def _reference(entry: AuditEntry, prev_hash: str) -> tuple[str, bytes]:
    d = entry_to_dict(entry)
    d["prev_hash"] = prev_hash
    d["entry_hash"] = h = compute_entry_hash(d)
    return h, canonical_json(d) + b"\n"


@settings(max_examples=400)
@given(entry=entries, prev_hash=_text)
def test_chain_entry_is_byte_identical_to_the_reference(entry: AuditEntry, prev_hash: str) -> None:
    assert chain_entry(entry, prev_hash) == _reference(entry, prev_hash)


def test_chain_entry_line_rehashes_to_its_entry_hash() -> None:
    entry = AuditEntry(
        timestamp="2026-11-28T00:00:00.000Z", pcs_id="é\"\n", tenant_id="t",
        D_hat=1.5e-07, coh_star=1e16, r=0.1, budget=3, verify_outcome="accepted", status=200,
        region_id="r", request_id="q",
    )  # fmt: skip
    h, line = chain_entry(entry, "00" * 32)
    obj = json.loads(line)
    assert obj["entry_hash"] == h and obj["prev_hash"] == "00" * 32
    del obj["entry_hash"]
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(canon).hexdigest() == h
    assert line.endswith(b"}\n") and line.isascii()
