"""``POST /attest/SgxEnclave``, ``/attest/OpenEnclave`` and ``/attest/TdxVm`` (maa-api §3)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from affidavit.service.common import sign, state_of, token_response
from affidavit.service.decode import (
    AttestRequest,
    check_api_version,
    parse_attest_request,
    read_body,
    require_media,
)
from affidavit.service.errors import INVALID_PARAMETER, ServiceError
from affidavit.service.pipeline import (
    OPEN_ENCLAVE,
    SGX_ENCLAVE,
    TDX_VM,
    EvidenceKind,
    PolicyChoice,
    token_claims,
    verified_claims,
)
from affidavit.service.policies import stored_policy_choice
from affidavit.service.state import ServiceState


async def attest_sgx_enclave(request: Request) -> Response:
    return await _attest(request, SGX_ENCLAVE, "quote")


async def attest_open_enclave(request: Request) -> Response:
    return await _attest(request, OPEN_ENCLAVE, "report")


async def attest_tdx_vm(request: Request) -> Response:
    return await _attest(request, TDX_VM, "quote")


async def attest_unknown(request: Request) -> Response:
    check_api_version(request)
    raise ServiceError(
        f"unsupported attestation type {request.path_params.get('kind', '')!r}; "
        "expected SgxEnclave, OpenEnclave, TdxVm or Tpm",
        code=INVALID_PARAMETER,
    )


async def _attest(request: Request, kind: EvidenceKind, field: str) -> Response:
    state = state_of(request)
    check_api_version(request)
    require_media(request, "application/json")
    body = await read_body(request, state.config.max_body_bytes)
    req = parse_attest_request(body, field)
    token = await attest_evidence(state, kind, req)
    return token_response(token)


async def attest_evidence(state: ServiceState, kind: EvidenceKind, req: AttestRequest) -> str:
    """Verify one decoded attest request and return the signed (or, for a draft policy, unsecured) token."""
    from affidavit.evidence.sgx import parse_quote

    raw = req.evidence
    if kind is OPEN_ENCLAVE:
        from affidavit.evidence.openenclave import unwrap

        raw = unwrap(req.evidence)
    quote = parse_quote(raw)  # parsed once: the platform lookup and the verifier share it
    platform = state.platform_of(quote)
    if platform.tee != kind.tee:
        raise ServiceError(
            f"{kind.policy_type} expects an {kind.tee.upper()} quote, got {platform.tee.upper()}",
            code=INVALID_PARAMETER,
        )
    collateral = await state.collateral.get(platform)
    result = state.verifier.verify(
        quote, collateral, state.evidence_clock(), collateral_grace=state.config.collateral_grace
    )
    verified = verified_claims(kind, result, req.evidence, req)
    if state.shadow is not None and req.draft_policy is None:
        from affidavit.service.pipeline import incoming_claim_list

        claims = incoming_claim_list(verified.incoming, {}, state.claims)
        state.shadow.record(kind.policy_type, state.clock(), claims)
    if req.draft_policy is not None:
        policy = PolicyChoice(text=req.draft_policy, draft=True)
    else:
        policy = stored_policy_choice(state, kind.policy_type)
    ring = state.keyring()

    def run_policy() -> dict[str, Any]:
        # Off the event loop (a policy may take up to its max_seconds); drafts are compiled, not cached.
        compiled = state.compiler.compile(policy.text, keep=not policy.draft)
        return token_claims(
            verified, policy, compiled, issuer=state.issuer, now=state.clock(), nonce=req.nonce,
            max_lifetime=int(ring.max_token_lifetime.total_seconds()), claim_cache=state.claims,
        )

    claims = await run_in_threadpool(run_policy)
    if policy.draft:
        from affidavit.tokens import unsecured_jwt

        return str(unsecured_jwt(claims, jku=state.jku, kid=ring.current.kid))
    return sign(state, claims)
