"""``GET /.well-known/openid-configuration`` and ``GET /certs`` (maa-api §5)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from affidavit.service.common import state_of
from affidavit.service.decode import check_api_version
from affidavit.service.errors import JSON_MEDIA


async def openid_metadata(request: Request) -> Response:
    from affidavit.attestation_types import claims_supported
    from affidavit.tokens import openid_configuration

    check_api_version(request)
    state = state_of(request)
    ring = state.keyring_if_ready() or await run_in_threadpool(state.keyring)  # never the store on the loop
    algorithms = {k.algorithm for k in ring.published(state.clock())}
    document = openid_configuration(state.issuer, claims_supported(), algorithms)
    return JSONResponse(document, media_type=JSON_MEDIA)


async def certs(request: Request) -> Response:
    from affidavit.tokens import jwks

    state = state_of(request)
    check_api_version(request)
    ring = await run_in_threadpool(state.keyring)  # a stale ring is re-read from the store
    return JSONResponse(jwks(ring.published(state.clock())), media_type=JSON_MEDIA)
