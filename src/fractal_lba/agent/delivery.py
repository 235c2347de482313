"""Deliver pending outbox entries over HTTP with retries (SPEC section 5).

200 / 202 -> ack. 429, 5xx and connection errors -> retry with exponential backoff and full
jitter (capped), honouring ``Retry-After`` (delta seconds or HTTP date). Any other status is
final -> dead letter with the server's machine-readable reason. Retries are bounded by
attempts and elapsed time, then the entry is dead-lettered as ``retries_exhausted``.
Sleep, randomness and the clock are injectable so tests never really wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx
import msgspec

from fractal_lba.agent.errors import AgentError
from fractal_lba.agent.outbox import Entry, Outbox

ACK_STATUSES = frozenset({200, 202})
_REASON_MAX = 200


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff ``uniform(0, min(max_delay, base_delay * 2**(retry-1)))``; 0 disables a limit."""

    base_delay: float = 0.5
    max_delay: float = 30.0
    max_attempts: int = 8
    max_elapsed: float = 300.0
    max_retry_after: float = 300.0


def backoff_delay(retry: int, policy: RetryPolicy, rand: Callable[[], float]) -> float:
    """Full-jitter delay before retry number ``retry`` (1-based)."""
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** max(0, retry - 1))
    return rand() * ceiling


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); else None."""
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
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


Decision = Literal["ack", "retry", "final"]


def classify(status: int) -> Decision:
    """200/202 ack; 429 and 5xx retry; everything else is final."""
    if status in ACK_STATUSES:
        return "ack"
    if status == 429 or 500 <= status <= 599:
        return "retry"
    return "final"


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


@dataclass(frozen=True)
class Result:
    """How one entry ended in this run."""

    lsn: int
    pcs_id: str
    outcome: Literal["acked", "dead"]
    status: int | None
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class Report:
    """Summary of :meth:`Deliverer.deliver_pending`."""

    acked: int
    dead: int
    remaining: int


class Deliverer:
    """Sends outbox entries to ``endpoint`` (the full submit URL) one at a time, in order."""

    def __init__(
        self,
        outbox: Outbox,
        endpoint: str,
        *,
        client: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
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
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout)
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._stop = stop

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own_client:
            self._client.close()

    def __enter__(self) -> Deliverer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, entry: Entry) -> httpx.Response:
        headers = {
            "Content-Type": "application/json",
            "X-PCS-Schema-Version": entry.version,
        }
        if entry.tenant_id is not None:
            headers["X-Tenant-Id"] = entry.tenant_id
        return self._client.post(self.endpoint, content=entry.body, headers=headers)

    def deliver(self, entry: Entry) -> Result:
        """Deliver one entry until it is acked or dead-lettered; both are made durable."""
        policy = self.policy
        started = self._clock()
        attempts = 0
        while True:
            attempts += 1
            status: int | None = None
            retry_after: float | None = None
            try:
                response = self._post(entry)
            except httpx.UnsupportedProtocol:
                raise AgentError("endpoint must be an http:// or https:// URL") from None
            except httpx.TransportError as exc:
                error = f"connection_error: {type(exc).__name__}"
            except httpx.HTTPError as exc:  # invalid URL and the like: retrying cannot help
                raise AgentError(f"cannot send to the endpoint: {type(exc).__name__}") from None
            else:
                status = response.status_code
                decision = classify(status)
                if decision == "ack":
                    self.outbox.ack(entry.lsn, status)
                    return Result(entry.lsn, entry.pcs_id, "acked", status, attempts)
                error, detail, field = server_reason(response)
                if decision == "final":
                    self.outbox.dead_letter(
                        entry.lsn,
                        status=status,
                        error=error,
                        detail=detail,
                        field=field,
                        attempts=attempts,
                    )
                    return Result(entry.lsn, entry.pcs_id, "dead", status, attempts, error)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            delay = backoff_delay(attempts, policy, self._rand)
            if retry_after is not None:
                delay = max(delay, min(retry_after, policy.max_retry_after))
            elapsed = self._clock() - started
            out_of_attempts = policy.max_attempts > 0 and attempts >= policy.max_attempts
            out_of_time = policy.max_elapsed > 0 and elapsed + delay > policy.max_elapsed
            if out_of_attempts or out_of_time:
                self.outbox.dead_letter(
                    entry.lsn,
                    status=status,
                    error="retries_exhausted",
                    detail=error,
                    attempts=attempts,
                )
                return Result(entry.lsn, entry.pcs_id, "dead", status, attempts, error)
            self._sleep(delay)

    def deliver_pending(self, on_result: Callable[[Result], None] | None = None) -> Report:
        """Deliver pending entries in queue order until done or ``stop()``; counts of this run."""
        acked = dead = 0
        for entry in self.outbox.pending():
            if self._stop():
                break
            result = self.deliver(entry)
            if result.outcome == "acked":
                acked += 1
            else:
                dead += 1
            if on_result is not None:
                on_result(result)
        return Report(acked, dead, self.outbox.stats().pending)
