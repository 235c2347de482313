"""Python client of the fractal-lba verifier, and the one implementation of the PCS contract.

    from fractal_lba_client import FractalLBAClient

    with FractalLBAClient("http://127.0.0.1:8080", signing_key="...") as client:
        result = client.submit_pcs(pcs)      # validated, signed (0.3), retried, typed

The contract (SPEC section 2): :func:`round9`, :func:`compute_pcs_id`, the 0.1/0.2 eight-field
:func:`signature_payload`, the 0.3 :func:`full_record_message` (RFC 8785 :func:`jcs`), HMAC and
Ed25519 signers (:func:`make_signer`, :func:`sign_record`) and :class:`ErrorCode`, every
machine error string of the HTTP API.
"""

from fractal_lba_client._canonical import (
    SCHEMA,
    SIGNED_FIELDS,
    compute_pcs_id,
    record_payload,
    round9,
    signature_payload,
)
from fractal_lba_client._client import AsyncFractalLBAClient, FractalLBAClient
from fractal_lba_client._core import RetryConfig
from fractal_lba_client._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ErrorCode,
    FractalLBAError,
    KeyFormatError,
    PayloadTooLargeError,
    RateLimitError,
    ServiceUnavailableError,
    SignatureError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from fractal_lba_client._jcs import MAX_SAFE_INTEGER, jcs
from fractal_lba_client._keys import Secret, parse_hmac_key
from fractal_lba_client._model import FT, PCS, VRFProof
from fractal_lba_client._model import check_rules as _check_rules
from fractal_lba_client._model import convert_record as _convert_record
from fractal_lba_client._signing import (
    DEFAULT_TENANT,
    SIGNING_ALGS,
    V03_DOMAIN,
    Ed25519Signer,
    HmacSigner,
    Signer,
    full_record_message,
    make_signer,
    sign_record,
    signed_message,
    signing_input,
)
from fractal_lba_client._tls import TLSConfig
from fractal_lba_client._types import Error, Health, VerifyResult
from fractal_lba_client._versions import (
    DEFAULT_PCS_VERSION,
    FULL_RECORD_VERSIONS,
    PCS_VERSIONS,
    version_key,
)

__version__ = "0.3.0"


def validate_pcs(pcs: object) -> PCS:
    """The typed PCS of a plain mapping (or a PCS), checked against SPEC section 2; raises
    :class:`ValidationError` naming the field (the checks the client runs before sending)."""
    return _check_rules(pcs if isinstance(pcs, PCS) else _convert_record(pcs))


__all__ = [
    "DEFAULT_PCS_VERSION",
    "DEFAULT_TENANT",
    "FT",
    "FULL_RECORD_VERSIONS",
    "MAX_SAFE_INTEGER",
    "PCS",
    "PCS_VERSIONS",
    "SCHEMA",
    "SIGNED_FIELDS",
    "SIGNING_ALGS",
    "V03_DOMAIN",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncFractalLBAClient",
    "AuthenticationError",
    "BadRequestError",
    "Ed25519Signer",
    "Error",
    "ErrorCode",
    "FractalLBAClient",
    "FractalLBAError",
    "Health",
    "HmacSigner",
    "KeyFormatError",
    "PayloadTooLargeError",
    "RateLimitError",
    "RetryConfig",
    "Secret",
    "ServiceUnavailableError",
    "SignatureError",
    "Signer",
    "TLSConfig",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "VRFProof",
    "ValidationError",
    "VerifyResult",
    "__version__",
    "compute_pcs_id",
    "full_record_message",
    "jcs",
    "make_signer",
    "parse_hmac_key",
    "record_payload",
    "round9",
    "sign_record",
    "signature_payload",
    "signed_message",
    "signing_input",
    "validate_pcs",
    "version_key",
]
