"""The request-building and response-parsing core shared by the sync and async clients.

Pure: no I/O. The clients only send what :func:`submit_request` builds, hand the answer to
:func:`parse_submit` / :func:`parse_health`, and ask :func:`retry_delay` whether and how long
to wait before the next attempt (SPEC section 12).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import msgspec

from fractal_lba_client._canonical import SCHEMA, compute_pcs_id, round9
from fractal_lba_client._errors import (
    STATUS_ERRORS,
    APIStatusError,
    ValidationError,
)
from fractal_lba_client._model import PCS, check_rules, convert_record
from fractal_lba_client._signing import DEFAULT_TENANT, Signer, sign_record
from fractal_lba_client._types import Error, Health, VerifyResult
from fractal_lba_client._versions import PCS_VERSIONS

SUBMIT_PATH = "/v1/pcs/submit"
HEALTH_PATH = "/health"
VERSIONS_HEADER = "X-PCS-Accepted-Versions"
RETRY_STATUSES = frozenset({408, 429})
ROUND9_FIELDS = ("D_hat", "coh_star", "r", "budget")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Exponential backoff with full jitter: ``uniform(0, min(max_delay, base * 2**n))``.

    ``Retry-After`` (seconds or an HTTP date) is honoured when present, capped at
    ``max_retry_after``.
    """

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValidationError("max_retries", "must be >= 0")
        for name in ("base_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValidationError(name, "must be a finite number >= 0")


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to send (the same bytes on every attempt: pcs_id is idempotent)."""

    method: str
    path: str
    headers: dict[str, str]
    content: bytes | None = None


def prepare_record(
    pcs: PCS | Mapping[str, Any],
    *,
    signer: Signer | None,
    tenant_id: str | None,
    pcs_version: str,
) -> dict[str, Any]:
    """The record to send, validated, and signed when the client has a key.

    With a key: ``schema``, ``version`` (the client's ``pcs_version``) and ``pcs_id`` are
    filled in when absent, the four floats are round9'ed (SPEC section 2: the producer rounds
    before signing), and ``sig`` is computed (0.3: bound to ``tenant_id`` or ``default``).
    Without a key the record must carry its ``sig``. Raises ValidationError naming the field.
    """
    record = msgspec.to_builtins(pcs) if isinstance(pcs, PCS) else dict(pcs)
    if signer is not None:
        record.pop("sig", None)
        record.setdefault("schema", SCHEMA)
        version = record.setdefault("version", pcs_version)
        if version != pcs_version:
            raise ValidationError("version", f"differs from the client's pcs_version {pcs_version}")
        if "pcs_id" not in record and {"merkle_root", "epoch", "shard_id"} <= record.keys():
            m, e, s = record["merkle_root"], record["epoch"], record["shard_id"]
            if isinstance(m, str) and type(e) is int and isinstance(s, str):
                record["pcs_id"] = compute_pcs_id(m, e, s)
        for name in ROUND9_FIELDS:
            value = record.get(name)
            if isinstance(value, float | int) and not isinstance(value, bool):
                if isinstance(value, float) and not math.isfinite(value):
                    continue  # check_rules names it
                record[name] = round9(value)
        record["sig"] = "unsigned"  # placeholder so the rules check everything but the sig
        check_rules(convert_record(record))
        del record["sig"]
        record["sig"] = sign_record(record, signer, tenant_id or DEFAULT_TENANT)
    else:
        check_rules(convert_record(record))
    return record


def submit_request(record: Mapping[str, Any], tenant_id: str | None) -> Request:
    """``POST /v1/pcs/submit`` of a prepared record."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-PCS-Schema-Version": str(record["version"]),
    }
    if tenant_id is not None:
        headers["X-Tenant-Id"] = tenant_id
    return Request("POST", SUBMIT_PATH, headers, _encode(record))


def health_request() -> Request:
    """``GET /health``."""
    return Request("GET", HEALTH_PATH, {"Accept": "application/json"})


def _json(response: httpx.Response) -> Any:
    ctype = response.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        return None
    try:
        return _decode(response.content)
    except msgspec.DecodeError:
        return None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def status_error(response: httpx.Response) -> APIStatusError:
    """The exception for a non-2xx answer; an off-spec body still gives the raw status."""
    error = field = detail = None
    obj = _json(response)
    if isinstance(obj, dict):
        try:
            body = msgspec.convert(obj, Error)
        except msgspec.ValidationError:
            pass
        else:
            error, field, detail = body.error, body.field, body.detail
    cls = STATUS_ERRORS.get(response.status_code, APIStatusError)
    return cls(
        response.status_code,
        error,
        field,
        response,
        detail=detail,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


def parse_submit(response: httpx.Response) -> VerifyResult:
    """200/202 -> VerifyResult; anything else (or an off-spec 2xx) raises APIStatusError."""
    if response.status_code not in (200, 202):
        raise status_error(response)
    obj = _json(response)
    try:
        result = msgspec.convert(obj, VerifyResult)
    except msgspec.ValidationError:
        raise APIStatusError(
            response.status_code, None, None, response, detail="answer is not a VerifyResult"
        ) from None
    return msgspec.structs.replace(
        result,
        status_code=response.status_code,
        replayed=response.headers.get("idempotent-replayed", "").lower() == "true",
        request_id=response.headers.get("x-request-id"),
    )


def parse_health(response: httpx.Response) -> Health:
    """200 -> Health (with the versions the server accepts); else APIStatusError."""
    if response.status_code != 200:
        raise status_error(response)
    obj = _json(response)
    if not isinstance(obj, dict) or not isinstance(obj.get("status"), str):
        raise APIStatusError(200, None, None, response, detail="answer is not a health status")
    versions = response.headers.get(VERSIONS_HEADER, "")
    accepted = tuple(v.strip() for v in versions.split(",") if v.strip() in PCS_VERSIONS)
    return Health(status=obj["status"], accepted_versions=accepted)


def retryable(status: int) -> bool:
    """408, 429 and 5xx are worth another attempt (SPEC section 12)."""
    return status in RETRY_STATUSES or 500 <= status <= 599


def retry_delay(
    retry: int,
    config: RetryConfig,
    rand: Callable[[], float],
    retry_after: float | None = None,
) -> float:
    """Seconds before retry number ``retry`` (1-based): ``Retry-After`` capped, else jitter."""
    if retry_after is not None:
        return min(retry_after, config.max_retry_after)
    return rand() * min(config.max_delay, config.base_delay * 2.0 ** (retry - 1))
