"""Helpers every route uses: the shared state, management authentication, attestation types, signing."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from affidavit.service.auth import ADMIN_TOKEN_CALLER, Caller
from affidavit.service.errors import (
    INVALID_OPERATION,
    INVALID_PARAMETER,
    JSON_MEDIA,
    UNAUTHORIZED,
    ServiceError,
)
from affidavit.service.state import ServiceState


def state_of(request: Request) -> ServiceState:
    return request.app.state.affidavit  # type: ignore[no-any-return]


def attestation_type(name: str) -> str:
    """The canonical attestation type for a path segment (case-insensitive, as the SDK's enum), from the
    registry (``affidavit.attestation_types``)."""
    from affidavit.attestation_types import UnknownAttestationType, lookup

    try:
        return lookup(name).name
    except UnknownAttestationType as exc:
        raise ServiceError(str(exc), code=INVALID_PARAMETER) from None


async def require_admin(request: Request, state: ServiceState) -> Caller:
    """The authenticated caller of a management call: ``Authorization: Bearer`` with the static admin
    token or a JWT from the configured OIDC issuer, in both modes. With neither configured nothing is
    accepted (``build_state`` refuses to start that way; this is the fail-closed backstop)."""
    expected, oidc = state.admin_token, state.oidc
    address = request.client.host if request.client else None
    if expected is None and oidc is None:
        raise ServiceError("management is disabled: no credential is configured", code=UNAUTHORIZED,
                           status=401)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ServiceError("missing bearer token", code=UNAUTHORIZED, status=401)
    if expected is not None and hmac.compare_digest(token.encode(), expected.encode()):
        caller = Caller(ADMIN_TOKEN_CALLER, "admin-token", address)
    elif oidc is not None:
        caller = oidc.caller(await oidc.verify(token), address)
    else:
        raise ServiceError("invalid bearer token", code=UNAUTHORIZED, status=401)
    request.state.caller = caller.id  # for the audit line (service.observe)
    return caller  # type: ignore[no-any-return]


def signer_id(signer: x509.Certificate | None) -> str | None:
    """How the history names a JWS signer: SHA-1 thumbprint (as MAA prints it) and subject."""
    if signer is None:
        return None
    from affidavit.tokens import certificate_thumbprint

    return f"{certificate_thumbprint(signer)} {signer.subject.rfc4514_string()}"[:500]


def token_error(exc: Exception) -> ServiceError:
    """A ``TokenError`` from a management JWS as the MAA error a client gets (``errors.classify``)."""
    from affidavit.errors import AffidavitError
    from affidavit.service.errors import as_service_error

    if isinstance(exc, AffidavitError):
        return as_service_error(exc)
    return ServiceError(str(exc), code=INVALID_OPERATION)


def sign(state: ServiceState, claims: Mapping[str, Any]) -> str:
    from affidavit.tokens import encode_jwt

    return str(encode_jwt(claims, state.keyring().current, jku=state.jku))


async def sign_in_thread(state: ServiceState, claims: Mapping[str, Any]) -> str:
    """:func:`sign` in the thread pool, for async handlers: the key ring may be read from the store (its
    first use, a next key's time to sign) and signing is CPU work."""
    return await run_in_threadpool(sign, state, claims)


def token_response(token: str) -> Response:
    """``{"token": ...}``, written directly: a token is base64url and dots, nothing JSON escapes."""
    return Response(b'{"token":"' + token.encode("ascii") + b'"}', media_type=JSON_MEDIA)


def actor_of(request: Request, signer: x509.Certificate | None, caller: Caller | None = None) -> str:
    """The history's one-line ``actor`` (kept for older readers): the signer if any, else the caller;
    ``caller`` and ``signer`` are recorded apart as well."""
    if signer is not None:
        return f"signer:{signer_id(signer)}"[:500]
    host = request.client.host if request.client else "unknown"
    return f"{caller.id}@{host}"[:500] if caller is not None else f"anonymous@{host}"
