"""The PCS contract (SPEC section 2) for producers and verifiers: the one implementation.

Everything here is pure: canonical forms, the strict rules, key formats and signing. The
verifier (``fractal_lba.contract``) and the agent import these names from this module.
"""

from fractal_lba_client._canonical import (
    SCHEMA,
    SIGNED_FIELDS,
    compute_pcs_id,
    record_payload,
    round9,
    signature_payload,
)
from fractal_lba_client._jcs import MAX_SAFE_INTEGER, es_number, jcs
from fractal_lba_client._keys import (
    Secret,
    b64decode_strict,
    parse_ed25519_public_raw,
    parse_ed25519_seed,
    parse_hmac_key,
)
from fractal_lba_client._model import (
    FT,
    PCS,
    VRFProof,
    check_rules,
    convert_record,
    field_path,
)
from fractal_lba_client._rules import (
    FORBIDDEN_CATEGORIES,
    MAX_META_KEYS,
    MAX_TEXT,
    VRF_OUTPUT_BYTES,
    VRF_PROOF_BYTES,
    b64_problem,
    int_problem,
    text_problem,
)
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
from fractal_lba_client._versions import (
    DEFAULT_PCS_VERSION,
    FULL_RECORD_VERSIONS,
    PCS_VERSIONS,
    version_key,
)

__all__ = [
    "DEFAULT_PCS_VERSION",
    "DEFAULT_TENANT",
    "FORBIDDEN_CATEGORIES",
    "FT",
    "FULL_RECORD_VERSIONS",
    "MAX_META_KEYS",
    "MAX_SAFE_INTEGER",
    "MAX_TEXT",
    "PCS",
    "PCS_VERSIONS",
    "SCHEMA",
    "SIGNED_FIELDS",
    "SIGNING_ALGS",
    "V03_DOMAIN",
    "VRF_OUTPUT_BYTES",
    "VRF_PROOF_BYTES",
    "Ed25519Signer",
    "HmacSigner",
    "Secret",
    "Signer",
    "VRFProof",
    "b64_problem",
    "b64decode_strict",
    "check_rules",
    "compute_pcs_id",
    "convert_record",
    "es_number",
    "field_path",
    "full_record_message",
    "int_problem",
    "jcs",
    "make_signer",
    "parse_ed25519_public_raw",
    "parse_ed25519_seed",
    "parse_hmac_key",
    "record_payload",
    "round9",
    "sign_record",
    "signature_payload",
    "signed_message",
    "signing_input",
    "text_problem",
    "version_key",
]
