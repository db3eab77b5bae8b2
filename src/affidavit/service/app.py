"""The Starlette application: MAA's routes, error mapping and the service-version header."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from affidavit.attestation_types import AZURE_GUEST_SHAPE, MAA_SHAPE, TPM_SHAPE, AttestationType
from affidavit.errors import AffidavitError
from affidavit.service.attest import attest_maa, attest_unknown
from affidavit.service.certificates import add_certificate, get_certificates, remove_certificate
from affidavit.service.config import CONFIG_ENV, ServiceConfig
from affidavit.service.connections import ConcurrencyLimit, InFlight
from affidavit.service.errors import (
    SERVICE_VERSION,
    handle_affidavit_error,
    handle_disconnect,
    handle_http_exception,
    handle_unexpected,
)
from affidavit.service.front import AttestFront, attest_kind
from affidavit.service.metadata import certs, openid_metadata
from affidavit.service.observe import observed_handlers
from affidavit.service.operations import install, operational_routes
from affidavit.service.policies import diff_policy, get_policy, policy_history, reset_policy, set_policy
from affidavit.service.state import ServiceState, build_state

ShapeHandler = Callable[[Request, AttestationType], Awaitable[Response]]


def _attest_tpm(request: Request, entry: AttestationType) -> Awaitable[Response]:
    from affidavit.service.tpm_route import attest_tpm

    return attest_tpm(request, entry)


def _attest_azure_guest(request: Request, entry: AttestationType) -> Awaitable[Response]:
    from affidavit.service.azure_guest import attest_azure_guest

    return attest_azure_guest(request, entry)


# The request shapes (``AttestationType.request_shape``): how a wire protocol reaches the pipeline.
SHAPES: dict[str, ShapeHandler] = {
    MAA_SHAPE: attest_maa, TPM_SHAPE: _attest_tpm, AZURE_GUEST_SHAPE: _attest_azure_guest,
}


class ServiceVersionHeader:
    """Adds ``x-ms-maa-service-version`` to every response, as MAA does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-ms-maa-service-version"]
                headers.append((b"x-ms-maa-service-version", SERVICE_VERSION.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)


class AffidavitApp(Starlette):
    """The service's ASGI app: Starlette for every route but ``POST /attest/{type}``, which
    :class:`affidavit.service.front.AttestFront` serves before routing (the one path attestations take;
    same request ids, logs, metrics, limits, headers and errors as the middleware stack gives the rest)."""

    front: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is not None and scope["type"] == "http" and scope["method"] == "POST":
            kind = attest_kind(scope)
            if kind is not None:
                scope["app"] = self
                await front(scope, receive, send, kind)
                return
        await super().__call__(scope, receive, send)


async def _post_only(request: Request) -> Response:  # pragma: no cover - AffidavitApp serves POST first
    raise RuntimeError("POST /attest/{kind} is served by service.front, never by the router")


def _lifespan(
    state: ServiceState, worker_process: bool
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start(worker_process=worker_process)
        yield
        await state.aclose()

    return lifespan


def create_app(
    config: ServiceConfig, *, state: ServiceState | None = None, worker_process: bool = False
) -> AffidavitApp:
    """The ASGI app for ``config``; ``state`` may be supplied (tests), else it is built here.
    ``worker_process``: the app of a worker process (``app_from_environment``), which tunes the process for
    it (``ServiceState.start``), not one of many apps in a test process."""
    state = state or build_state(config)
    # Other methods get 405 from this route; POST never reaches it (AffidavitApp.front serves it).
    attest_route = Route("/attest/{kind}", _post_only, methods=["POST"])
    routes = [
        Route("/.well-known/openid-configuration", openid_metadata, methods=["GET"]),
        Route("/certs", certs, methods=["GET"]),
        attest_route,
        # `:reset` first, or `/policies/{kind}` would take "SgxEnclave:reset" as the type.
        Route("/policies/{kind}:reset", reset_policy, methods=["POST"]),
        Route("/policies/{kind}:diff", diff_policy, methods=["POST"]),
        Route("/policies/{kind}/history", policy_history, methods=["GET"]),
        Route("/policies/{kind}", get_policy, methods=["GET"]),
        Route("/policies/{kind}", set_policy, methods=["PUT"]),
        Route("/certificates", get_certificates, methods=["GET"]),
        Route("/certificates:add", add_certificate, methods=["POST"]),
        Route("/certificates:remove", remove_certificate, methods=["POST"]),
        *operational_routes(),
    ]
    app = AffidavitApp(
        routes=routes,
        exception_handlers=observed_handlers({
            AffidavitError: handle_affidavit_error,
            HTTPException: handle_http_exception,
            ClientDisconnect: handle_disconnect,
            Exception: handle_unexpected,
        }),
        lifespan=_lifespan(state, worker_process),
    )
    app.state.affidavit = state
    gate = InFlight(config.max_concurrency)
    app.add_middleware(ConcurrencyLimit, limit=config.max_concurrency, gate=gate)
    app.add_middleware(ServiceVersionHeader)
    install(app, state)  # access log, request ids, metrics: outermost
    app.front = AttestFront(route=attest_route, gate=gate, shapes=SHAPES, unknown=attest_unknown,
                            error_handlers=lambda: app.exception_handlers)
    return app


def app_from_environment() -> AffidavitApp:
    """uvicorn factory for worker processes: the configuration is in ``AFFIDAVIT_SERVICE_CONFIG_JSON``."""
    text = os.environ.get(CONFIG_ENV)
    return create_app(ServiceConfig.from_json(text) if text else ServiceConfig(), worker_process=True)
