"""Rate limiting (step 1 of the submit path) behind a small Protocol.

:class:`TokenBucketLimiter` is exact for one process. A shared limiter (Redis) and the daily
quota plug in by implementing :class:`RateLimiter`; each limit is reported as one
:class:`RatePolicyState`, which :func:`ratelimit_headers` renders as the IETF
``RateLimit-Policy`` / ``RateLimit`` header pair (draft-ietf-httpapi-ratelimit-headers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fractal_lba.tenancy.model import Tenant


@dataclass(frozen=True, slots=True)
class RatePolicyState:
    """One named limit: quota per window, what is left, seconds until it refills."""

    name: str
    quota: int
    window_s: int
    remaining: int
    reset_s: int


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a request may proceed; ``retry_after_s`` is set when it may not."""

    allowed: bool
    retry_after_s: int = 0
    policies: tuple[RatePolicyState, ...] = ()


ALLOWED = RateDecision(True)


class RateLimiter(Protocol):
    """Admission control per tenant."""

    async def acquire(self, tenant: Tenant) -> RateDecision:
        """Take one request's worth of allowance for ``tenant``."""
        ...


class TokenBucketLimiter:
    """In-process token bucket per tenant: ``token_rate`` per second up to ``burst`` tokens."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}  # tenant id -> [tokens, last refill]

    async def acquire(self, tenant: Tenant) -> RateDecision:
        rate = tenant.token_rate
        if rate <= 0:
            return ALLOWED
        burst = tenant.burst if tenant.burst > 0 else max(1.0, rate)
        now = self._clock()
        bucket = self._buckets.get(tenant.id)
        if bucket is None:
            bucket = self._buckets[tenant.id] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return ALLOWED
        bucket[0] = tokens
        wait = max(1, math.ceil((1.0 - tokens) / rate))
        state = RatePolicyState(
            name="rate",
            quota=max(1, math.floor(burst)),
            window_s=max(1, math.ceil(burst / rate)),
            remaining=0,
            reset_s=wait,
        )
        return RateDecision(False, retry_after_s=wait, policies=(state,))


def ratelimit_headers(decision: RateDecision) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Policy`` and ``RateLimit`` headers (plus ``Retry-After`` when refused)."""
    out: list[tuple[bytes, bytes]] = []
    if decision.policies:
        policy = ", ".join(f'"{p.name}";q={p.quota};w={p.window_s}' for p in decision.policies)
        state = ", ".join(f'"{p.name}";r={p.remaining};t={p.reset_s}' for p in decision.policies)
        out.append((b"ratelimit-policy", policy.encode("ascii")))
        out.append((b"ratelimit", state.encode("ascii")))
    if not decision.allowed:
        out.append((b"retry-after", str(decision.retry_after_s).encode("ascii")))
    return out
