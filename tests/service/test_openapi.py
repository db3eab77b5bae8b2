"""Issue 15, point 5: the OpenAPI 3.1 document kept in the package covers every route of the app, is served
at /openapi.json, and schemathesis' generated requests over its request shapes never get a 5xx (and get
the documented status codes, media types and response shapes)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from starlette.applications import Starlette
from starlette.routing import Route

from affidavit.attestation_types import names as _attest_routes  # every registered type
from affidavit.service import ServiceConfig, create_app
from affidavit.service.operations import openapi_document
from tests.conftest import ROOT
from tests.service.conftest import EVIDENCE_TIME, Inputs
from tests.service.helpers import ADMIN_TOKEN, AsgiClient

DOCUMENT = ROOT / "src" / "affidavit" / "service" / "openapi.json"


def _app(data_dir: Path, inputs: Inputs) -> Starlette:
    config = ServiceConfig(
        data_dir=data_dir, collateral_dir=inputs.collateral_dir,
        trust_roots=(inputs.intel_root, inputs.sim_root),
        evidence_time=EVIDENCE_TIME, admin_token=ADMIN_TOKEN, max_body_bytes=64 * 1024,
        issuer="https://attest.example.com",
    )
    return create_app(config)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, inputs: Inputs) -> Starlette:
    return _app(tmp_path_factory.mktemp("openapi"), inputs)


def _openapi_path(template: str) -> str:
    """``/policies/{kind}`` in Starlette's form -> the document's ``/policies/{attestationType}``."""
    return re.sub(r"\{kind\}", "{attestationType}", template)


def test_document_is_openapi_3_1_and_valid_json() -> None:
    doc = json.loads(DOCUMENT.read_text())
    assert doc["openapi"] == "3.1.0" and doc == openapi_document()
    assert doc["info"]["license"]["identifier"] == "Apache-2.0"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["operationId"] and op["responses"], (path, method)


def test_every_route_of_the_app_is_documented(app: Starlette) -> None:
    doc = openapi_document()
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    served: set[tuple[str, str]] = set()
    for route in app.routes:
        assert isinstance(route, Route)
        methods = (route.methods or set()) - {"HEAD"}
        if route.path == "/attest/{kind}":  # one Starlette route, one documented path per attestation type
            served |= {(f"/attest/{kind}", m) for kind in _attest_routes() for m in methods}
        else:
            served |= {(_openapi_path(route.path), m) for m in methods}
    assert served == documented, {"undocumented": served - documented, "not served": documented - served}
    kinds = doc["paths"]["/policies/{attestationType}"]["get"]["parameters"][0]["schema"]["enum"]
    assert set(kinds) == set(_attest_routes())


def test_served_document_names_the_issuer(app: Starlette) -> None:
    client = AsgiClient(app)
    try:
        r = client.get("/openapi.json")
    finally:
        client.close()
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["servers"] == [{"url": "https://attest.example.com"}]
    assert {k: v for k, v in body.items() if k != "servers"} == openapi_document()


# -- generated requests ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema_app(tmp_path_factory: pytest.TempPathFactory, inputs: Inputs) -> Iterator[Starlette]:
    yield _app(tmp_path_factory.mktemp("openapi-fuzz"), inputs)


def _without_lifespan(app: Starlette) -> Any:
    """The app with its lifespan acknowledged but not run: schemathesis' ASGI client starts and stops the
    app around every call, and stopping closes the store the next call needs."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await app(scope, receive, send)

    return asgi


@pytest.fixture(scope="module")
def api_schema(schema_app: Starlette) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", _without_lifespan(schema_app))


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi import checks

    return [not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
            checks.response_schema_conformance]


_PATHS = json.loads(DOCUMENT.read_text())["paths"]
# Negative cases (requests that violate the documented shapes) exist only where there is something to violate.
OPERATIONS = [
    (path, method.upper(), mode)
    for path, item in _PATHS.items()
    for method, op in item.items()
    for mode in ("positive", "negative")
    if mode == "positive" or op.get("parameters") or op.get("requestBody")
]


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
def test_generated_requests_never_5xx(api_schema: Any, path: str, method: str, mode: str) -> None:
    """Requests drawn from the documented shapes (positive) and from their violations (negative)."""
    from schemathesis import GenerationMode

    operation = api_schema[path][method]
    strategy = operation.as_strategy(GenerationMode(mode))
    checks = _checks() if mode == "positive" else _checks()[:1]

    @given(case=strategy)
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, checks=checks)

    run()
