"""What an operator's tooling talks to: the probes, ``/metrics`` and ``/openapi.json``, and the wiring of
the access log, metrics and secret redaction into the app (:func:`install`)."""

from __future__ import annotations

import hmac
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from affidavit.service import logs, metrics
from affidavit.service.common import state_of
from affidavit.service.errors import JSON_MEDIA, UNAUTHORIZED, ServiceError
from affidavit.service.health import healthz, readyz
from affidavit.service.observe import ObservabilityMiddleware

OPENAPI_RESOURCE = "openapi.json"


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document kept in the package (``affidavit/service/openapi.json``)."""
    text = resources.files("affidavit.service").joinpath(OPENAPI_RESOURCE).read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


async def openapi(request: Request) -> Response:
    state = state_of(request)
    doc = {**openapi_document(), "servers": [{"url": state.issuer}]}
    return JSONResponse(doc, media_type=JSON_MEDIA)


async def metrics_endpoint(request: Request) -> Response:
    state = state_of(request)
    expected = getattr(state.config, "metrics_token", None)
    if expected:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise ServiceError("/metrics needs the metrics bearer token", code=UNAUTHORIZED, status=401)
    import asyncio

    body = await asyncio.to_thread(metrics.render, state)
    return Response(body, media_type=metrics.CONTENT_TYPE)


def operational_routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


def install(app: Starlette, state: Any) -> None:
    """Access log, request ids and metrics around every request; this process's secrets registered for
    redaction; the collateral provider's cache events counted."""
    logs.register_secrets([*logs.config_secrets(state.config), state.admin_token])
    logs.lean_records()
    provider = state.collateral
    if provider is not None and hasattr(provider, "cache"):
        provider.on_event = metrics.collateral_event
    app.add_middleware(ObservabilityMiddleware)
