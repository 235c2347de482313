"""Strict parsing (SPEC section 2, issue 17 items 2-3): duplicate keys, integer range, texts,
``vrf`` sizes; errors name the field path, never a value nor an ``N_j``/``meta`` key."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from fractal_lba.contract import ValidationError, compute_pcs_id, decode_pcs
from fractal_lba.contract.model import decode_record

ROOT = "ab" * 32
PROOF = base64.b64encode(bytes(range(80))).decode()
OUTPUT = base64.b64encode(bytes(range(64))).decode()


def pcs(**over: Any) -> dict[str, Any]:
    shard = over.pop("shard_id", "s-1")
    base: dict[str, Any] = {
        "pcs_id": compute_pcs_id(ROOT, 3, shard),
        "schema": "fractal-lba-kakeya",
        "version": "0.2",
        "shard_id": shard,
        "epoch": 3,
        "attempt": 1,
        "sent_at": "2025-01-01T00:00:00Z",
        "seed": 42,
        "scales": [2, 4, 8],
        "N_j": {"2": 3, "4": 5, "8": 9},
        "coh_star": 0.7,
        "v_star": [1.0, 0.0, 0.0],
        "D_hat": 0.75,
        "r": 0.5,
        "regime": "mixed",
        "budget": 0.4,
        "merkle_root": ROOT,
        "sig": base64.b64encode(b"x" * 32).decode(),
        "ft": {"outbox_seq": 1, "degraded": False, "fallbacks": [], "clock_skew_ms": 0},
        "vrf": {"proof": PROOF, "output": OUTPUT},
        "meta": {"source": "ingest-eu"},
    }
    base.update(over)
    if "epoch" in over and "pcs_id" not in over and isinstance(over["epoch"], int):
        base["pcs_id"] = compute_pcs_id(ROOT, over["epoch"], shard)
    return base


def raw(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def refused(body: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        decode_pcs(body)
    return exc.value


def test_a_valid_record_decodes_and_keeps_its_json_object() -> None:
    body = raw(pcs())
    record, obj = decode_record(body)
    assert record.vrf is not None and record.meta == {"source": "ingest-eu"}
    assert obj == json.loads(body)


# -- duplicate keys ---------------------------------------------------------------------------
SIGNED = raw(pcs())
COMPACT = json.dumps(pcs(), separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # the issue's case: a first-wins reader sees 2.9, the signature covered 0.75
        (SIGNED.replace(b'"D_hat": 0.75', b'"D_hat": 2.9, "D_hat": 0.75'), "D_hat"),
        (SIGNED.replace(b'"pcs_id": ', b'"pcs_id": "x", "pcs_id": ', 1), "pcs_id"),
        (SIGNED.replace(b'"outbox_seq": 1', b'"outbox_seq": 1, "outbox_seq": 2'), "ft.outbox_seq"),
        (SIGNED.replace(b'"proof": ', b'"proof": "a", "proof": '), "vrf.proof"),
        (SIGNED.replace(b'"4": 5', b'"4": 5, "4": 6'), "N_j"),
        (SIGNED.replace(b'"source": ', b'"source": "x", "source": '), "meta"),
        # escapes take the exact reader: "\u0044_hat" is "D_hat"
        (SIGNED.replace(b'"D_hat": 0.75', b'"\\u0044_hat": 2.9, "D_hat": 0.75'), "D_hat"),
        # compact, no whitespace
        (
            json.dumps(pcs(), separators=(",", ":"))
            .encode()
            .replace(b'"r":0.5', b'"r":0.1,"r":0.5'),
            "r",
        ),
    ],
)
def test_duplicate_keys_at_every_level_are_refused_naming_the_path(body: bytes, field: str) -> None:
    err = refused(body)
    assert (err.code, err.field) == ("duplicate_key", field)


def test_duplicate_key_path_never_names_data_keys() -> None:
    body = SIGNED.replace(
        b'"source": ', b'"secret-key-name": "x", "secret-key-name": "y", "source": '
    )
    err = refused(body)
    assert err.field == "meta" and "secret-key-name" not in str(err)


def test_colons_and_escapes_inside_strings_are_not_keys() -> None:
    ok = pcs(meta={"k:1": 'a:b":c', "url": "http://x:80/"}, sent_at="2025-01-01T00:00:00Z")
    assert decode_pcs(raw(ok)).meta == ok["meta"]
    pretty = json.dumps(pcs(), indent=2).encode()
    assert decode_pcs(pretty).D_hat == 0.75


# -- integers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"epoch": 2**64}, "epoch"),
        ({"epoch": 2**53}, "epoch"),
        ({"seed": 2**53}, "seed"),
        ({"attempt": 2**53}, "attempt"),
        ({"N_j": {"2": 3, "4": 2**53, "8": 9}}, "N_j"),
        ({"ft": {"outbox_seq": 2**53}}, "ft.outbox_seq"),
        ({"ft": {"clock_skew_ms": -(2**53)}}, "ft.clock_skew_ms"),
        ({"scales": [2, 4, 2**60]}, "scales[2]"),
    ],
)
def test_integers_beyond_2_53_are_refused(over: dict[str, Any], field: str) -> None:
    err = refused(raw(pcs(**over)))
    assert (err.code, err.field) == ("invalid_field", field)


def test_a_4300_digit_epoch_is_refused_without_echo() -> None:
    body = SIGNED.replace(b'"epoch": 3', b'"epoch": ' + b"9" * 4300)
    err = refused(body)
    assert err.field == "epoch" and "9999" not in str(err)


def test_integer_edges_pass() -> None:
    edge = 2**53 - 1
    ok = pcs(seed=edge, ft={"clock_skew_ms": -edge, "outbox_seq": edge}, epoch=edge)
    assert decode_pcs(raw(ok)).epoch == edge


# -- texts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shard_id", ["a\x00b", "tab\there", "x\u202ey", "zero\u200bwidth", "   ", "a" * 257, "l\u2028"]
)
def test_bad_shard_ids_are_refused(shard_id: str) -> None:
    err = refused(raw(pcs(shard_id=shard_id)))
    assert (err.code, err.field) == ("invalid_field", "shard_id")
    assert shard_id not in str(err)


def test_good_shard_ids_pass() -> None:
    for shard_id in ["shard-001", "tenant-b/shard-42", "Zürich café", "a b", "x" * 256]:
        assert decode_pcs(raw(pcs(shard_id=shard_id))).shard_id == shard_id


@pytest.mark.parametrize(
    "meta",
    [{"": "v"}, {"k": ""}, {"k": "v\x07"}, {"k\u202e": "v"}, {"k" * 257: "v"}, {"k": "v" * 257}],
)
def test_bad_meta_is_refused_without_naming_its_keys(meta: dict[str, str]) -> None:
    err = refused(raw(pcs(meta=meta)))
    assert (err.code, err.field) == ("invalid_field", "meta")
    for k in meta:
        if k:
            assert k not in str(err)


def test_meta_type_errors_do_not_name_the_key() -> None:
    err = refused(raw(pcs(meta={"private-key-name": 5})))
    assert err.field == "meta" and "private-key-name" not in str(err)


def test_n_j_errors_do_not_name_the_key() -> None:
    err = refused(raw(pcs(N_j={"2": 3, "4": "x", "8": 9})))
    assert err.field == "N_j"


def test_an_extra_n_j_key_is_an_invalid_field_not_a_missing_one() -> None:
    err = refused(raw(pcs(N_j={"2": 3, "4": 5, "8": 9, "16": 17})))
    assert (err.code, err.field) == ("invalid_field", "N_j")


# -- vrf ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("vrf", "field"),
    [
        ({"proof": "!!!", "output": ""}, "vrf.proof"),
        ({"proof": base64.b64encode(b"p" * 79).decode(), "output": OUTPUT}, "vrf.proof"),
        ({"proof": PROOF.rstrip("="), "output": OUTPUT}, "vrf.proof"),
        ({"proof": PROOF, "output": base64.b64encode(b"o" * 65).decode()}, "vrf.output"),
        ({"proof": PROOF, "output": ""}, "vrf.output"),
        ({"proof": PROOF, "output": OUTPUT.replace("+", "-")}, "vrf.output"),
    ],
)
def test_vrf_sizes_after_strict_base64(vrf: dict[str, str], field: str) -> None:
    err = refused(raw(pcs(vrf=vrf)))
    assert (err.code, err.field) == ("invalid_field", field)


# -- never echo ---------------------------------------------------------------------------------
def test_an_invalid_regime_is_not_echoed() -> None:
    value = "R" * 5000
    err = refused(raw(pcs(regime=value)))
    assert err.field == "regime" and "RRRR" not in str(err) and len(str(err)) < 200


def test_unknown_field_names_are_only_named_when_plain() -> None:
    assert refused(raw(pcs(extra=1))).field == "extra"
    odd = refused(raw(pcs(**{"bad\u202ename": 1})))
    assert odd.code == "unknown_field" and odd.field == "body"


# -- truncation ---------------------------------------------------------------------------------
def test_every_truncation_of_a_valid_body_is_malformed_json() -> None:
    body = json.dumps(pcs(), separators=(",", ":")).encode()
    for n in range(len(body)):
        err = refused(body[:n])
        assert err.code == "malformed_json", (n, err.code, err.field)


def test_syntax_errors_win_over_field_errors() -> None:
    """A truncated body whose first field is also wrong is still ``malformed_json`` (the
    streaming decoder used to stop at the field: ``invalid_field pcs_id``)."""
    err = refused(b'{"pcs_id":"not-hex","schema":"fractal-lba-kakeya","epoch":')
    assert (err.code, err.field) == ("malformed_json", "body")
