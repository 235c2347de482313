"""Deliver pending outbox entries over HTTP (SPEC section 5; the rules in agent/retry.py).

One request at a time, in queue order. A transient failure makes the whole deliverer wait
(the verifier is one resource: nobody is helped by hammering it with the other entries),
with the backoff of the current streak of failures. When the verifier answered (408, 429,
5xx) the failed entry goes behind the others, so one request the server keeps failing
cannot hold up the rest; when it did not answer (connection error, timeout) the same entry
probes again. Each attempt's number goes into the PCS ``attempt`` field. Every failed
attempt is recorded in the outbox and logged at INFO (status or error class, attempt,
next delay; never the key or the payload). Sleep, randomness and the clock are
injectable so tests never really wait.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx
import msgspec

from fractal_lba import failpoints
from fractal_lba.agent.build import stamp_attempt
from fractal_lba.agent.errors import AgentError
from fractal_lba.agent.outbox import Outbox
from fractal_lba.agent.records import Entry
from fractal_lba.agent.retry import RetryPolicy, classify, expired, parse_retry_after, retry_delay
from fractal_lba.contract import Signer

log = logging.getLogger("fractal_lba.agent")
_REASON_MAX = 200


def _clip(value: object) -> str | None:
    if isinstance(value, str):
        return value[:_REASON_MAX]
    return None


def server_reason(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """``(error, detail, field)`` from the server's JSON error body, or ``http_<status>``."""
    try:
        obj = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        obj = None
    if isinstance(obj, dict):
        error = _clip(obj.get("error")) or _clip(obj.get("reason"))
        if error:
            return error, _clip(obj.get("detail")), _clip(obj.get("field"))
    return f"http_{response.status_code}", None, None


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError under an httpx transport error (httpx -> httpcore -> socket)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


