"""``FractalLBAClient`` and ``AsyncFractalLBAClient``: thin sync/async shells over ``_core``.

Each shell only sends, sleeps and loops; what to send, how to read the answer and when to
retry are the shared core's. httpx exceptions are translated here, at the boundary.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from fractal_lba_client import _core
from fractal_lba_client._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ValidationError,
)
from fractal_lba_client._model import PCS
from fractal_lba_client._signing import SIGNING_ALGS, Signer, make_signer
from fractal_lba_client._tls import TLSConfig
from fractal_lba_client._types import Health, VerifyResult
from fractal_lba_client._versions import DEFAULT_PCS_VERSION, PCS_VERSIONS

DEFAULT_TIMEOUT = 10.0

Record = PCS | Mapping[str, Any]


class _Base:
    """Configuration shared by both clients (validated once, before any request)."""

    def __init__(
        self,
        base_url: str,
        tenant_id: str | None,
        signing_key: str | bytes | None,
        signing_alg: str,
        timeout: float,
        max_retries: int,
        pcs_version: str,
        retry: _core.RetryConfig | None,
        rand: Callable[[], float] | None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValidationError("base_url", "must start with http:// or https://")
        if pcs_version not in PCS_VERSIONS:
            raise ValidationError("pcs_version", f"must be one of {', '.join(PCS_VERSIONS)}")
        if signing_alg not in SIGNING_ALGS:
            raise ValidationError("signing_alg", f"must be one of {', '.join(SIGNING_ALGS)}")
        if tenant_id is not None and not tenant_id:
            raise ValidationError("tenant_id", "must not be empty")
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self.signing_alg = signing_alg
        self.pcs_version = pcs_version
        self.timeout = timeout
        self._signer: Signer | None = (
            None if signing_key is None else make_signer(signing_alg, signing_key)
        )
        self.retry = retry if retry is not None else _core.RetryConfig(max_retries=max_retries)
        self._rand = rand if rand is not None else random.random

    def __repr__(self) -> str:
        signed = "none" if self._signer is None else f"{self.signing_alg} (key ***)"
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, tenant_id={self.tenant_id!r}, "
            f"signing={signed}, pcs_version={self.pcs_version!r})"
        )

    def _submit_request(self, pcs: Record) -> _core.Request:
        record = _core.prepare_record(
            pcs, signer=self._signer, tenant_id=self.tenant_id, pcs_version=self.pcs_version
        )
        return _core.submit_request(record, self.tenant_id)

    def _next_delay(self, retry: int, failure: Exception) -> float | None:
        """Seconds to wait before retry ``retry``, or None when ``failure`` is final."""
        if retry > self.retry.max_retries:
            return None
        if isinstance(failure, APIStatusError):
            if not _core.retryable(failure.status_code):
                return None
            return _core.retry_delay(retry, self.retry, self._rand, failure.retry_after)
        return _core.retry_delay(retry, self.retry, self._rand)


def _translate(exc: httpx.HTTPError) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"request timed out ({type(exc).__name__})")
    return APIConnectionError(f"connection failed ({type(exc).__name__})")


class FractalLBAClient(_Base):
    """Submit PCS to a fractal-lba verifier (sync).

    ``signing_key`` (HMAC key text or bytes, or the Ed25519 seed with ``signing_alg=
    "ed25519"``) makes the client sign every PCS as ``pcs_version`` (0.3: bound to
    ``tenant_id``, ``default`` when None). 408, 429, 5xx and connection errors are retried up
    to ``max_retries`` times with full-jitter backoff, honouring ``Retry-After``; a resubmission
    is safe because pcs_id is the idempotency key. ``tls`` verifies the server's certificate
    against a CA bundle and can present a client certificate.
    """

    def __init__(
        self,
        base_url: str,
        tenant_id: str | None = None,
        signing_key: str | bytes | None = None,
        signing_alg: str = "hmac",
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        pcs_version: str = DEFAULT_PCS_VERSION,
        tls: TLSConfig | None = None,
        *,
        retry: _core.RetryConfig | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            base_url, tenant_id, signing_key, signing_alg, timeout, max_retries, pcs_version,
            retry, rand,
        )  # fmt: skip
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            verify=(tls or TLSConfig()).ssl_context(),
            follow_redirects=False,
        )

    def submit_pcs(self, pcs: Record) -> VerifyResult:
        """Validate, sign (with a key), send; the VerifyResult or an exception of the tree."""
        return _core.parse_submit(self._send(self._submit_request(pcs)))

    def health_check(self) -> Health:
        """``GET /health``: raises when the server is not alive."""
        return _core.parse_health(self._send(_core.health_request()))

    def _send(self, req: _core.Request) -> httpx.Response:
        retry = 0
        while True:
            retry += 1
            failure: Exception
            try:
                resp = self._http.request(
                    req.method, req.path, headers=req.headers, content=req.content
                )
            except httpx.HTTPError as exc:
                failure = _translate(exc)
            else:
                if not _core.retryable(resp.status_code):
                    return resp
                failure = _core.status_error(resp)
            delay = self._next_delay(retry, failure)
            if delay is None:
                if isinstance(failure, APIStatusError) and failure.response is not None:
                    return failure.response
                raise failure
            self._sleep(delay)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncFractalLBAClient(_Base):
    """The same client for asyncio: ``await submit_pcs(...)``, ``async with``."""

    def __init__(
        self,
        base_url: str,
        tenant_id: str | None = None,
        signing_key: str | bytes | None = None,
        signing_alg: str = "hmac",
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        pcs_version: str = DEFAULT_PCS_VERSION,
        tls: TLSConfig | None = None,
        *,
        retry: _core.RetryConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rand: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            base_url, tenant_id, signing_key, signing_alg, timeout, max_retries, pcs_version,
            retry, rand,
        )  # fmt: skip
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            verify=(tls or TLSConfig()).ssl_context(),
            follow_redirects=False,
        )

    async def submit_pcs(self, pcs: Record) -> VerifyResult:
        """Validate, sign (with a key), send; the VerifyResult or an exception of the tree."""
        return _core.parse_submit(await self._send(self._submit_request(pcs)))

    async def health_check(self) -> Health:
        """``GET /health``: raises when the server is not alive."""
        return _core.parse_health(await self._send(_core.health_request()))

    async def _send(self, req: _core.Request) -> httpx.Response:
        retry = 0
        while True:
            retry += 1
            failure: Exception
            try:
                resp = await self._http.request(
                    req.method, req.path, headers=req.headers, content=req.content
                )
            except httpx.HTTPError as exc:
                failure = _translate(exc)
            else:
                if not _core.retryable(resp.status_code):
                    return resp
                failure = _core.status_error(resp)
            delay = self._next_delay(retry, failure)
            if delay is None:
                if isinstance(failure, APIStatusError) and failure.response is not None:
                    return failure.response
                raise failure
            await self._sleep(delay)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
