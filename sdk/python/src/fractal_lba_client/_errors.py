"""The machine error codes of the HTTP API and the SDK's exception tree (SPEC sections 11, 12).

Tree::

    FractalLBAError
    ├── ValidationError          a PCS or argument is invalid; nothing was sent (``field``)
    │   └── KeyFormatError       key material in the wrong format (never shows the key)
    ├── SignatureError           the PCS could not be signed (no key, extra not installed)
    ├── APIConnectionError       the server could not be reached, or the connection broke
    │   └── APITimeoutError      the request timed out
    └── APIStatusError           the server answered non-2xx (``status_code``, ``error``,
        │                        ``field``, ``response``); one subclass per documented status
        ├── BadRequestError              400
        ├── AuthenticationError          401
        ├── PayloadTooLargeError         413
        ├── UnsupportedMediaTypeError    415
        ├── UnprocessableEntityError     422 (same pcs_id, different signed content)
        ├── RateLimitError               429 (``retry_after``)
        └── ServiceUnavailableError      503 (``retry_after``)

Messages name fields and codes, never key material or PCS values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


class ErrorCode(StrEnum):
    """Every ``error`` string the verifier answers with (the OpenAPI ``Error.error`` enum).

    The server builds its error bodies from these members; a test fails when a code is used
    that is not here, or listed here and in the OpenAPI spec differently.
    """

    # 400: the request or the record is malformed
    MALFORMED_JSON = "malformed_json"
    DUPLICATE_KEY = "duplicate_key"
    INVALID_NUMBER = "invalid_number"
    INVALID_FIELD = "invalid_field"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    UNKNOWN_SCHEMA = "unknown_schema"
    UNSUPPORTED_VERSION = "unsupported_version"
    VERSION_BELOW_MINIMUM = "version_below_minimum"
    SCHEMA_VERSION_MISMATCH = "schema_version_mismatch"
    PCS_ID_MISMATCH = "pcs_id_mismatch"
    INVALID_HEADER = "invalid_header"
    INCOMPLETE_BODY = "incomplete_body"
    MISSING_TENANT = "missing_tenant"
    INVALID_TENANTS_CONFIG = "invalid_tenants_config"
    PII_DETECTED = "pii_detected"
    SANITY_SCALES_ORDER = "sanity:scales_order"
    SANITY_SCALES_RANGE = "sanity:scales_range"
    SANITY_NJ_MISSING = "sanity:nj_missing"
    SANITY_NJ_MONOTONIC = "sanity:nj_monotonic"
    SANITY_COH_STAR_RANGE = "sanity:coh_star_range"
    SANITY_R_RANGE = "sanity:r_range"
    SANITY_D_HAT_RANGE = "sanity:d_hat_range"
    SANITY_BUDGET_RANGE = "sanity:budget_range"
    SANITY_MERKLE_ROOT = "sanity:merkle_root"
    SANITY_V_STAR = "sanity:v_star"
    # 401: not authenticated
    UNKNOWN_TENANT = "unknown_tenant"
    SIGNATURE_INVALID = "signature_invalid"
    VRF_INVALID = "vrf_invalid"
    UNAUTHORIZED = "unauthorized"
    # 404, 405, 408, 413, 415, 422
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TIMEOUT = "request_timeout"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    # 429: limits
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    # 500, 503: the server cannot answer now
    INTERNAL_ERROR = "internal_error"
    NOT_READY = "not_ready"
    WAL_UNAVAILABLE = "wal_unavailable"
    STORE_UNAVAILABLE = "store_unavailable"
    AUDIT_UNAVAILABLE = "audit_unavailable"
    LIMITER_UNAVAILABLE = "limiter_unavailable"


class FractalLBAError(Exception):
    """Root of every exception the SDK raises."""


class ValidationError(FractalLBAError):
    """A PCS or an argument is invalid; nothing was sent.

    ``field`` is the dotted path of the offending field (``N_j``, ``vrf.proof``, ``meta``);
    ``detail`` says what is wrong without the value.
    """

    def __init__(self, field: str, detail: str, *, code: str = ErrorCode.INVALID_FIELD) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail
        self.code = code


class KeyFormatError(ValidationError):
    """Key material is not in a format SPEC section 2 allows. Never includes the key."""

    def __init__(self, detail: str, *, field: str = "signing_key") -> None:
        super().__init__(field, detail)

    def __str__(self) -> str:
        return self.detail


class SignatureError(FractalLBAError):
    """The PCS could not be signed (no key configured, or the Ed25519 extra is missing)."""


class APIConnectionError(FractalLBAError):
    """The server could not be reached, or the connection broke before an answer."""


class APITimeoutError(APIConnectionError):
    """The request did not complete within the timeout."""


class APIStatusError(FractalLBAError):
    """The server answered with a non-2xx status.

    ``error`` is the machine code of the answer's JSON error body (an :class:`ErrorCode`
    value, or None when the body was not the documented shape), ``field`` the field it names,
    ``detail`` the server's explanation, ``response`` the raw ``httpx.Response``.
    """

    status_code: int

    def __init__(
        self,
        status_code: int,
        error: str | None,
        field: str | None,
        response: httpx.Response | None,
        *,
        detail: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        where = f" ({field})" if field else ""
        what = f": {error}{where}" if error else ": the answer is not the documented JSON error"
        super().__init__(f"HTTP {status_code}{what}" + (f": {detail}" if detail else ""))
        self.status_code = status_code
        self.error = error
        self.field = field
        self.detail = detail
        self.response = response
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    """400: the record or request is malformed (``field`` names what)."""


class AuthenticationError(APIStatusError):
    """401: unknown tenant, or the signature (or VRF proof) does not verify."""


class PayloadTooLargeError(APIStatusError):
    """413: the body is over the server's limit (64 KiB)."""


class UnsupportedMediaTypeError(APIStatusError):
    """415: the body was not sent as ``application/json``."""


class UnprocessableEntityError(APIStatusError):
    """422: this pcs_id was already submitted with different signed content."""


class RateLimitError(APIStatusError):
    """429: the tenant's rate or daily quota is used up; ``retry_after`` seconds."""


class ServiceUnavailableError(APIStatusError):
    """503: the server cannot answer now (the request may be kept); retry later."""


STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}
