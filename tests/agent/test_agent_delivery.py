"""Delivery: classification, full-jitter backoff, Retry-After, age limit, DLQ, retry lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from agent_helpers import Answer, Receiver

from fractal_lba.agent import (
    AgentError,
    Deliverer,
    Outbox,
    RetryPolicy,
    backoff_delay,
    build_pcs,
    classify,
    load_signer,
    parse_events,
    parse_retry_after,
)
from fractal_lba.agent.retry import DEFAULT_MAX_AGE
from fractal_lba.contract import PCS, KeyRing, VerificationKey, decode_pcs, decode_signature

KEY = "delivery-test-key"
SIGNER = load_signer("hmac", KEY)
T0 = 1_750_000_000.0


def make_pcs(epoch: int) -> PCS:
    ev = parse_events(f"timestamp,x,y,z\n{epoch},0.{epoch + 1},0.5,0.25\n".encode(), "csv")
    return build_pcs(ev, shard_id="s", epoch=epoch, signer=SIGNER, version="0.2")


class FakeTime:
    """Injected wall clock + sleep: sleeping advances the clock, nothing really waits."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Script = list[httpx.Response | Exception]


def scripted(answers: Script) -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = answers.pop(0) if answers else httpx.Response(200)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def outbox(path: Path, ft: FakeTime) -> Outbox:
    return Outbox(path, clock=ft.clock)


def deliverer(
    ob: Outbox,
    client: httpx.Client,
    ft: FakeTime,
    *,
    rand: Callable[[], float] = lambda: 1.0,
    **policy: float,
) -> Deliverer:
    return Deliverer(
        ob,
        "http://verifier.test/v1/pcs/submit",
        client=client,
        policy=RetryPolicy(**policy),  # type: ignore[arg-type]
        sleep=ft.sleep,
        rand=rand,
        clock=ft.clock,
    )


def attempts(seen: list[httpx.Request]) -> list[int]:
    return [json.loads(r.content).get("attempt", 1) for r in seen]


def test_classify() -> None:
    assert [classify(s) for s in (200, 202)] == ["ack", "ack"]
    assert [classify(s) for s in (408, 429, 500, 502, 503, 599)] == ["retry"] * 6
    assert [classify(s) for s in (201, 204, 301, 400, 401, 404, 409, 413, 415, 422)] == (
        ["final"] * 10
    )


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    assert [backoff_delay(n, policy, lambda: 1.0) for n in range(1, 7)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
        4.0,
    ]
    assert backoff_delay(3, policy, lambda: 0.25) == 0.5
    assert backoff_delay(3, policy, lambda: 0.0) == 0.0
    assert backoff_delay(10_000, policy, lambda: 1.0) == 4.0  # no overflow after days
    assert RetryPolicy().max_age == DEFAULT_MAX_AGE == 7 * 86400


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == (
        90.0
    )
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-3", now) is None


def test_headers_and_ack(tmp_path: Path) -> None:
    client, seen = scripted([httpx.Response(202)])
    ft = FakeTime()
    with outbox(tmp_path, ft) as ob:
        pcs = make_pcs(1)
        ob.enqueue(pcs, tenant_id="tenant-a")
        report = deliverer(ob, client, ft).deliver_pending()
        assert (report.acked, report.dead, report.remaining) == (1, 0, 0)
        assert ob.stats().acked == 1
    (req,) = seen
    assert req.method == "POST" and str(req.url) == "http://verifier.test/v1/pcs/submit"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-PCS-Schema-Version"] == pcs.version
    assert req.headers["X-Tenant-Id"] == "tenant-a"
    assert json.loads(req.content)["pcs_id"] == pcs.pcs_id
    assert attempts(seen) == [1]
    assert ft.sleeps == []


def test_retries_then_ack_honouring_retry_after_with_the_attempt_number(tmp_path: Path) -> None:
    client, seen = scripted(
        [
            httpx.Response(503),
            httpx.ConnectError("refused"),
            httpx.Response(429, headers={"Retry-After": "12"}),
            httpx.Response(408),
            httpx.Response(200),
        ]
    )
    ft = FakeTime()
    with outbox(tmp_path, ft) as ob:
        ob.enqueue(make_pcs(1))
        report = deliverer(ob, client, ft).deliver_pending()
        assert (report.acked, report.dead, report.remaining) == (1, 0, 0)
    # rand() = 1.0: ceilings 0.5, 1, then max(2, Retry-After 12), then 4
    assert ft.sleeps == [0.5, 1.0, 12.0, 4.0]
    assert attempts(seen) == [1, 2, 3, 4, 5]  # the server sees who is retrying
    # 0.1 / 0.2: attempt is not signed, so the stamped copy still verifies as it is
    sent = decode_pcs(seen[-1].content)
    ring = KeyRing([VerificationKey.from_text("k", "hmac", KEY)])
    ring.verify(sent.signed_payload(), decode_signature(sent.sig), now=0)


