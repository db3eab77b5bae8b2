"""Per-request observation: the request id, the access-log line, the metrics and the audit lines.

:class:`ObservabilityMiddleware` wraps the whole app (outside Starlette's error handling, so it sees the
final status of every answer, 500s included). It takes ``X-Request-Id`` from the request when it is a
sane token (else makes one), echoes it in the response, times the request and, once the response is
sent, writes one ``affidavit.access`` line and the request's metrics. What the handlers learn along the
way (the layer's stable error code, a TPM challenge round) reaches it through the :class:`Observation`
in the request's ASGI scope: :func:`observed_handlers` wraps the app's exception handlers to note the
error, and :func:`note` lets any handler add a field.

:func:`audit_change` is the one function management handlers call after a change is stored.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from affidavit.service import logs, metrics

SCOPE_KEY = "affidavit.observation"
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})
_TYPES = {t.lower(): t for t in ("SgxEnclave", "OpenEnclave", "Tpm", "TdxVm", "SevSnpVm", "AzureGuest")}
# Paths not worth a line each: probes and scrapes arrive every few seconds from every prober.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

Handler = Callable[[Request, Exception], Awaitable[Response]]
log = logging.getLogger("affidavit.service")


@dataclass
class Observation:
    """What is known about one request; the middleware turns it into the log line and metrics."""

    request_id: str
    started: float
    error_code: str | None = None  # the raising layer's stable code
    policy_denied: bool = False
    fields: dict[str, Any] = field(default_factory=dict)


def observation(request: Request) -> Observation | None:
    found = request.scope.get(SCOPE_KEY)
    return found if isinstance(found, Observation) else None


def note(request: Request, **fields: Any) -> None:
    """Add fields to the request's access-log line (``outcome="challenge"`` for a TPM first round)."""
    obs = observation(request)
    if obs is not None:
        obs.fields.update(fields)


def request_id(request: Request) -> str | None:
    obs = observation(request)
    return obs.request_id if obs is not None else None


# Generated ids: a random per-process prefix and a counter (32 hex digits, unique across a fleet without
# a random draw per request).
_ID_PREFIX = secrets.token_hex(10)
_ids = itertools.count(1)


def request_id_of(scope: Scope) -> str:
    """The request's id: its sane ``x-request-id``, else a generated one."""
    return _request_id(scope)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if _REQUEST_ID.match(text):
                return text
            break
    return f"{_ID_PREFIX}{next(_ids) & 0xFFFFFFFFFFFF:012x}"


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def _attestation_type(scope: Scope, route: str) -> str | None:
    if not route.startswith("/attest/"):
        return None
    kind = str(scope.get("path_params", {}).get("kind", ""))
    return _TYPES.get(kind.lower(), "unknown")


def _outcome(status: int, obs: Observation, maa_code: str | None) -> tuple[str, str]:
    if "outcome" in obs.fields:
        return str(obs.fields["outcome"]), ""
    if status == 200:
        return "permitted", ""
    code = obs.error_code or maa_code or str(status)
    if obs.policy_denied:
        return "denied", code
    return "error", code


