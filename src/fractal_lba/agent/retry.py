"""When delivery retries, how long it waits and when it gives up (SPEC sections 5 and 12).

200 / 202 ack. Transient failures — no answer (connection error, timeout), 408, 429 and
5xx — are retried with capped exponential backoff and full jitter, honouring ``Retry-After``
(delta seconds or HTTP date, itself capped), for as long as the entry is younger than
``max_age``; only then is it dead-lettered (reason ``expired``). An attempt count never
dead-letters. Every other status is final: the entry is dead-lettered at once (``rejected``).
Pure functions; the randomness and the clock are the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

ACK_STATUSES = frozenset({200, 202})
TRANSIENT_STATUSES = frozenset({408, 429})
DEFAULT_MAX_AGE = 7 * 86400.0

Decision = Literal["ack", "retry", "final"]


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff ``uniform(0, min(max_delay, base_delay * 2**(retry-1)))``.

    ``max_age``: seconds after queueing that a transiently failing entry is given up
    (0: never). ``max_retry_after``: the largest ``Retry-After`` honoured.
    """

    base_delay: float = 0.5
    max_delay: float = 30.0
    max_age: float = DEFAULT_MAX_AGE
    max_retry_after: float = 300.0


def classify(status: int) -> Decision:
    """200/202 ack; 408, 429 and 5xx retry; everything else is final."""
    if status in ACK_STATUSES:
        return "ack"
    if status in TRANSIENT_STATUSES or 500 <= status <= 599:
        return "retry"
    return "final"


def backoff_delay(retry: int, policy: RetryPolicy, rand: Callable[[], float]) -> float:
    """Full-jitter delay before retry number ``retry`` (1-based)."""
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** max(0, min(retry - 1, 62)))
    return rand() * ceiling


def retry_delay(
    retry: int, policy: RetryPolicy, rand: Callable[[], float], retry_after: float | None
) -> float:
    """The backoff delay, raised to the server's (capped) ``Retry-After`` when it asks more."""
    delay = backoff_delay(retry, policy, rand)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_retry_after))
    return delay


def expired(age_at_next_try: float, policy: RetryPolicy) -> bool:
    """Whether an entry that would next be tried at this age is past the age limit."""
    return policy.max_age > 0 and age_at_next_try > policy.max_age


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
