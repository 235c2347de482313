"""The client against scripted transports (httpx.MockTransport): validation before sending,
signing, retries (counted with an injected sleep, never really sleeping), the exception
tree, off-spec answers, and no key material in any message or repr."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import fractal_lba_client as flc
from fractal_lba_client import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncFractalLBAClient,
    AuthenticationError,
    BadRequestError,
    FractalLBAClient,
    RateLimitError,
    ServiceUnavailableError,
    ValidationError,
    compute_pcs_id,
)

KEY = "sdk-test-key-DO-NOT-LEAK-0123456789"
ROOT = "ab" * 32
RESULT = {
    "accepted": True, "escalated": False, "reason": None, "recomputed_D_hat": 1.0,
    "recomputed_budget": 0.4, "regime": "mixed", "policy_version": "1.0.0",
    "anomaly_score": 0.0, "pcs_id": compute_pcs_id(ROOT, 1, "s"), "tenant_id": "default",
}  # fmt: skip


def unsigned(**over: Any) -> dict[str, Any]:
    pcs: dict[str, Any] = {
        "shard_id": "s", "epoch": 1, "attempt": 1, "seed": 42, "scales": [2, 4, 8],
        "N_j": {"2": 2, "4": 4, "8": 8}, "coh_star": 0.75, "v_star": [0.0, 1.0, 0.0],
        "D_hat": 1.0, "r": 0.5, "regime": "mixed", "budget": 0.4, "merkle_root": ROOT,
    }  # fmt: skip
    pcs.update(over)
    return pcs


class Script:
    """Answers in order; records every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok(status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=RESULT, headers=headers)


def err(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "detail": "x"}, headers=headers)


def client(script: Script, **kw: Any) -> tuple[FractalLBAClient, list[float]]:
    slept: list[float] = []
    c = FractalLBAClient(
        "http://verifier", signing_key=KEY, transport=httpx.MockTransport(script),
        sleep=slept.append, rand=lambda: 0.5, **kw,
    )  # fmt: skip
    return c, slept


def test_submit_signs_03_by_default_and_fills_identity() -> None:
    script = Script(ok())
    c, _ = client(script)
    result = c.submit_pcs(unsigned(D_hat=1.0000000004))
    assert result.accepted and result.status_code == 200 and not result.replayed
    sent = json.loads(script.requests[0].content)
    assert sent["version"] == "0.3" and sent["schema"] == "fractal-lba-kakeya"
    assert sent["pcs_id"] == compute_pcs_id(ROOT, 1, "s")
    assert sent["D_hat"] == 1.0  # round9'ed before signing
    assert script.requests[0].headers["x-pcs-schema-version"] == "0.3"
    expected = flc.sign_record(sent, flc.make_signer("hmac", KEY), "default")
    assert sent["sig"] == expected


def test_tenant_header_and_binding() -> None:
    script = Script(ok())
    c, _ = client(script, tenant_id="acme")
    c.submit_pcs(unsigned())
    req = script.requests[0]
    sent = json.loads(req.content)
    assert req.headers["x-tenant-id"] == "acme"
    assert sent["sig"] == flc.sign_record(sent, flc.make_signer("hmac", KEY), "acme")


@pytest.mark.parametrize("version", ["0.1", "0.2"])
def test_older_versions_on_request(version: str) -> None:
    script = Script(ok())
    c, _ = client(script, pcs_version=version)
    c.submit_pcs(unsigned())
    sent = json.loads(script.requests[0].content)
    payload = flc.record_payload(sent)
    assert sent["version"] == version
    assert sent["sig"] == flc.make_signer("hmac", KEY).sign(payload)


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"epoch": 2**53}, "epoch"),
        ({"shard_id": "a\u202eb"}, "shard_id"),
        ({"N_j": {"2": 2, "4": 4, "8": 8, "16": 16}}, "N_j"),
        ({"vrf": {"proof": "!!!", "output": ""}}, "vrf.proof"),
        ({"meta": {"k": "v\x00"}}, "meta"),
        ({"regime": "weird"}, "regime"),
        ({"D_hat": float("nan")}, "D_hat"),
        ({"merkle_root": "nothex"}, "merkle_root"),
        ({"version": "0.2"}, "version"),
        ({"scales": [2]}, "scales"),
    ],
)
def test_invalid_records_are_never_sent(over: dict[str, Any], field: str) -> None:
    script = Script()
    c, _ = client(script)
    with pytest.raises(ValidationError) as exc:
        c.submit_pcs(unsigned(**over))
    assert exc.value.field == field
    assert script.requests == []


