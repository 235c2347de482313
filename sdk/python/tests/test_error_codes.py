"""ErrorCode: one enumeration of every machine error string; values are stable strings."""

from __future__ import annotations

import re

from fractal_lba_client import ErrorCode


def test_values_are_unique_machine_strings() -> None:
    values = [c.value for c in ErrorCode]
    assert len(values) == len(set(values))
    assert all(re.fullmatch(r"[a-z_]+(:[a-z_]+)?", v) for v in values)


def test_members_are_their_strings() -> None:
    assert ErrorCode.DUPLICATE_KEY == "duplicate_key"
    assert f"{ErrorCode.SIGNATURE_INVALID}" == "signature_invalid"
    assert ErrorCode("rate_limited") is ErrorCode.RATE_LIMITED