def test_transient_failures_are_never_dead_lettered_by_count(tmp_path: Path) -> None:
    failures: Script = [httpx.Response(503)] * 150 + [httpx.ConnectError("refused")] * 150
    client, seen = scripted([*failures, httpx.Response(200)])
    ft = FakeTime()
    with Outbox(tmp_path, clock=ft.clock, fsync=False) as ob:
        ob.enqueue(make_pcs(1))
        report = deliverer(ob, client, ft).deliver_pending()
        assert (report.acked, report.dead) == (1, 0)
        assert ob.dead_letters() == []
    assert len(seen) == 301 and attempts(seen)[-1] == 301
    assert max(ft.sleeps) == 30.0  # capped


def test_the_age_limit_dead_letters_as_expired(tmp_path: Path) -> None:
    client, seen = scripted([httpx.ConnectError("refused")] * 1000)
    ft = FakeTime()
    with outbox(tmp_path, ft) as ob:
        lsn = ob.enqueue(make_pcs(1)).lsn
        ft.now += 100  # queued 100 s ago
        report = deliverer(ob, client, ft, max_age=600).deliver_pending()
        assert (report.acked, report.dead, report.remaining) == (0, 1, 0)
        (dead,) = ob.dead_letters()
    # never waits past the limit: the last try is before queued_at + 600
    assert ft.now - T0 <= 600
    assert ft.now - T0 + 30 > 600  # and it kept trying until the next wait would cross it
    assert dead.id == lsn and dead.reason == "expired" and dead.status is None
    assert dead.error == "connect_error" and dead.attempts == len(seen)
    assert dead.first_attempt_at is not None and dead.first_attempt_at < dead.last_attempt_at


def test_a_final_4xx_dead_letters_at_once_even_after_transient_failures(tmp_path: Path) -> None:
    body = {"error": "invalid_pcs", "field": "D_hat", "detail": "must be a finite number"}
    client, seen = scripted(
        [httpx.Response(503), httpx.Response(200), httpx.Response(400, json=body)]
    )
    ft = FakeTime()
    with outbox(tmp_path, ft) as ob:
        first = ob.enqueue(make_pcs(1)).lsn
        ob.enqueue(make_pcs(2))
        report = deliverer(ob, client, ft).deliver_pending()
        assert (report.acked, report.dead, report.remaining) == (1, 1, 0)
        (dead,) = ob.dead_letters()
    assert dead.id == first and dead.reason == "rejected" and dead.attempts == 2
    assert (dead.status, dead.error, dead.field) == (400, "invalid_pcs", "D_hat")
    assert dead.detail == "must be a finite number"
    # 503 for entry 1 -> it goes behind entry 2 (acked), then its 400 is final at once
    assert [json.loads(r.content)["epoch"] for r in seen] == [1, 2, 1]
    assert ft.sleeps == [1.0 * 0.5]


def test_non_json_4xx_reason(tmp_path: Path) -> None:
    client, _ = scripted([httpx.Response(404, text="<html>nope</html>")])
    ft = FakeTime()
    with outbox(tmp_path, ft) as ob:
        ob.enqueue(make_pcs(1))
        deliverer(ob, client, ft).deliver_pending()
        (dead,) = ob.dead_letters()
    assert dead.error == "http_404" and dead.status == 404