def test_without_a_key_the_record_must_be_signed() -> None:
    c = FractalLBAClient("http://verifier", transport=httpx.MockTransport(Script()))
    with pytest.raises(ValidationError) as exc:
        c.submit_pcs({**unsigned(), "schema": "fractal-lba-kakeya", "version": "0.3",
                      "pcs_id": compute_pcs_id(ROOT, 1, "s")})  # fmt: skip
    assert exc.value.field == "sig"


def test_429_retry_after_is_honoured_and_capped() -> None:
    script = Script(err(429, "rate_limited", **{"Retry-After": "3"}),
                    err(429, "rate_limited", **{"Retry-After": "9999"}), ok())  # fmt: skip
    c, slept = client(script)
    assert c.submit_pcs(unsigned()).accepted
    assert slept == [3.0, 60.0] and len(script.requests) == 3
    assert script.requests[0].content == script.requests[2].content  # same bytes resent


def test_503_then_connection_error_then_success_backs_off_with_full_jitter() -> None:
    script = Script(err(503, "store_unavailable"), httpx.ConnectError("boom"), ok(202))
    c, slept = client(script, max_retries=2)
    assert c.submit_pcs(unsigned()).status_code == 202
    assert slept == [0.25, 0.5]  # rand 0.5 * min(8, 0.5 * 2**(n-1))


def test_retries_are_bounded_then_the_status_error_is_raised() -> None:
    script = Script(*(err(503, "wal_unavailable", **{"Retry-After": "1"}) for _ in range(3)))
    c, slept = client(script)
    with pytest.raises(ServiceUnavailableError) as exc:
        c.submit_pcs(unsigned())
    assert (exc.value.status_code, exc.value.error, exc.value.retry_after) == (
        503, "wal_unavailable", 1.0)  # fmt: skip
    assert len(script.requests) == 3 and slept == [1.0, 1.0]


def test_408_and_500_retry_but_4xx_do_not() -> None:
    script = Script(err(408, "request_timeout"), err(500, "internal_error"), ok())
    c, _ = client(script)
    assert c.submit_pcs(unsigned()).accepted
    script = Script(err(401, "signature_invalid"))
    c, slept = client(script)
    with pytest.raises(AuthenticationError) as exc:
        c.submit_pcs(unsigned())
    assert exc.value.error == "signature_invalid" and slept == []


def test_timeouts_and_connection_errors_raise_the_tree() -> None:
    c, _ = client(Script(*(httpx.ReadTimeout("slow") for _ in range(3))))
    with pytest.raises(APITimeoutError):
        c.submit_pcs(unsigned())
    c, _ = client(Script(*(httpx.ConnectError("down") for _ in range(3))))
    with pytest.raises(APIConnectionError):
        c.submit_pcs(unsigned())


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(401, text="Unauthorized", headers={"content-type": "text/plain"}),
        httpx.Response(400, content=b"{not json", headers={"content-type": "application/json"}),
        httpx.Response(400, json={"unexpected": 1}),
        httpx.Response(200, json={"accepted": "yes"}),
        httpx.Response(418, json={"error": "teapot"}),
    ],
)
def test_off_spec_answers_raise_api_status_error_with_the_raw_status(
    answer: httpx.Response,
) -> None:
    c, _ = client(Script(answer))
    with pytest.raises(APIStatusError) as exc:
        c.submit_pcs(unsigned())
    assert exc.value.status_code == answer.status_code
    assert exc.value.response is not None


