"""``GET/PUT /policies/{type}`` and ``POST /policies/{type}:reset`` (maa-api §7).

A PUT is checked completely (JWS form, signature, signer trust in isolated mode, policy syntax) before
the store is touched, so a rejected request never changes what is stored.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.requests import Request
from starlette.responses import Response

from affidavit.service.common import (
    actor_of,
    attestation_type,
    require_admin,
    sign,
    state_of,
    token_error,
    token_response,
)
from affidavit.service.decode import check_api_version, read_body, require_media
from affidavit.service.errors import INVALID_OPERATION, ServiceError
from affidavit.service.pipeline import PolicyChoice
from affidavit.service.state import ServiceState

_JWS_MEDIA = ("text/plain", "application/jwt", "application/jose")


def stored_policy_choice(state: ServiceState, att_type: str) -> PolicyChoice:
    """The policy attestations of ``att_type`` run under: the stored one, else the type's default."""
    from affidavit.attestation_types import lookup
    from affidavit.tokens import certificate_jwk

    stored = state.stored_policy(att_type)
    if stored is None:
        return PolicyChoice(text=lookup(att_type).default_policy)
    signer = certificate_jwk(stored.signer_cert_der) if stored.signer_cert_der else None
    return PolicyChoice(text=stored.text, signer_jwk=signer)


async def read_management_jws(request: Request, state: ServiceState, *, media: tuple[str, ...]) -> Any:
    """Read, parse and signature-check a management JWS; returns ``(jws, signer or None)``.

    In isolated mode the JWS must be signed by (or chain to) a registered policy-management certificate.
    """
    from affidavit.tokens import TokenError, check_signer_trusted, parse_jws, signer_chain, verify_jws

    require_media(request, *media)
    body = await read_body(request, state.config.max_body_bytes)
    if "application/json" in media and body.lstrip()[:1] == b'"':
        from affidavit.service.decode import parse_json

        body_obj = parse_json(body)
        if not isinstance(body_obj, str):
            raise ServiceError("body must be a JSON string holding a JWS", code=INVALID_OPERATION)
        text: str | bytes = body_obj
    else:
        text = body
    now = state.clock()
    try:
        jws = parse_jws(text)
        signer = verify_jws(jws, now=now)
        if state.config.mode == "isolated":
            if signer is None:
                raise ServiceError(
                    "isolated mode requires a JWS signed by a policy management certificate",
                    code=INVALID_OPERATION,
                )
            registered = [x509.load_der_x509_certificate(d) for d in state.store.list_certificates()]
            check_signer_trusted(signer, registered, chain=signer_chain(jws)[1:], now=now)
    except TokenError as exc:
        raise token_error(exc) from None
    return jws, signer


async def get_policy(request: Request) -> Response:
    from affidavit.attestation_types import lookup
    from affidavit.tokens import POLICY_RESULT_LIFETIME, policy_get_claims, timed_claims, unsigned_policy_jws

    state = state_of(request)
    check_api_version(request)
    await require_admin(request, state)
    att_type = attestation_type(request.path_params["kind"])
    claims = timed_claims(state.issuer, state.clock(), POLICY_RESULT_LIFETIME)
    stored = state.store.get_policy(att_type)
    if stored is not None:
        claims.update(policy_get_claims(stored.jws))
    elif lookup(att_type).default_policy:
        claims.update(policy_get_claims(unsigned_policy_jws(lookup(att_type).default_policy)))
    return token_response(sign(state, claims))


async def set_policy(request: Request) -> Response:
    from affidavit.tokens import (
        POLICY_RESULT_LIFETIME,
        TokenError,
        policy_set_claims,
        policy_text_from_jws,
        timed_claims,
    )

    state = state_of(request)
    check_api_version(request)
    await require_admin(request, state)
    att_type = attestation_type(request.path_params["kind"])
    jws, signer = await read_management_jws(request, state, media=_JWS_MEDIA)
    try:
        text = policy_text_from_jws(jws)
    except TokenError as exc:
        raise token_error(exc) from None
    if text is None:
        raise ServiceError("the JWS carries no AttestationPolicy", code=INVALID_OPERATION)
    state.compiler.compile(text)  # PolicyParsingError -> 400 before anything is stored
    state.store.set_policy(
        att_type,
        text,
        jws=jws.text,
        signer_cert_der=signer.public_bytes(Encoding.DER) if signer is not None else None,
        actor=actor_of(request, signer),
    )
    state.forget_policy(att_type)
    claims = timed_claims(state.issuer, state.clock(), POLICY_RESULT_LIFETIME)
    claims.update(policy_set_claims(jws.text, signer))
    return token_response(sign(state, claims))


async def reset_policy(request: Request) -> Response:
    from affidavit.tokens import POLICY_RESULT_LIFETIME, certificate_jwk, policy_reset_claims, timed_claims

    state = state_of(request)
    check_api_version(request)
    await require_admin(request, state)
    att_type = attestation_type(request.path_params["kind"])
    _jws, signer = await read_management_jws(request, state, media=_JWS_MEDIA)
    state.store.reset_policy(att_type, actor=actor_of(request, signer))
    state.forget_policy(att_type)
    claims = timed_claims(state.issuer, state.clock(), POLICY_RESULT_LIFETIME)
    claims.update(policy_reset_claims())
    if signer is not None:
        claims["x-ms-policy-signer"] = certificate_jwk(signer)
    return token_response(sign(state, claims))
