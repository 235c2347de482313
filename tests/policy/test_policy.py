"""Policy static validation (SPEC section 8 contract) and hashing."""

from __future__ import annotations

import msgspec
import pytest

from fractal_lba.policy import (
    Policy,
    PolicyError,
    VerifyParams,
    default_policy,
    validate_policy,
)


def _with(**params: float) -> Policy:
    return msgspec.structs.replace(
        default_policy(), params=msgspec.structs.replace(VerifyParams(), **params)
    )


def test_default_policy_is_valid_and_hash_is_stable() -> None:
    p = validate_policy(default_policy())
    assert p.hash() == default_policy().hash()
    assert len(p.hash()) == 64


def test_hash_ignores_signature_but_not_params() -> None:
    p = default_policy()
    signed = msgspec.structs.replace(p, signature="abc")
    assert signed.hash() == p.hash()
    assert _with(tol_D=0.2).hash() != p.hash()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tol_D": 1.5}, "params.tol_D"),
        ({"tol_D": -0.1}, "params.tol_D"),
        ({"tol_coh": 0.3}, "params.tol_coh"),
        ({"sticky_coherence_min": 1.2}, "params.sticky_coherence_min"),
        ({"alpha": 0.5, "beta": 0.5, "gamma": 0.2}, "params.alpha"),
        ({"sticky_D_hat_max": 2.7}, "params.sticky_D_hat_max"),
    ],
)
def test_static_validation_names_field(params: dict[str, float], field: str) -> None:
    with pytest.raises(PolicyError) as exc:
        validate_policy(_with(**params))
    assert exc.value.field == field


@pytest.mark.parametrize("flag", ["disable_wal", "skip_signature"])
def test_forbidden_flags(flag: str) -> None:
    with pytest.raises(PolicyError, match=flag):
        validate_policy(msgspec.structs.replace(default_policy(), flags=[flag]))


def test_version_must_be_semver() -> None:
    with pytest.raises(PolicyError) as exc:
        validate_policy(msgspec.structs.replace(default_policy(), version="v1"))
    assert exc.value.field == "version"
