"""The public surface is deliberate: ``__all__`` is sorted, pinned here, and nothing else
public is importable from the package by accident."""

from __future__ import annotations

import types

import fractal_lba_client
import fractal_lba_client.contract

PINNED = [
    "DEFAULT_PCS_VERSION", "DEFAULT_TENANT", "FT", "FULL_RECORD_VERSIONS", "MAX_SAFE_INTEGER",
    "PCS", "PCS_VERSIONS", "SCHEMA", "SIGNED_FIELDS", "SIGNING_ALGS", "V03_DOMAIN",
    "APIConnectionError", "APIStatusError", "APITimeoutError", "AsyncFractalLBAClient",
    "AuthenticationError", "BadRequestError", "Ed25519Signer", "Error", "ErrorCode",
    "FractalLBAClient", "FractalLBAError", "Health", "HmacSigner", "KeyFormatError",
    "PayloadTooLargeError", "RateLimitError", "RetryConfig", "Secret", "ServiceUnavailableError",
    "SignatureError", "Signer", "TLSConfig", "UnprocessableEntityError",
    "UnsupportedMediaTypeError", "VRFProof", "ValidationError", "VerifyResult", "__version__",
    "compute_pcs_id", "full_record_message", "jcs", "make_signer", "parse_hmac_key",
    "record_payload", "round9", "sign_record", "signature_payload", "signed_message",
    "signing_input", "validate_pcs", "version_key",
]  # fmt: skip


def isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    if name.isupper() or (name.upper() == name and not name.startswith("__")):
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def public(module: types.ModuleType) -> set[str]:
    return {
        n for n, v in vars(module).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }  # fmt: skip


def test_all_is_pinned_and_sorted() -> None:
    names = fractal_lba_client.__all__
    assert names == sorted(names, key=isort_key)
    assert sorted(names) == sorted(PINNED)


def test_nothing_public_by_accident() -> None:
    for module in (fractal_lba_client, fractal_lba_client.contract):
        assert public(module) <= set(module.__all__), public(module) - set(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name


def test_the_exception_tree_of_spec_section_12() -> None:
    m = fractal_lba_client
    for cls in (m.ValidationError, m.SignatureError, m.APIConnectionError, m.APIStatusError):
        assert issubclass(cls, m.FractalLBAError)
    assert issubclass(m.APITimeoutError, m.APIConnectionError)
    by_status = {
        400: m.BadRequestError, 401: m.AuthenticationError, 413: m.PayloadTooLargeError,
        415: m.UnsupportedMediaTypeError, 422: m.UnprocessableEntityError,
        429: m.RateLimitError, 503: m.ServiceUnavailableError,
    }  # fmt: skip
    for cls in by_status.values():
        assert issubclass(cls, m.APIStatusError)
    err = m.APIStatusError(418, "x", "f", None)
    assert (err.status_code, err.error, err.field, err.response) == (418, "x", "f", None)
