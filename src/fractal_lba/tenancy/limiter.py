"""Rate limiting and daily quotas (step 1 of the submit path) behind a small Protocol.

Three limits, checked in this order, and a request consumes from all of them or none:

1. the tenant's daily quota (``daily_quota`` admitted requests per UTC day),
2. the tenant's token bucket (``token_rate`` per second up to ``burst``),
3. the global token bucket over all tenants (``GLOBAL_TOKEN_RATE``).

A tenant refused by its own limits takes nothing from the global bucket, so a noisy tenant
cannot starve the others through it. Each limit is reported as one :class:`RatePolicyState`,
which :func:`ratelimit_headers` renders as the IETF ``RateLimit-Policy`` / ``RateLimit``
pair (draft-ietf-httpapi-ratelimit-headers); ``Retry-After`` is the seconds until a token
(rate) or until 00:00 UTC (quota).

:class:`TokenBucketLimiter` keeps buckets in the process and quota counters in a
:class:`~fractal_lba.tenancy.quota.QuotaStore` (write-behind, flushed every
``flush_interval`` seconds and at shutdown; a crash loses at most that much counting).
:class:`~fractal_lba.tenancy.redis_limiter.RedisLimiter` does all three in one atomic Redis
script per request, exact across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from fractal_lba.stores import StoreError
from fractal_lba.tenancy.errors import LimiterUnavailable
from fractal_lba.tenancy.model import Tenant
from fractal_lba.tenancy.quota import (
    DAY_S,
    MemoryQuotaStore,
    QuotaStore,
    retry_after_midnight,
    utc_day,
)

log = logging.getLogger("fractal_lba.tenancy")

Cause = Literal["rate", "quota", "global"]


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
    """Whether a request may proceed; ``retry_after_s`` and ``cause`` are set when not."""

    allowed: bool
    retry_after_s: int = 0
    policies: tuple[RatePolicyState, ...] = ()
    cause: Cause | None = None


ALLOWED = RateDecision(True)


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """A tenant's allowance right now (``GET /v1/tenants/{id}/usage``)."""

    token_rate: float
    bucket_size: float
    tokens_left: float | None
    """``None`` when the tenant has no rate limit."""
    daily_quota: int
    quota_used: int
    day: str
    quota_resets_in_s: int


class RateLimiter(Protocol):
    """Admission control per tenant (and globally)."""

    name: str

    @property
    def global_limited(self) -> bool:
        """True when a global rate applies, so every request must go through acquire."""
        ...

    async def open(self) -> None:
        """Connect / load; raise :class:`LimiterUnavailable` when the backend is down."""
        ...

    async def acquire(self, tenant: Tenant) -> RateDecision:
        """Take one request's worth of allowance for ``tenant`` (all limits or none)."""
        ...

    async def usage(self, tenant: Tenant) -> LimitUsage:
        """Read ``tenant``'s allowance without consuming any."""
        ...

    async def close(self) -> None:
        """Persist what is pending and release resources. Idempotent."""
        ...


def bucket_wait(tokens: float, rate: float) -> int:
    """Whole seconds until a bucket at ``tokens`` refilling at ``rate``/s holds one token."""
    if tokens >= 1.0:
        return 0
    return max(1, math.ceil((1.0 - tokens) / rate))


def _rate_state(name: str, rate: float, size: float, tokens: float) -> RatePolicyState:
    return RatePolicyState(
        name=name,
        quota=max(1, math.floor(size)),
        window_s=max(1, math.ceil(size / rate)),
        remaining=max(0, math.floor(tokens)),
        reset_s=bucket_wait(tokens, rate),
    )


def refusal(
    tenant: Tenant,
    cause: Cause,
    now: float,
    *,
    tokens: float,
    quota_used: int,
    global_rate: float = 0.0,
    global_tokens: float = 0.0,
) -> RateDecision:
    """The 429 decision for ``cause``, reporting every limit that applies to ``tenant``."""
    policies: list[RatePolicyState] = []
    if tenant.token_rate > 0:
        policies.append(_rate_state("rate", tenant.token_rate, tenant.bucket_size, tokens))
    if tenant.daily_quota > 0:
        policies.append(
            RatePolicyState(
                name="daily",
                quota=tenant.daily_quota,
                window_s=DAY_S,
                remaining=max(0, tenant.daily_quota - quota_used),
                reset_s=retry_after_midnight(now),
            )
        )
    if cause == "global":
        policies.append(_rate_state("global", global_rate, max(1.0, global_rate), global_tokens))
    if cause == "quota":
        retry = retry_after_midnight(now)
    elif cause == "rate":
        retry = bucket_wait(tokens, tenant.token_rate)
    else:
        retry = bucket_wait(global_tokens, global_rate)
    return RateDecision(False, retry_after_s=max(1, retry), policies=tuple(policies), cause=cause)


