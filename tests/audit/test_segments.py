"""The segment scanner: fast path agrees with the canonical-JSON definition; names order."""

from __future__ import annotations

import hashlib
import json

import msgspec
import pytest
from audit_helpers import make_entry
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal_lba.audit.entry import GENESIS_PREV_HASH
from fractal_lba.audit.errors import AuditVerifyError
from fractal_lba.audit.segments import (
    _fast_entries,
    encode_entry,
    make_segment_name,
    parse_segment_name,
    scan_segment,
)

floats = st.floats(allow_nan=False, allow_infinity=False) | st.none()
texts = st.text(max_size=20) | st.none()


@settings(max_examples=200, deadline=None)
@given(d=floats, c=floats, r=floats, b=floats, reason=texts, tenant=st.text(max_size=8))
def test_written_lines_always_verify(
    d: float | None,
    c: float | None,
    r: float | None,
    b: float | None,
    reason: str | None,
    tenant: str,
) -> None:
    e = msgspec.structs.replace(
        make_entry(1, tenant=tenant), D_hat=d, coh_star=c, r=r, budget=b, reason=reason
    )
    chained, line = encode_entry(e, GENESIS_PREV_HASH)
    scan = scan_segment(line * 1, "s", GENESIS_PREV_HASH)
    assert scan.entries == 1 and scan.last_hash == chained.entry_hash
    # The fast path may only accept what json.dumps produces byte for byte.
    fast = _fast_entries(line)
    if fast is not None:
        obj = json.loads(line)
        assert json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n" == line


@pytest.mark.parametrize("value", ["1e-05", "1e+16", "1.5e-07"])
def test_exponent_floats_take_the_slow_path(value: str) -> None:
    e = msgspec.structs.replace(make_entry(1), D_hat=float(value))
    _, line = encode_entry(e, GENESIS_PREV_HASH)
    assert value.encode() in line
    assert _fast_entries(line) is None
    assert scan_segment(line, "s", None).entries == 1


def test_msgspec_style_float_is_not_canonical() -> None:
    e = msgspec.structs.replace(make_entry(1), D_hat=1e-05)
    _, line = encode_entry(e, GENESIS_PREV_HASH)
    # same value in msgspec's spelling, entry_hash recomputed over the non-canonical bytes
    obj = json.loads(line)
    body = {k: v for k, v in obj.items() if k != "entry_hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":")).replace("1e-05", "0.00001")
    obj["entry_hash"] = hashlib.sha256(text.encode()).hexdigest()
    full = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    forged = full.replace("1e-05", "0.00001").encode() + b"\n"
    with pytest.raises(AuditVerifyError, match="canonical"):
        scan_segment(forged, "s", None)


def test_segment_names_order_with_suffixes() -> None:
    a = make_segment_name(1_735_732_800.0, None)
    b = make_segment_name(1_735_732_800.0, a)
    c = make_segment_name(1_735_732_800.0 - 50, b)
    assert [a.rel, b.rel, c.rel] == [
        "2025/01/01/120000.jsonl",
        "2025/01/01/120000-1.jsonl",
        "2025/01/01/120000-2.jsonl",
    ]
    names = [parse_segment_name(n.rel) for n in (c, a, b)]
    assert sorted(n for n in names if n is not None) == [a, b, c]
    assert parse_segment_name("2025/01/01/12000.jsonl") is None
