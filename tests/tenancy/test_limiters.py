"""Limiter conformance (memory and Redis), quota arithmetic and durable quota counters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tenancy_helpers import FakeClock

from fractal_lba.policy import default_policy
from fractal_lba.tenancy import (
    LimiterUnavailable,
    RateLimiter,
    RedisLimiter,
    Tenant,
    TokenBucketLimiter,
    create_quota_store,
    ratelimit_headers,
)
from fractal_lba.tenancy.quota import retry_after_midnight, seconds_to_midnight, utc_day

pytestmark = pytest.mark.anyio

POLICY = default_policy()


def tenant(tid: str = "acme", **kw: float) -> Tenant:
    return Tenant(id=tid, keyring=None, policy=POLICY, **kw)  # type: ignore[arg-type]


def test_day_arithmetic() -> None:
    t = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC).timestamp()
    assert utc_day(t) == "2026-03-01" and utc_day(t + 1) == "2026-03-02"
    assert seconds_to_midnight(t) == 1.0 and seconds_to_midnight(t + 1) == 86400.0
    assert retry_after_midnight(t + 0.75) == 1
    assert retry_after_midnight(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()) == 43200


LIMITERS = [pytest.param("memory"), pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=LIMITERS)
async def limiter(
    request: pytest.FixtureRequest, clock: FakeClock, namespace: str
) -> AsyncIterator[RateLimiter]:
    lim: RateLimiter
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        lim = RedisLimiter(url, namespace=namespace, clock=clock, global_rate=50.0)
    else:
        lim = TokenBucketLimiter(clock, global_rate=50.0)
    await lim.open()
    try:
        yield lim
    finally:
        await lim.close()


async def test_bucket_burst_refill_and_retry_after(limiter: RateLimiter, clock: FakeClock) -> None:
    t = tenant(token_rate=2.0, burst=4.0)
    assert [(await limiter.acquire(t)).allowed for _ in range(5)] == [True] * 4 + [False]
    refused = await limiter.acquire(t)
    assert refused.cause == "rate" and refused.retry_after_s == 1
    headers = dict(ratelimit_headers(refused))
    assert headers[b"ratelimit-policy"] == b'"rate";q=4;w=2'
    assert headers[b"ratelimit"] == b'"rate";r=0;t=1' and headers[b"retry-after"] == b"1"
    clock.advance(0.5)  # one token back
    assert (await limiter.acquire(t)).allowed
    assert not (await limiter.acquire(t)).allowed
    slow = tenant("slow", token_rate=0.1, burst=1.0)
    assert (await limiter.acquire(slow)).allowed
    assert (await limiter.acquire(slow)).retry_after_s == 10
    use = await limiter.usage(t)
    assert use.tokens_left == 0.0 and use.bucket_size == 4.0


async def test_quota_boundary_at_midnight(limiter: RateLimiter, clock: FakeClock) -> None:
    clock.set(datetime(2026, 3, 1, 23, 59, 58, tzinfo=UTC))
    t = tenant(daily_quota=2)
    assert [(await limiter.acquire(t)).allowed for _ in range(3)] == [True, True, False]
    refused = await limiter.acquire(t)
    assert refused.cause == "quota" and refused.retry_after_s == 2
    assert dict(ratelimit_headers(refused))[b"ratelimit"] == b'"daily";r=0;t=2'
    clock.set(datetime(2026, 3, 1, 23, 59, 59, 999000, tzinfo=UTC))
    assert (await limiter.acquire(t)).retry_after_s == 1
    clock.set(datetime(2026, 3, 2, tzinfo=UTC))
    assert [(await limiter.acquire(t)).allowed for _ in range(3)] == [True, True, False]
    use = await limiter.usage(t)
    assert (use.day, use.quota_used, use.quota_resets_in_s) == ("2026-03-02", 2, 86400)


async def test_quota_refusal_takes_no_tokens(limiter: RateLimiter, clock: FakeClock) -> None:
    t = tenant(token_rate=1.0, burst=3.0, daily_quota=1)
    assert (await limiter.acquire(t)).allowed
    for _ in range(5):
        assert (await limiter.acquire(t)).cause == "quota"
    assert (await limiter.usage(t)).tokens_left == 2.0


async def test_global_bucket_is_shared_but_not_drained_by_refused(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    noisy = tenant("noisy", token_rate=10.0, burst=10.0)
    quiet = tenant("quiet", token_rate=100.0, burst=100.0)
    for _ in range(1000):  # noisy floods: only its 10 take global tokens
        await limiter.acquire(noisy)
    admitted = [(await limiter.acquire(quiet)).allowed for _ in range(45)]
    assert admitted == [True] * 40 + [False] * 5  # global 50 = 10 (noisy) + 40 (quiet)
    refused = await limiter.acquire(quiet)
    assert refused.cause == "global" and refused.retry_after_s == 1
    assert b'"global";q=50;w=1' in dict(ratelimit_headers(refused))[b"ratelimit-policy"]


async def test_unlimited_tenant_only_meets_the_global_limit(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    free = tenant("free")
    assert sum([(await limiter.acquire(free)).allowed for _ in range(60)]) == 50
    assert (await limiter.usage(free)).tokens_left is None


QUOTA_BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.mark.parametrize("backend", QUOTA_BACKENDS)
async def test_quota_counters_survive_a_restart(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, namespace: str,
    clock: FakeClock,
) -> None:  # fmt: skip
    url = request.getfixturevalue("redis_url") if backend == "redis" else "redis://unused"
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else "unused"

    def make() -> TokenBucketLimiter:
        store = create_quota_store(backend, data_dir=tmp_path, redis_url=url, postgres_dsn=dsn,
                                   namespace=namespace)  # fmt: skip
        return TokenBucketLimiter(clock, quota_store=store, flush_interval=3600)

    t = tenant(daily_quota=5)
    first = make()
    await first.open()
    assert [(await first.acquire(t)).allowed for _ in range(3)] == [True] * 3
    await first.close()  # flushes
    second, other = make(), make()  # a restarted process, and a second worker
    await second.open()
    await other.open()
    try:
        assert (await second.usage(t)).quota_used == 3
        assert [(await second.acquire(t)).allowed for _ in range(3)] == [True, True, False]
        await second.flush()
        assert (await other.usage(t)).quota_used == 5  # learns the shared total
        assert not (await other.acquire(t)).allowed
    finally:
        await second.close()
        await other.close()


async def test_limiter_fails_closed_when_quota_store_is_down(
    tmp_path: Path, clock: FakeClock
) -> None:
    from fractal_lba.tenancy.quota import RedisQuotaStore

    store = RedisQuotaStore("redis://127.0.0.1:1/0", op_timeout=0.5)
    lim = TokenBucketLimiter(clock, quota_store=store)
    with pytest.raises(LimiterUnavailable):
        await lim.open()
    with pytest.raises(LimiterUnavailable):
        await lim.acquire(tenant(daily_quota=5))
    assert (await lim.acquire(tenant(token_rate=1.0))).allowed  # no quota: no store needed
    await store.close()


async def test_redis_limiter_down_raises(clock: FakeClock) -> None:
    lim = RedisLimiter("redis://127.0.0.1:1/0", clock=clock, op_timeout=0.5)
    with pytest.raises(LimiterUnavailable):
        await lim.acquire(tenant(token_rate=1.0))
    await lim.close()
