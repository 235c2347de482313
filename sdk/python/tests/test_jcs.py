"""The fast JCS path equals the ``rfc8785`` reference on every JSON value it can meet."""

from __future__ import annotations

import math

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractal_lba_client import MAX_SAFE_INTEGER, jcs
from fractal_lba_client.contract import es_number

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=1500)
@given(values)
@example({"\U0001f600": 1, "\uffff": 2, "a": 3})  # UTF-16 order differs from code points
@example({"x": [1e21, 1e-7, 1e16, 1e-5, -0.0, 5e-324, 1.7976931348623157e308]})
@example({"s": '\x00\x1f\x7f\u2028\u2029"\\\b\f\n\r\t'})
def test_jcs_equals_rfc8785(value: object) -> None:
    assert jcs(value) == rfc8785.dumps(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_es_number_equals_rfc8785(x: float) -> None:
    assert es_number(x) == rfc8785.dumps(x)


@pytest.mark.parametrize(
    "value", [2**53, -(2**53), math.nan, math.inf, {1: "non-string key"}, {"n": 2**64}]
)
def test_jcs_refuses_what_it_cannot_represent(value: object) -> None:
    with pytest.raises(ValueError) as exc:
        jcs(value)
    assert "18446744073709551616" not in str(exc.value)  # never echoes the value