def test_400_is_a_bad_request_error_naming_the_field() -> None:
    answer = httpx.Response(400, json={"error": "duplicate_key", "field": "D_hat", "detail": "d"})
    c, _ = client(Script(answer))
    with pytest.raises(BadRequestError) as exc:
        c.submit_pcs(unsigned())
    assert (exc.value.error, exc.value.field) == ("duplicate_key", "D_hat")
    assert exc.value.error == flc.ErrorCode.DUPLICATE_KEY


def test_replayed_and_request_id() -> None:
    c, _ = client(Script(ok(**{"Idempotent-Replayed": "true", "X-Request-Id": "r-1"})))
    result = c.submit_pcs(unsigned())
    assert result.replayed and result.request_id == "r-1"


def test_health_check_reads_the_accepted_versions() -> None:
    answer = httpx.Response(200, json={"status": "ok"},
                            headers={"X-PCS-Accepted-Versions": "0.1, 0.2, 0.3"})  # fmt: skip
    c, _ = client(Script(answer))
    health = c.health_check()
    assert health.status == "ok" and health.accepted_versions == ("0.1", "0.2", "0.3")


def test_async_client_shares_the_core() -> None:
    script = Script(err(429, "rate_limited", **{"Retry-After": "2"}), ok())
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    async def run() -> flc.VerifyResult:
        async with AsyncFractalLBAClient(
            "http://verifier", signing_key=KEY, tenant_id="acme",
            transport=httpx.MockTransport(script), sleep=sleep,
        ) as c:  # fmt: skip
            return await c.submit_pcs(unsigned())

    assert asyncio.run(run()).accepted and slept == [2.0]
    sent = json.loads(script.requests[1].content)
    assert sent["sig"] == flc.sign_record(sent, flc.make_signer("hmac", KEY), "acme")


def test_rate_limit_error_is_raised_after_the_last_429() -> None:
    c, _ = client(Script(*(err(429, "quota_exceeded", **{"Retry-After": "5"}) for _ in range(3))))
    with pytest.raises(RateLimitError) as exc:
        c.submit_pcs(unsigned())
    assert exc.value.error == "quota_exceeded"


@pytest.mark.parametrize(
    "make",
    [
        lambda: FractalLBAClient("ftp://x", signing_key=KEY),
        lambda: FractalLBAClient("http://x", signing_key=KEY, pcs_version="9.9"),
        lambda: FractalLBAClient("http://x", signing_key=KEY, signing_alg="rsa"),
        lambda: FractalLBAClient("http://x", signing_key="base64:!!" + KEY),
        lambda: FractalLBAClient("http://x", signing_key=KEY, signing_alg="ed25519"),
        lambda: FractalLBAClient("http://x", signing_key=KEY, max_retries=-1),
    ],
)
def test_bad_configuration_is_a_validation_error_without_the_key(
    make: Callable[[], Any],
) -> None:
    with pytest.raises(ValidationError) as exc:
        make()
    assert KEY not in str(exc.value) and KEY not in repr(exc.value)


def test_no_key_material_in_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    texts: list[str] = []
    c, _ = client(Script(err(401, "signature_invalid"), httpx.ConnectError("x"),
                         httpx.ConnectError("x"), httpx.ConnectError("x")))  # fmt: skip
    texts += [repr(c), str(c), repr(c._signer)]
    for call in (lambda: c.submit_pcs(unsigned()), lambda: c.submit_pcs(unsigned()),
                 lambda: c.submit_pcs(unsigned(epoch=-1))):  # fmt: skip
        try:
            call()
        except flc.FractalLBAError as exc:
            texts += [str(exc), repr(exc), repr(exc.__dict__)]
    seed = bytes(range(32))
    ed = FractalLBAClient("http://x", signing_key=seed, signing_alg="ed25519")
    texts += [repr(ed), repr(ed._signer), repr(flc.parse_hmac_key(KEY))]
    blob = "\n".join(texts) + caplog.text
    assert len(texts) >= 10
    assert KEY not in blob and seed.hex() not in blob and repr(seed) not in blob