class _Bucket:
    """Token bucket state; ``level`` refills lazily (no timers)."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp

    def level(self, now: float, rate: float, size: float) -> float:
        if now > self.stamp:
            self.tokens = min(size, self.tokens + (now - self.stamp) * rate)
            self.stamp = now
        return min(self.tokens, size)


class TokenBucketLimiter:
    """In-process buckets (per tenant + global) and daily quotas persisted in a QuotaStore.

    Exact for one process. With several workers or replicas each keeps its own buckets (use
    ``RATE_LIMIT_BACKEND=redis`` for exact shared limits); quota totals are shared through
    the store, each process learning the others' counts at every flush.
    """

    name = "memory"

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        global_rate: float = 0.0,
        quota_store: QuotaStore | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        self._clock = clock
        self._global_rate = global_rate
        self._global = _Bucket(max(1.0, global_rate), clock()) if global_rate > 0 else None
        self._store: QuotaStore = quota_store if quota_store is not None else MemoryQuotaStore()
        self._flush_interval = flush_interval
        self._buckets: dict[str, _Bucket] = {}
        self._base: dict[tuple[str, str], int] = {}  # (day, tenant) -> stored total
        self._pending: dict[tuple[str, str], int] = {}  # admitted, not yet flushed
        self._inflight: dict[tuple[str, str], int] = {}  # being flushed right now
        self._loading: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    @property
    def global_limited(self) -> bool:
        """Whether every request must pass through :meth:`acquire` (a global rate is set)."""
        return self._global is not None

    async def open(self) -> None:
        try:
            await self._store.open()
        except StoreError as exc:
            raise LimiterUnavailable(f"quota store: {exc}") from None
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name="flk-quota-flush")

    async def acquire(self, tenant: Tenant) -> RateDecision:
        now = self._clock()
        used = 0
        key = ("", "")
        if tenant.daily_quota > 0:
            key = (utc_day(now), tenant.id)
            used = await self._used(key)
            if used >= tenant.daily_quota:
                tokens = self._tenant_level(tenant, now)
                return refusal(tenant, "quota", now, tokens=tokens, quota_used=used)
        bucket: _Bucket | None = None
        tokens = 0.0
        if tenant.token_rate > 0:
            bucket = self._bucket(tenant, now)
            tokens = bucket.level(now, tenant.token_rate, tenant.bucket_size)
            if tokens < 1.0:
                return refusal(tenant, "rate", now, tokens=tokens, quota_used=used)
        if self._global is not None:
            g = self._global.level(now, self._global_rate, max(1.0, self._global_rate))
            if g < 1.0:
                return refusal(
                    tenant, "global", now, tokens=tokens, quota_used=used,
                    global_rate=self._global_rate, global_tokens=g,
                )  # fmt: skip
            self._global.tokens = g - 1.0
        if bucket is not None:
            bucket.tokens = tokens - 1.0
        if tenant.daily_quota > 0:
            self._pending[key] = self._pending.get(key, 0) + 1
        return ALLOWED

    async def usage(self, tenant: Tenant) -> LimitUsage:
        now = self._clock()
        key = (utc_day(now), tenant.id)
        return LimitUsage(
            token_rate=tenant.token_rate,
            bucket_size=tenant.bucket_size,
            tokens_left=self._tenant_level(tenant, now) if tenant.token_rate > 0 else None,
            daily_quota=tenant.daily_quota,
            quota_used=await self._used(key),
            day=key[0],
            quota_resets_in_s=retry_after_midnight(now),
        )

    async def flush(self) -> None:
        """Write pending quota counts to the store and refresh totals (other workers')."""
        async with self._flush_lock:
            if not self._pending and not self._base:
                return
            self._inflight, self._pending = self._pending, {}
            by_day: dict[str, dict[str, int]] = {}
            for day, tid in {*self._inflight, *self._base}:
                by_day.setdefault(day, {})[tid] = self._inflight.get((day, tid), 0)
            today = utc_day(self._clock())
            try:
                for day, deltas in by_day.items():
                    totals = await self._add(day, deltas)
                    for tid, total in totals.items():
                        self._base[(day, tid)] = total
                        self._inflight.pop((day, tid), None)
            except LimiterUnavailable:
                for k, n in self._inflight.items():
                    self._pending[k] = self._pending.get(k, 0) + n
                raise
            finally:
                self._inflight = {}
            for k in [k for k in self._base if k[0] < today and k not in self._pending]:
                del self._base[k]

    async def close(self) -> None:
        task, self._flusher = self._flusher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        except LimiterUnavailable:
            log.error("quota counters could not be persisted at shutdown")
        await self._store.close()

    # -- internals -------------------------------------------------------------------------
    async def _add(self, day: str, deltas: dict[str, int]) -> dict[str, int]:
        """The quota store's add; its StoreError is this limiter's LimiterUnavailable."""
        try:
            return await self._store.add(day, deltas)
        except StoreError as exc:
            raise LimiterUnavailable(f"quota store: {exc}") from None

    def _bucket(self, tenant: Tenant, now: float) -> _Bucket:
        bucket = self._buckets.get(tenant.id)
        if bucket is None:
            bucket = self._buckets[tenant.id] = _Bucket(tenant.bucket_size, now)
        return bucket

    def _tenant_level(self, tenant: Tenant, now: float) -> float:
        if tenant.token_rate <= 0:
            return 0.0
        return self._bucket(tenant, now).level(now, tenant.token_rate, tenant.bucket_size)

    async def _used(self, key: tuple[str, str]) -> int:
        if key not in self._base:
            await self._load(key)
        return self._base[key] + self._inflight.get(key, 0) + self._pending.get(key, 0)

    async def _load(self, key: tuple[str, str]) -> None:
        """The stored total of a (day, tenant) seen for the first time (one read at a time)."""
        waiting = self._loading.get(key)
        if waiting is not None:
            await asyncio.shield(waiting)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loading[key] = fut
        try:
            totals = await self._add(key[0], {key[1]: 0})
            self._base.setdefault(key, totals[key[1]])
            fut.set_result(None)
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        except BaseException:
            fut.cancel()
            raise
        finally:
            del self._loading[key]

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except LimiterUnavailable as exc:
                log.warning("quota counters not persisted yet: %s", exc)


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
