"""The fast paths of ``round9`` and ``signature_payload`` equal their reference definitions."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Context, Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractal_lba_client import round9, signature_payload


def _round9_reference(x: float) -> float:
    nano, ctx = Decimal("1e-9"), Context(prec=400)
    return float(Decimal(repr(float(x))).quantize(nano, ROUND_HALF_UP, ctx))


def _payload_reference(**kw: object) -> bytes:
    obj = dict(kw)
    for k in ("D_hat", "coh_star", "r", "budget"):
        obj[k] = _round9_reference(obj[k])  # type: ignore[arg-type]
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(max_examples=1000)
@given(x=finite | st.floats(allow_nan=False, allow_infinity=False))
@example(x=0.1234567895)  # a tie: half-up
@example(x=-0.0)
@example(x=1e-10)
@example(x=123456789.123456789)
@example(x=1e19)
@example(x=-1.7976931348623157e308)
def test_round9_equals_the_decimal_definition(x: float) -> None:
    assert repr(round9(x)) == repr(_round9_reference(x))


@settings(max_examples=500)
@given(
    pcs_id=st.text(max_size=20),
    merkle_root=st.text(max_size=20),
    epoch=st.integers(-(2**63), 2**63),
    shard_id=st.text(max_size=20),
    D_hat=finite,
    coh_star=finite,
    r=finite,
    budget=finite,
)
def test_signature_payload_equals_sorted_json_dumps(
    pcs_id: str, merkle_root: str, epoch: int, shard_id: str, D_hat: float, coh_star: float,
    r: float, budget: float,
) -> None:  # fmt: skip
    kw = dict(
        pcs_id=pcs_id, merkle_root=merkle_root, epoch=epoch, shard_id=shard_id, D_hat=D_hat,
        coh_star=coh_star, r=r, budget=budget,
    )  # fmt: skip
    assert signature_payload(**kw) == _payload_reference(**kw)  # type: ignore[arg-type]
