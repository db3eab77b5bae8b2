"""The MAA JSON request shape: ``POST /attest/{type}`` for every type whose ``request_shape`` is ``"maa"``
(SgxEnclave, OpenEnclave, TdxVm, ...; maa-api §3): ``{<evidence_field>, runtimeData, initTimeData, nonce,
draftPolicyForAttestation}`` in, ``{"token"}`` out, through the one pipeline."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response

from affidavit.attestation_types import AttestationType, names
from affidavit.evidence.contract import EvidenceInput
from affidavit.service.common import state_of, token_response
from affidavit.service.decode import (
    AttestRequest,
    check_api_version,
    normalise_sidecar_body,
    parse_attest_request,
    read_body,
    require_media,
)
from affidavit.service.errors import INVALID_PARAMETER, ServiceError
from affidavit.service.pipeline import AttestationInput, issue
from affidavit.service.state import ServiceState


async def attest_unknown(request: Request) -> Response:
    check_api_version(request)
    raise ServiceError(
        f"unsupported attestation type {request.path_params.get('kind', '')!r}; "
        f"expected one of {', '.join(names())}",
        code=INVALID_PARAMETER,
    )


async def attest_maa(request: Request, entry: AttestationType) -> Response:
    state = state_of(request)
    check_api_version(request)
    require_media(request, "application/json")
    body = await read_body(request, state.config.max_body_bytes)
    if entry.sidecar_quirks:
        body, nonce = normalise_sidecar_body(body)
        req = dataclasses.replace(parse_attest_request(body, entry.evidence_field), nonce=nonce)
    else:
        req = parse_attest_request(body, entry.evidence_field)
    return token_response(await attest_evidence(state, entry, req))


async def attest_evidence(state: ServiceState, entry: AttestationType, req: AttestRequest) -> str:
    """Verify one decoded attest request and return the signed (or, for a draft policy, unsecured) token."""
    submitted = AttestationInput(
        evidence=EvidenceInput(req.evidence),
        runtime=req.runtime,
        inittime=req.inittime,
        draft_policy=req.draft_policy,
        nonce=req.nonce,
    )
    return await issue(state, entry, submitted)
