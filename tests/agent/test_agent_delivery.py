"""Delivery: status classification, full-jitter backoff, Retry-After, DLQ, real HTTP receiver."""

from __future__ import annotations

import json
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
from fractal_lba.contract import PCS

SIGNER = load_signer("hmac", "delivery-test-key")


def make_pcs(epoch: int) -> PCS:
    ev = parse_events(f"timestamp,x,y,z\n{epoch},0.{epoch + 1},0.5,0.25\n".encode(), "csv")
    return build_pcs(ev, shard_id="s", epoch=epoch, signer=SIGNER)


class FakeTime:
    """Injected clock + sleep: sleeping advances the clock, nothing really waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(answers: list[httpx.Response | Exception]) -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = answers.pop(0) if answers else httpx.Response(200)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


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


def test_classify() -> None:
    assert [classify(s) for s in (200, 202)] == ["ack", "ack"]
    assert [classify(s) for s in (429, 500, 502, 503, 599)] == ["retry"] * 5
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
    with Outbox(tmp_path) as ob:
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
    assert ft.sleeps == []


def test_retries_then_ack_honouring_retry_after(tmp_path: Path) -> None:
    client, seen = scripted(
        [
            httpx.Response(503),
            httpx.ConnectError("refused"),
            httpx.Response(429, headers={"Retry-After": "12"}),
            httpx.Response(500),
            httpx.Response(200),
        ]
    )
    ft = FakeTime()
    with Outbox(tmp_path) as ob:
        ob.enqueue(make_pcs(1))
        (result,) = [deliverer(ob, client, ft).deliver(e) for e in ob.pending()]
        assert result.outcome == "acked" and result.attempts == 5
        assert ob.stats().pending == 0
    # rand() = 1.0: ceilings 0.5, 1, then max(2, Retry-After 12), then 4
    assert ft.sleeps == [0.5, 1.0, 12.0, 4.0]
    assert len(seen) == 5


def test_no_tenant_header_when_unset(tmp_path: Path) -> None:
    client, seen = scripted([])
    with Outbox(tmp_path) as ob:
        ob.enqueue(make_pcs(1))
        deliverer(ob, client, FakeTime()).deliver_pending()
    assert "X-Tenant-Id" not in seen[0].headers


def test_final_4xx_goes_to_dlq_with_the_server_reason(tmp_path: Path) -> None:
    body = {"error": "invalid_pcs", "field": "D_hat", "detail": "must be a finite number"}
    client, seen = scripted([httpx.Response(400, json=body), httpx.Response(200)])
    ft = FakeTime()
    with Outbox(tmp_path) as ob:
        ob.enqueue(make_pcs(1))
        ob.enqueue(make_pcs(2))
        report = deliverer(ob, client, ft).deliver_pending()
        assert (report.acked, report.dead, report.remaining) == (1, 1, 0)
    (line,) = (tmp_path / "dlq.jsonl").read_text().splitlines()
    dead = json.loads(line)
    assert dead["status"] == 400 and dead["error"] == "invalid_pcs"
    assert dead["field"] == "D_hat" and dead["detail"] == "must be a finite number"
    assert dead["attempts"] == 1
    assert ft.sleeps == [] and len(seen) == 2


def test_non_json_4xx_reason(tmp_path: Path) -> None:
    client, _ = scripted([httpx.Response(404, text="<html>nope</html>")])
    with Outbox(tmp_path) as ob:
        ob.enqueue(make_pcs(1))
        (result,) = [deliverer(ob, client, FakeTime()).deliver(e) for e in ob.pending()]
    assert result.outcome == "dead" and result.error == "http_404"


def test_max_attempts_then_dlq(tmp_path: Path) -> None:
    client, seen = scripted([httpx.Response(503)] * 10)
    ft = FakeTime()
    with Outbox(tmp_path) as ob:
        ob.enqueue(make_pcs(1))
        (result,) = [
            deliverer(ob, client, ft, max_attempts=3, max_elapsed=0).deliver(e)
            for e in ob.pending()
        ]
        assert ob.stats().dead == 1
    assert result.outcome == "dead" and result.attempts == 3 and len(seen) == 3
    assert len(ft.sleeps) == 2
    dead = json.loads((tmp_path / "dlq.jsonl").read_text())
    assert dead["error"] == "retries_exhausted" and dead["status"] == 503
    assert dead["detail"] == "http_503"


def test_max_elapsed_then_dlq(tmp_path: Path) -> None:
    client, seen = scripted([httpx.Response(429, headers={"Retry-After": "100"})] * 10)
    ft = FakeTime()
    with Outbox(tmp_path) as ob:
        ob.enqueue(make_pcs(1))
        (result,) = [
            deliverer(ob, client, ft, max_attempts=0, max_elapsed=250).deliver(e)
            for e in ob.pending()
        ]
    # waits 100 + 100; a third wait would end after 300 s > 250 s
    assert ft.sleeps == [100.0, 100.0] and len(seen) == 3
    assert result.outcome == "dead" and result.error == "http_429"


def test_retry_after_is_capped(tmp_path: Path) -> None:
    client, _ = scripted([httpx.Response(503, headers={"Retry-After": "86400"})])
    ft = FakeTime()
    with Outbox(tmp_path) as ob:
        ob.enqueue(make_pcs(1))
        deliverer(ob, client, ft, max_retry_after=60, max_elapsed=0).deliver_pending()
    assert ft.sleeps == [60.0]


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
    with Receiver(script) as rx, Outbox(tmp_path) as ob:
        for p in pcs:
            ob.enqueue(p, tenant_id="t")
        with Deliverer(ob, rx.url, sleep=ft.sleep, rand=lambda: 0.0, clock=ft.clock) as d:
            report = d.deliver_pending()
        assert (report.acked, report.dead, report.remaining) == (2, 1, 0)
        assert [s.pcs_id for s in rx.seen] == [pcs[0].pcs_id] * 3 + [pcs[1].pcs_id, pcs[2].pcs_id]
        assert all(s.path == "/v1/pcs/submit" and s.headers["X-Tenant-Id"] == "t" for s in rx.seen)
    assert ft.sleeps == [0.0, 0.0]
    dead = json.loads((tmp_path / "dlq.jsonl").read_text())
    assert dead["pcs_id"] == pcs[2].pcs_id and dead["error"] == "pcs_id_mismatch"


def test_connection_refused_is_retried(tmp_path: Path) -> None:
    with Receiver() as rx:
        url = rx.url  # a port that is closed once the receiver is gone
    ft = FakeTime()
    with Outbox(tmp_path) as ob:
        ob.enqueue(make_pcs(1))
        with Deliverer(
            ob, url, policy=RetryPolicy(max_attempts=2), sleep=ft.sleep, clock=ft.clock
        ) as d:
            (result,) = [d.deliver(e) for e in ob.pending()]
    assert result.outcome == "dead" and result.status is None
    assert result.error == "connection_error: ConnectError" and len(ft.sleeps) == 1
