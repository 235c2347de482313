"""``api/openapi.yaml`` is the contract: the app's routes and the spec's paths are the same
set, the Error enum is the SDK's ErrorCode, and every non-2xx answer has the JSON shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Route

from fractal_lba.config import Settings
from fractal_lba.server import create_app
from fractal_lba.server.app import SUBMIT_PATH
from fractal_lba_client import ErrorCode

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "api" / "openapi.yaml").read_text())
METHODS = {"get", "post", "put", "patch", "delete"}
pytestmark = pytest.mark.anyio


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(Settings.from_env({"DATA_DIR": str(tmp_path), "PCS_HMAC_KEY": "k"}))
    out = {(SUBMIT_PATH, "post")}
    for route in app.cold.routes:
        assert isinstance(route, Route), route
        if route.path.startswith("/v1/bench/"):
            continue  # benchmark hooks, only with FLK_BENCH_NULL_ENDPOINT=1
        for method in route.methods or ():
            if method != "HEAD":
                out.add((route.path, method.lower()))
    return out


def spec_routes() -> set[tuple[str, str]]:
    return {(p, m) for p, ops in SPEC["paths"].items() for m in ops if m in METHODS}


def test_every_route_of_the_app_is_in_the_spec_and_back(tmp_path: Path) -> None:
    app, spec = app_routes(tmp_path), spec_routes()
    assert app - spec == set(), f"routes missing from api/openapi.yaml: {sorted(app - spec)}"
    assert spec - app == set(), f"routes in api/openapi.yaml the app lacks: {sorted(spec - app)}"


def test_the_error_enum_is_the_sdk_error_code() -> None:
    enum = SPEC["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    assert enum == [c.value for c in ErrorCode]


def test_sanity_codes_are_listed() -> None:
    from fractal_lba.adversarial import CHECKS

    assert {f"sanity:{c}" for c in CHECKS} <= {c.value for c in ErrorCode}


def test_every_documented_non_2xx_answer_is_the_error_shape() -> None:
    def resolve(obj: dict[str, Any]) -> dict[str, Any]:
        ref = obj.get("$ref")
        if ref is None:
            return obj
        node: Any = SPEC
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return resolve(node)

    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if status.startswith("2"):
                    continue
                schema = resolve(resp)["content"]["application/json"]["schema"]
                schema = resolve(schema)
                parts = [resolve(s) for s in schema.get("allOf", [schema])]
                assert any("error" in p.get("required", []) for p in parts), (path, method, status)


async def test_unknown_routes_and_methods_answer_json(api: Any) -> None:
    async with api() as client:
        missing = await client.get("/nope")
        wrong = await client.post("/health")
        submit_get = await client.get("/v1/pcs/submit")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert "GET" in wrong.headers["allow"]
    assert submit_get.status_code == 405 and submit_get.json()["error"] == "method_not_allowed"
    for resp in (missing, wrong, submit_get):
        assert resp.headers["content-type"].startswith("application/json")


async def test_lineage_refuses_unknown_query_parameters(api: Any) -> None:
    """Regression of a schemathesis finding: unknown query parameters were ignored."""
    headers = {"authorization": "Bearer " + "t" * 40}
    async with api(ADMIN_TOKEN="t" * 40) as client:
        odd = await client.get("/v1/audit/lineage/" + "0" * 64 + "?x=1", headers=headers)
        bad = await client.get("/v1/audit/lineage/" + "0" * 64 + "?tenant_id=%00", headers=headers)
        ok = await client.get("/v1/audit/lineage/" + "0" * 64 + "?tenant_id=acme", headers=headers)
    assert (odd.status_code, odd.json()["error"]) == (400, "unknown_field")
    assert (bad.status_code, bad.json()["field"]) == (400, "tenant_id")
    assert ok.status_code == 200
