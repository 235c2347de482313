"""The PCS contract: wire model, canonical payload, pcs_id, round9, HMAC / Ed25519 signing."""

from fractal_lba.contract.canonical import (
    SCHEMA,
    SIGNED_FIELDS,
    V03_DOMAIN,
    compute_pcs_id,
    full_record_message,
    jcs,
    round9,
    signature_payload,
    signed_message,
)
from fractal_lba.contract.errors import (
    ContractError,
    KeyFormatError,
    SignatureError,
    ValidationError,
)
from fractal_lba.contract.keys import Secret, generate_key, parse_hmac_key
from fractal_lba.contract.model import (
    FT,
    LATEST_VERSION,
    PCS,
    SUPPORTED_VERSIONS,
    VRFProof,
    decode_pcs,
    encode_pcs,
    validate_pcs,
)
from fractal_lba.contract.signing import (
    Ed25519Signer,
    HmacSigner,
    KeyRing,
    Signer,
    VerificationKey,
    Verified,
    decode_signature,
    make_signer,
    sign_record,
)
from fractal_lba_client.contract import signing_input

__all__ = [
    "FT",
    "LATEST_VERSION",
    "PCS",
    "SCHEMA",
    "SIGNED_FIELDS",
    "SUPPORTED_VERSIONS",
    "V03_DOMAIN",
    "ContractError",
    "Ed25519Signer",
    "HmacSigner",
    "KeyFormatError",
    "KeyRing",
    "Secret",
    "SignatureError",
    "Signer",
    "VRFProof",
    "ValidationError",
    "VerificationKey",
    "Verified",
    "compute_pcs_id",
    "decode_pcs",
    "decode_signature",
    "encode_pcs",
    "full_record_message",
    "generate_key",
    "jcs",
    "make_signer",
    "parse_hmac_key",
    "round9",
    "sign_record",
    "signature_payload",
    "signed_message",
    "signing_input",
    "validate_pcs",
]