def test_no_answer_probes_with_the_same_entry_an_answer_rotates(tmp_path: Path) -> None:
    client, seen = scripted([httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
    ft = FakeTime()
    with outbox(tmp_path, ft) as ob:
        for i in (1, 2):
            ob.enqueue(make_pcs(i))
        deliverer(ob, client, ft).deliver_pending()
    assert [json.loads(r.content)["epoch"] for r in seen] == [1, 1, 1, 2]
    client, seen = scripted([httpx.Response(500), httpx.Response(502)])
    with outbox(tmp_path / "b", ft) as ob:
        for i in (1, 2, 3):
            ob.enqueue(make_pcs(i))
        deliverer(ob, client, ft).deliver_pending()
    # a server that keeps failing one request cannot hold up the others
    assert [json.loads(r.content)["epoch"] for r in seen] == [1, 2, 3, 1, 2]


def test_retry_after_is_capped(tmp_path: Path) -> None:
    client, _ = scripted([httpx.Response(503, headers={"Retry-After": "86400"})])
    ft = FakeTime()
    with outbox(tmp_path, ft) as ob:
        ob.enqueue(make_pcs(1))
        deliverer(ob, client, ft, max_retry_after=60).deliver_pending()
    assert ft.sleeps == [60.0]


def test_until_returns_with_the_entry_pending_and_the_backoff_kept(tmp_path: Path) -> None:
    client, seen = scripted([httpx.ConnectError("refused")] * 3)
    ft = FakeTime()
    with outbox(tmp_path, ft) as ob:
        ob.enqueue(make_pcs(1))
        d = deliverer(ob, client, ft, base_delay=10, max_delay=10)
        report = d.deliver_pending(until=ft.now + 5)  # the first retry is due in 10 s
        assert (report.acked, report.remaining) == (0, 1) and len(seen) == 1
        assert ft.sleeps == []
        report = d.deliver_pending(until=ft.now + 25)  # two more tries fit, then success
        assert report.remaining == 1 and len(seen) == 3 and ft.sleeps == [10.0, 10.0]
        assert d.deliver_pending().acked == 1
    assert attempts(seen) == [1, 2, 3, 4]


def test_attempt_counts_and_the_last_error_survive_a_restart(tmp_path: Path) -> None:
    ft = FakeTime()
    client, _ = scripted([httpx.Response(503, json={"error": "store_unavailable"})] * 2)
    with outbox(tmp_path, ft) as ob:
        lsn = ob.enqueue(make_pcs(1)).lsn
        deliverer(ob, client, ft).deliver_pending(until=ft.now + 1.0)
    stats = Outbox.read_stats(tmp_path)  # what `flk agent status` shows, without the lock
    assert stats.last_failure is not None and stats.last_failure.lsn == lsn
    tries = stats.last_failure.tries
    assert (tries.count, tries.status, tries.error) == (2, 503, "store_unavailable")
    assert stats.oldest_pending_lsn == lsn and stats.oldest_queued_at == pytest.approx(T0, abs=0.01)
    client, seen = scripted([httpx.Response(200)])
    with outbox(tmp_path, ft) as ob:
        assert ob.tries(lsn) is not None
        deliverer(ob, client, ft).deliver_pending()
        assert ob.tries(lsn) is None
    assert attempts(seen) == [3]
    assert Outbox.read_stats(tmp_path).last_failure is None


def test_one_info_line_per_retry_without_key_or_payload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = scripted(
        [
            httpx.ConnectError("[Errno 111] Connection refused"),
            httpx.Response(503, headers={"Retry-After": "3"}, json={"error": "store_unavailable"}),
            httpx.Response(200),
        ]
    )
    ft = FakeTime()
    pcs = make_pcs(1)
    with caplog.at_level(logging.INFO, logger="fractal_lba.agent"), outbox(tmp_path, ft) as ob:
        lsn = ob.enqueue(pcs).lsn
        deliverer(ob, client, ft).deliver_pending()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert lines == [
        f"retry: #{lsn} attempt 1 failed: cannot connect (ConnectError); next try in 0.5 s",
        f"retry: #{lsn} attempt 2 failed: HTTP 503 store_unavailable; next try in 3.0 s "
        "(Retry-After 3 s)",
    ]
    for secret in (KEY, pcs.sig, pcs.merkle_root, pcs.pcs_id, str(pcs.D_hat)):
        assert all(secret not in line for line in lines)


def test_invalid_endpoint_is_an_agent_error(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        ob.enqueue(make_pcs(1))
        for bad in ("ftp://nowhere/x", "verifier:8080/v1/pcs/submit", "http://"):
            with pytest.raises(AgentError, match="endpoint"):
                Deliverer(ob, bad)
        assert ob.stats().pending == 1


def test_against_a_real_http_receiver(tmp_path: Path) -> None:
    script = [
        Answer(503, headers={"Retry-After": "0"}),
        Answer(429, headers={"Retry-After": "0"}),
        Answer(200),
        Answer(202),
        Answer(400, body={"error": "pcs_id_mismatch", "field": "pcs_id"}),
    ]
    ft = FakeTime()
    pcs = [make_pcs(i) for i in range(3)]
    with Receiver(script) as rx, outbox(tmp_path, ft) as ob:
        for p in pcs:
            ob.enqueue(p, tenant_id="t")
        with Deliverer(ob, rx.url, sleep=ft.sleep, rand=lambda: 0.0, clock=ft.clock) as d:
            report = d.deliver_pending()
        assert (report.acked, report.dead, report.remaining) == (2, 1, 0)
        order = [0, 1, 2, 0, 1]  # 503 and 429 answered: each goes behind the others
        assert [s.pcs_id for s in rx.seen] == [pcs[i].pcs_id for i in order]
        assert [json.loads(s.body).get("attempt", 1) for s in rx.seen] == [1, 1, 1, 2, 2]
        assert all(s.path == "/v1/pcs/submit" and s.headers["X-Tenant-Id"] == "t" for s in rx.seen)
        (dead,) = ob.dead_letters()
    assert ft.sleeps == []  # Retry-After 0 and no jitter: nothing to wait for
    assert dead.pcs_id == pcs[1].pcs_id and dead.error == "pcs_id_mismatch"


def test_connection_refused_by_a_real_closed_port(tmp_path: Path) -> None:
    with Receiver() as rx:
        url = rx.url  # a port that is closed once the receiver is gone
    ft = FakeTime()
    with outbox(tmp_path, ft) as ob:
        ob.enqueue(make_pcs(1))
        policy = RetryPolicy(max_age=5)
        with Deliverer(ob, url, policy=policy, sleep=ft.sleep, clock=ft.clock) as d:
            report = d.deliver_pending()
        (dead,) = ob.dead_letters()
    assert report.dead == 1 and dead.reason == "expired" and dead.status is None
    assert dead.error == "connect_error" and dead.detail == "connection refused (ConnectError)"