class ObservabilityMiddleware:
    """Request id, access log and metrics for every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        obs = Observation(_request_id(scope), time.perf_counter())
        scope[SCOPE_KEY] = obs
        status = 500
        maa_code: str | None = None
        header_id = obs.request_id.encode()

        async def send_observed(message: Message) -> None:
            nonlocal status, maa_code
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                for k, v in headers:
                    if k.lower() == b"x-ms-error-code":
                        maa_code = v.decode("latin-1")
                headers.append((b"x-request-id", header_id))
                message = {**message, "headers": headers}
            await send(message)

        metrics.request_started()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            metrics.request_ended()
            self._finish(scope, obs, status, maa_code)

    def _finish(self, scope: Scope, obs: Observation, status: int, maa_code: str | None) -> None:
        finish(scope, obs, status, maa_code)


def finish(scope: Scope, obs: Observation, status: int, maa_code: str | None) -> None:
    """The request's access-log line and metrics, once its answer is sent (also ``service.front``'s)."""
    seconds = time.perf_counter() - obs.started
    route = _route(scope)
    method = str(scope.get("method", "GET"))
    method = method if method in _METHODS else "other"
    try:
        metrics.record_request(route, method, status, seconds)
        att_type = _attestation_type(scope, route)
        fields: dict[str, Any] = {
            "request_id": obs.request_id,
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "client": (scope.get("client") or ("", 0))[0] or None,
        }
        if att_type is not None:
            outcome, code = _outcome(status, obs, maa_code)
            metrics.record_attestation(att_type, outcome, code, seconds)
            fields.update(attestation_type=att_type, outcome=outcome)
            if code:
                fields["error_code"] = code
        elif status >= 400:
            fields["error_code"] = obs.error_code or maa_code or str(status)
        fields.update({k: v for k, v in obs.fields.items() if k not in fields})
        if route not in QUIET_ROUTES or status >= 400:
            logs.log_access(fields)
        metrics.request_finished()
    except Exception:  # noqa: BLE001 -- observing must never break serving
        log.exception("recording request %s failed", obs.request_id)


def observed_handlers(handlers: Mapping[Any, Handler]) -> dict[Any, Handler]:
    """The app's exception handlers, each first noting the error (code, denial, database failure) in the
    request's :class:`Observation`."""
    return {kind: _observed(handler) for kind, handler in handlers.items()}


def _observed(handler: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        obs = observation(request)
        if obs is not None:
            _note_error(obs, exc)
        return await handler(request, exc)

    return handle


def _note_error(obs: Observation, exc: Exception) -> None:
    from affidavit.errors import AffidavitError
    from affidavit.service.errors import POLICY_EVALUATION, ServiceError

    code = getattr(exc, "code", None)
    if isinstance(exc, AffidavitError) and isinstance(code, str):
        obs.error_code = code
        obs.policy_denied = isinstance(exc, ServiceError) and code == POLICY_EVALUATION
    from affidavit.store import StoreError

    if isinstance(exc, StoreError):
        metrics.database_error("request")


# -- audit -----------------------------------------------------------------------------------------------


def caller_of(request: Request, state: Any) -> str:
    """Who made an (already authenticated) management call: the identity the authentication step left
    in ``request.state.caller`` if any, else derived from the credential: ``admin-token``, the OIDC
    token's ``iss``/``sub``, or ``anonymous`` (isolated mode without a bearer), with the client address."""
    host = request.client.host if request.client else "unknown"
    known = getattr(request.state, "caller", None)
    if known:
        return f"{known}@{host}"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return f"anonymous@{host}"
    expected = getattr(state, "admin_token", None)
    if expected is not None and secrets.compare_digest(token.encode(), expected.encode()):
        return f"admin-token@{host}"
    try:
        from affidavit.relying_party import decode_unverified

        claims = decode_unverified(token).claims  # verified by the authentication step already
        return f"oidc:{claims.get('iss')}#{claims.get('sub')}@{host}"[:300]
    except Exception:  # noqa: BLE001 -- never fail a stored change over its log line
        return f"bearer@{host}"


def signer_of(signer: Any) -> str | None:
    if signer is None:
        return None
    from affidavit.tokens import certificate_thumbprint

    return f"{certificate_thumbprint(signer)} {signer.subject.rfc4514_string()}"[:300]


def audit_change(
    request: Request,
    state: Any,
    action: str,
    *,
    signer: Any = None,
    attestation_type: str | None = None,
    subject: str | None = None,
    old: Any = "unset",
    new: Any = "unset",
) -> None:
    """The audit line for a stored management change. ``old``/``new`` are ``StoredPolicy`` objects (or
    None: the type's default policy applies); their hashes are logged, the default's too."""
    logs.audit(
        action,
        caller=caller_of(request, state),
        signer=signer_of(signer),
        attestation_type=attestation_type,
        subject=subject,
        old_hash=_policy_hash(old, attestation_type),
        new_hash=_policy_hash(new, attestation_type),
        request_id=request_id(request),
    )


def _policy_hash(stored: Any, att_type: str | None) -> str | None:
    if isinstance(stored, str) and stored == "unset":
        return None
    if stored is not None:
        return str(stored.hash)
    from affidavit.policy import DEFAULT_POLICIES, policy_hash

    text = DEFAULT_POLICIES.get(att_type or "")
    return policy_hash(text) if text else None