_TIMEOUTS = {
    httpx.ConnectTimeout: "connect timeout",
    httpx.ReadTimeout: "read timeout",
    httpx.WriteTimeout: "write timeout",
    httpx.PoolTimeout: "connection pool timeout",
}


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed: an HTTP answer (``status``) or none (``status`` None).

    ``error`` is a machine string (the server's error code, ``http_<status>``, or
    ``connect_error`` / ``timeout`` / ``connection_error``); ``detail`` says it for people.
    """

    status: int | None
    error: str
    detail: str | None = None
    field: str | None = None
    retry_after: float | None = None

    @staticmethod
    def of_transport(exc: httpx.TransportError) -> Failure:
        """A connection error or timeout, described without the URL or any payload."""
        name = type(exc).__name__
        for cls, what in _TIMEOUTS.items():
            if isinstance(exc, cls):
                return Failure(None, "timeout", f"{what} ({name})")
        if isinstance(exc, httpx.TimeoutException):
            return Failure(None, "timeout", f"timeout ({name})")
        os_err = _os_error(exc)
        cause = os.strerror(os_err.errno).lower() if os_err and os_err.errno else None
        if isinstance(exc, httpx.ConnectError):
            return Failure(None, "connect_error", f"{cause or 'cannot connect'} ({name})")
        if os_err is not None and os_err.errno == errno.ECONNRESET:
            cause = "connection reset"
        return Failure(None, "connection_error", f"{cause or 'connection lost'} ({name})")

    def describe(self) -> str:
        """``connection refused (ConnectError)`` or ``HTTP 503 store_unavailable``."""
        if self.status is None:
            return self.detail or self.error
        if self.error == f"http_{self.status}":
            return f"HTTP {self.status}"
        return f"HTTP {self.status} {self.error}"

    def short(self) -> str:
        """:meth:`describe` without the exception class: ``connection refused``."""
        return self.describe().split(" (", 1)[0]


@dataclass(frozen=True)
class Result:
    """How one entry ended in this run."""

    lsn: int
    pcs_id: str
    outcome: Literal["acked", "dead"]
    status: int | None
    attempts: int
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RetryNotice:
    """Attempt ``attempt`` of entry ``lsn`` failed transiently; the next try is in ``delay``."""

    lsn: int
    attempt: int
    failure: Failure
    delay: float

    def line(self) -> str:
        """The INFO line: what failed, which attempt, when the next one is."""
        extra = ""
        if self.failure.retry_after is not None:
            extra = f" (Retry-After {self.failure.retry_after:g} s)"
        return (
            f"retry: #{self.lsn} attempt {self.attempt} failed: {self.failure.describe()}; "
            f"next try in {self.delay:.1f} s{extra}"
        )


@dataclass(frozen=True)
class Report:
    """Summary of :meth:`Deliverer.deliver_pending`."""

    acked: int
    dead: int
    remaining: int


class DeliveryListener(Protocol):
    """Progress of a delivery round (the CLI's progress bar)."""

    def delivered(self, result: Result) -> None:
        """One entry was acked or dead-lettered."""

    def waiting(self, notice: RetryNotice) -> None:
        """An attempt failed transiently; delivery waits ``notice.delay`` seconds."""


class _Silent:
    def delivered(self, result: Result) -> None:
        pass

    def waiting(self, notice: RetryNotice) -> None:
        pass


class Deliverer:
    """Sends outbox entries to ``endpoint`` (the full submit URL), one at a time.

    ``signer``: re-signs the PCS per attempt for versions whose signature covers
    ``attempt`` (0.3 onwards); without one such PCS keep the attempt they were queued with.
    """

    def __init__(
        self,
        outbox: Outbox,
        endpoint: str,
        *,
        client: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 10.0,
        signer: Signer | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        try:
            url = httpx.URL(endpoint)
        except httpx.InvalidURL:
            raise AgentError("endpoint is not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise AgentError("endpoint must be an http:// or https:// URL with a host")
        self.outbox = outbox
        self.endpoint = endpoint
        self.policy = policy or RetryPolicy()
        self.signer = signer
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout)
        self._sleep = sleep
        self._rand = rand
        self.clock = clock
        self._stop = stop
        self._streak = 0  # consecutive transient failures: the verifier's health
        self._not_before = 0.0

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own_client:
            self._client.close()

    def __enter__(self) -> Deliverer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, entry: Entry, body: bytes) -> httpx.Response:
        headers = {
            "Content-Type": "application/json",
            "X-PCS-Schema-Version": entry.version,
        }
        if entry.tenant_id is not None:
            headers["X-Tenant-Id"] = entry.tenant_id
        return self._client.post(self.endpoint, content=body, headers=headers)

    def _send(self, entry: Entry, attempt: int) -> httpx.Response | Failure:
        body = stamp_attempt(entry.body, attempt, signer=self.signer, tenant_id=entry.tenant_id)
        try:
            response = self._post(entry, body)
        except httpx.UnsupportedProtocol:
            raise AgentError("endpoint must be an http:// or https:// URL") from None
        except httpx.TransportError as exc:
            return Failure.of_transport(exc)
        except httpx.HTTPError as exc:  # invalid URL and the like: retrying cannot help
            raise AgentError(f"cannot send to the endpoint: {type(exc).__name__}") from None
        failpoints.hit("agent.after_send")
        return response

    def attempt(self, entry: Entry) -> Result | RetryNotice:
        """One attempt at ``entry``; its outcome (ack, dead letter, retry) is made durable."""
        tries = self.outbox.tries(entry.lsn)
        attempt = (tries.count if tries else 0) + 1
        answer = self._send(entry, attempt)
        if isinstance(answer, httpx.Response):
            status = answer.status_code
            decision = classify(status)
            if decision == "ack":
                self.outbox.ack(entry.lsn, status)
                self._streak = 0
                return Result(entry.lsn, entry.pcs_id, "acked", status, attempt)
            error, detail, field = server_reason(answer)
            if decision == "final":
                self.outbox.dead_letter(
                    entry.lsn,
                    reason="rejected",
                    status=status,
                    error=error,
                    detail=detail,
                    field=field,
                    attempts=attempt,
                )
                self._streak = 0
                return Result(entry.lsn, entry.pcs_id, "dead", status, attempt, error, "rejected")
            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            failure = Failure(status, error, detail, field, retry_after)
        else:
            failure = answer
        self._streak += 1
        delay = retry_delay(self._streak, self.policy, self._rand, failure.retry_after)
        now = self.clock()
        self._not_before = now + delay
        if expired(now + delay - entry.queued_at, self.policy):
            self.outbox.dead_letter(
                entry.lsn,
                reason="expired",
                status=failure.status,
                error=failure.error,
                detail=failure.detail,
                field=failure.field,
                attempts=attempt,
            )
            log.warning(
                "dead letter: #%d expired after %d attempts (max age %g s): %s",
                entry.lsn,
                attempt,
                self.policy.max_age,
                failure.describe(),
            )
            return Result(
                entry.lsn, entry.pcs_id, "dead", failure.status, attempt, failure.error, "expired"
            )
        self.outbox.record_retry(
            entry.lsn,
            attempt=attempt,
            status=failure.status,
            error=failure.error,
            detail=failure.detail,
        )
        notice = RetryNotice(entry.lsn, attempt, failure, delay)
        log.info("%s", notice.line())
        return notice

    def deliver_pending(
        self, listener: DeliveryListener | None = None, *, until: float | None = None
    ) -> Report:
        """Deliver pending entries until none is left, ``stop()``, or (with ``until``) the
        next wait would end after that clock time; returns the counts of this call."""
        listener = listener or _Silent()
        queue = deque(self.outbox.pending())
        acked = dead = 0
        while queue and not self._stop():
            wait = self._not_before - self.clock()
            if wait > 0:
                if until is not None and self._not_before > until:
                    break
                self._sleep(wait)
            entry = queue[0]
            outcome = self.attempt(entry)
            if isinstance(outcome, Result):
                queue.popleft()
                if outcome.outcome == "acked":
                    acked += 1
                else:
                    dead += 1
                listener.delivered(outcome)
            else:
                listener.waiting(outcome)
                if outcome.failure.status is not None:
                    queue.rotate(-1)  # the verifier answered: let the others go first
        return Report(acked, dead, self.outbox.stats().pending)
