"""``GET /certificates``, ``POST /certificates:add`` and ``:remove`` (maa-api §8, isolated mode). Store calls
and signing run in the thread pool, never on the event loop."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from affidavit.service.common import (
    actor_of,
    require_admin,
    sign_in_thread,
    signer_id,
    state_of,
    token_error,
    token_response,
)
from affidavit.service.decode import check_api_version
from affidavit.service.errors import INVALID_OPERATION, ServiceError
from affidavit.service.observe import audit_change
from affidavit.service.policies import read_management_jws
from affidavit.store import thumbprint


async def get_certificates(request: Request) -> Response:
    from affidavit.tokens import POLICY_RESULT_LIFETIME, policy_certificates_claims, timed_claims

    state = state_of(request)
    check_api_version(request)
    await require_admin(request, state)
    certs = await run_in_threadpool(state.store.list_certificates) if state.config.mode == "isolated" else []
    claims = timed_claims(state.issuer, state.clock(), POLICY_RESULT_LIFETIME)
    claims.update(policy_certificates_claims(certs))
    return token_response(await sign_in_thread(state, claims))


async def add_certificate(request: Request) -> Response:
    return await _modify(request, add=True)


async def remove_certificate(request: Request) -> Response:
    return await _modify(request, add=False)


async def _modify(request: Request, *, add: bool) -> Response:
    from affidavit.tokens import (
        POLICY_RESULT_LIFETIME,
        TokenError,
        certificate_from_jws,
        certificates_modification_claims,
        timed_claims,
    )

    state = state_of(request)
    check_api_version(request)
    caller = await require_admin(request, state)
    if state.config.mode != "isolated":
        raise ServiceError(
            "policy management certificates exist only in isolated mode", code=INVALID_OPERATION
        )
    jws, signer = await read_management_jws(request, state, media=("application/json",))
    try:
        cert = certificate_from_jws(jws)
    except TokenError as exc:
        raise token_error(exc) from None
    der = cert.public_bytes(Encoding.DER)
    who: dict[str, Any] = {
        "actor": actor_of(request, signer, caller), "caller": caller.id, "signer": signer_id(signer)
    }
    if add:
        if await run_in_threadpool(state.store.add_certificate, der, **who):  # False: already there
            audit_change(request, state, "certificate.add", signer=signer, subject=thumbprint(der))
    else:
        from affidavit.store.store import LastCertificate

        try:  # the last-one check and the removal are one transaction (two servers, two workers)
            removed = await run_in_threadpool(state.store.remove_certificate, der, keep_last=True, **who)
        except LastCertificate:
            raise ServiceError(
                "the last policy management certificate cannot be removed", code=INVALID_OPERATION
            ) from None
        if removed:
            audit_change(request, state, "certificate.remove", signer=signer, subject=thumbprint(der))
    claims = timed_claims(state.issuer, state.clock(), POLICY_RESULT_LIFETIME)
    claims.update(certificates_modification_claims(cert, present=add))
    return token_response(await sign_in_thread(state, claims))
