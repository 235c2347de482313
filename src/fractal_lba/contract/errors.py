"""Errors of the PCS contract: validation, key format and signature failures."""

from __future__ import annotations

from fractal_lba.errors import FlkError


class ContractError(FlkError):
    """Root of contract errors."""

    code = "contract_error"


class ValidationError(ContractError):
    """A PCS (or part of one) failed parsing or schema validation.

    ``field`` names the offending field (dotted path, e.g. ``N_j.4``), ``detail`` says what is
    wrong without echoing the value.
    """

    code = "invalid_pcs"

    def __init__(self, field: str, detail: str, *, code: str | None = None) -> None:
        super().__init__(f"{field}: {detail}", code=code)
        self.field = field
        self.detail = detail


class KeyFormatError(ContractError):
    """Key material is not in a format SPEC section 2 allows. Never includes the key."""

    code = "bad_key"


class SignatureError(ContractError):
    """The signature did not verify with any active key."""

    code = "signature_invalid"
