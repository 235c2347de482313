"""The audit timestamp formatter equals ``datetime``'s RFC 3339 milliseconds form."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from fractal_lba.server.audit_record import iso_timestamp as _iso


@given(ts=st.floats(min_value=0, max_value=4e9))
@example(ts=1795880248.4449995)  # x * 1e6 rounds differently from datetime's modf split
@example(ts=1795880248.9999996)  # rounds up into the next second
@example(ts=0.0)
def test_iso_matches_datetime(ts: float) -> None:
    ref = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    assert _iso(ts) == ref.replace("+00:00", "Z")
