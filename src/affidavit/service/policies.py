"""``GET/PUT /policies/{type}`` and ``POST /policies/{type}:reset`` (maa-api §7).

A PUT is checked completely (JWS form, signature, signer trust in isolated mode, policy syntax) before
the store is touched, so a rejected request never changes what is stored. Store calls, JWS checks,
compilation, diff evaluation and signing run in the thread pool (``run_in_threadpool``), never on the
event loop (tests/service/test_management_threads.py).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from affidavit.service.common import (
    actor_of,
    attestation_type,
    require_admin,
    sign_in_thread,
    signer_id,
    state_of,
    token_error,
    token_response,
)
from affidavit.service.decode import check_api_version, read_body, require_media
from affidavit.service.errors import INVALID_OPERATION, ServiceError
from affidavit.service.observe import audit_change
from affidavit.service.pipeline import PolicyChoice
from affidavit.service.state import ServiceState

_JWS_MEDIA = ("text/plain", "application/jwt", "application/jose")


def stored_policy_choice(state: ServiceState, att_type: str) -> PolicyChoice:
    """The policy attestations of ``att_type`` run under: the stored one, else the type's default."""
    return policy_choice(att_type, state.stored_policy(att_type))


def policy_choice(att_type: str, stored: Any) -> PolicyChoice:
    """The :class:`PolicyChoice` of a stored policy (a ``store.StoredPolicy``; None: the default)."""
    from affidavit.attestation_types import lookup
    from affidavit.tokens import certificate_jwk

    if stored is None:
        return PolicyChoice(text=lookup(att_type).default_policy)
    signer = certificate_jwk(stored.signer_cert_der) if stored.signer_cert_der else None
    return PolicyChoice(text=stored.text, signer_jwk=signer)


async def read_management_jws(request: Request, state: ServiceState, *, media: tuple[str, ...]) -> Any:
    """Read, parse and signature-check a management JWS; returns ``(jws, signer or None)``.

    In isolated mode the JWS must be signed by (or chain to) a registered policy-management certificate.
    """
    from affidavit.tokens import (
        TokenError,
        check_jws_times,
        check_signer_trusted,
        parse_jws,
        signer_chain,
        verify_jws,
    )

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

    def check() -> Any:  # in a worker thread: signature checks, and the store in isolated mode
        try:
            jws = parse_jws(text)
            signer = verify_jws(jws, now=now)
            check_jws_times(jws, now=now)  # exp/nbf/iat where the JWS carries them, 5 minutes of skew
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

    return await run_in_threadpool(check)


async def get_policy(request: Request) -> Response:
    from affidavit.attestation_types import lookup
    from affidavit.tokens import POLICY_RESULT_LIFETIME, policy_get_claims, timed_claims, unsigned_policy_jws

    state = state_of(request)
    check_api_version(request)
    await require_admin(request, state)
    att_type = attestation_type(request.path_params["kind"])
    claims = timed_claims(state.issuer, state.clock(), POLICY_RESULT_LIFETIME)
    stored = await run_in_threadpool(state.store.get_policy, att_type)
    if stored is not None:
        claims.update(policy_get_claims(stored.jws))
    elif lookup(att_type).default_policy:
        claims.update(policy_get_claims(unsigned_policy_jws(lookup(att_type).default_policy)))
    return token_response(await sign_in_thread(state, claims))


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
    caller = await require_admin(request, state)
    att_type = attestation_type(request.path_params["kind"])
    jws, signer = await read_management_jws(request, state, media=_JWS_MEDIA)
    try:
        text = policy_text_from_jws(jws)
    except TokenError as exc:
        raise token_error(exc) from None
    if text is None:
        raise ServiceError("the JWS carries no AttestationPolicy", code=INVALID_OPERATION)
    # PolicyParsingError -> 400 before anything is stored; compiled in a thread (up to max_seconds)
    await run_in_threadpool(state.compiler.compile, text)
    actor = actor_of(request, signer, caller)

    def write() -> tuple[Any, Any]:
        previous = state.store.get_policy(att_type)
        return previous, state.store.set_policy(
            att_type,
            text,
            jws=jws.text,
            signer_cert_der=signer.public_bytes(Encoding.DER) if signer is not None else None,
            actor=actor,
            caller=caller.id,
            signer=signer_id(signer),
        )

    previous, stored = await run_in_threadpool(write)
    state.forget_policy(att_type)
    audit_change(request, state, "policy.set", signer=signer, attestation_type=att_type,
                 old=previous, new=stored)
    claims = timed_claims(state.issuer, state.clock(), POLICY_RESULT_LIFETIME)
    claims.update(policy_set_claims(jws.text, signer))
    return token_response(await sign_in_thread(state, claims))


async def reset_policy(request: Request) -> Response:
    from affidavit.tokens import POLICY_RESULT_LIFETIME, certificate_jwk, policy_reset_claims, timed_claims

    state = state_of(request)
    check_api_version(request)
    caller = await require_admin(request, state)
    att_type = attestation_type(request.path_params["kind"])
    _jws, signer = await read_management_jws(request, state, media=_JWS_MEDIA)
    actor = actor_of(request, signer, caller)

    def write() -> Any:
        previous = state.store.get_policy(att_type)
        state.store.reset_policy(att_type, actor=actor, caller=caller.id, signer=signer_id(signer))
        return previous

    previous = await run_in_threadpool(write)
    state.forget_policy(att_type)
    audit_change(request, state, "policy.reset", signer=signer, attestation_type=att_type,
                 old=previous, new=None)
    claims = timed_claims(state.issuer, state.clock(), POLICY_RESULT_LIFETIME)
    claims.update(policy_reset_claims())
    if signer is not None:
        claims["x-ms-policy-signer"] = certificate_jwk(signer)
    return token_response(await sign_in_thread(state, claims))


# -- Affidavit extensions: history and shadow diff -------------------------------------------------------

HISTORY_DEFAULT_LIMIT = 20
HISTORY_MAX_LIMIT = 100
MAX_DIFF_FLIPS = 100  # flips listed in one diff answer (the counts cover all samples)


def _signer_of(jws_text: str | None) -> dict[str, str] | None:
    """The thumbprint and subject of the certificate that signed a stored policy JWS, if it was signed."""
    if not jws_text:
        return None
    from affidavit.tokens import TokenError, certificate_thumbprint, parse_jws, signer_chain

    try:
        jws = parse_jws(jws_text)
        if jws.alg == "none":
            return None
        cert = signer_chain(jws)[0]
    except TokenError:
        return None
    return {"thumbprint": certificate_thumbprint(cert), "subject": cert.subject.rfc4514_string()}


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return HISTORY_DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= HISTORY_MAX_LIMIT:
        raise ServiceError(f"limit must be 1..{HISTORY_MAX_LIMIT}", code="InvalidParameter")
    return int(raw)


async def policy_history(request: Request) -> Response:
    """``GET /policies/{type}/history[?limit=N][&hash=H]``: the newest changes, oldest first, each with
    the policy text and JWS as set, its hash, time, caller and signer (JSON; an Affidavit extension)."""
    from starlette.responses import JSONResponse

    from affidavit.service.errors import JSON_MEDIA

    state = state_of(request)
    check_api_version(request)
    await require_admin(request, state)
    att_type = attestation_type(request.path_params["kind"])
    wanted = request.query_params.get("hash")
    if wanted is not None and (not wanted or len(wanted) > 100):
        raise ServiceError("hash must be a policy hash", code="InvalidParameter")
    limit = _limit(request)

    def read() -> tuple[Any, Any]:
        history = state.store.policy_history(att_type, limit=limit, hash_=wanted)
        return history, state.store.get_policy(att_type)

    changes, stored = await run_in_threadpool(read)
    entries = [
        {
            "id": c.id,
            "action": c.action,
            "hash": c.hash,
            "at": c.at.isoformat().replace("+00:00", "Z"),
            "actor": c.actor,
            "caller": c.caller,
            "signer": _signer_of(c.jws),
            "text": c.text,
            "jws": c.jws,
        }
        for c in changes
    ]
    current = stored.hash if stored is not None else None
    return JSONResponse(
        {"attestationType": att_type, "current": current, "history": entries}, media_type=JSON_MEDIA
    )


async def diff_policy(request: Request) -> Response:
    """``POST /policies/{type}:diff`` with a candidate policy (its text, or a JWS as for PUT): evaluates it
    and the policy in force on the shadow samples and lists the outcomes that would flip."""
    from starlette.responses import JSONResponse

    from affidavit.service.errors import JSON_MEDIA
    from affidavit.tokens import TokenError, parse_jws, policy_text_from_jws

    state = state_of(request)
    check_api_version(request)
    await require_admin(request, state)
    att_type = attestation_type(request.path_params["kind"])
    if state.shadow is None:
        raise ServiceError(
            "shadow evaluation is off: start the service with --shadow-samples N", code=INVALID_OPERATION
        )
    require_media(request, *_JWS_MEDIA)
    body = await read_body(request, state.config.max_body_bytes)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceError("the candidate policy is not UTF-8 text", code="InvalidParameter") from None
    if text.strip().count(".") == 2 and " " not in text.strip():
        try:
            text = policy_text_from_jws(parse_jws(text.strip())) or ""
        except TokenError as exc:
            raise token_error(exc) from None
    return JSONResponse(await run_in_threadpool(_diff, state, att_type, text), media_type=JSON_MEDIA)


def _diff(state: ServiceState, att_type: str, text: str) -> dict[str, Any]:
    """The diff answer (in a worker thread: the stored policy may be read from the store, and compiling
    and evaluating the samples is CPU work)."""
    from affidavit.policy import DEFAULT_POLICIES, Claim, evaluate, explain

    assert state.shadow is not None
    candidate = state.compiler.compile(text)
    stored = state.stored_policy(att_type)
    current_text = stored.text if stored is not None else DEFAULT_POLICIES.get(att_type, "")
    current = state.compiler.compile(current_text)
    flips: list[dict[str, Any]] = []
    counts = {"samples": 0, "flips": 0, "unchanged": 0}
    for sample in state.shadow.samples(att_type):
        counts["samples"] += 1
        before = evaluate(current, [*sample.claims, Claim("x-ms-policy-hash", current.hash)])
        claims = [*sample.claims, Claim("x-ms-policy-hash", candidate.hash)]
        after = evaluate(candidate, claims)
        if before.authorized == after.authorized:
            counts["unchanged"] += 1
            continue
        counts["flips"] += 1
        if len(flips) < MAX_DIFF_FLIPS:
            why = explain(candidate, claims, reveal_policy=True).denial_message(reveal_policy=True)
            flips.append({
                "at": sample.at.isoformat().replace("+00:00", "Z"),
                "current": {"authorized": before.authorized, "reason": before.reason},
                "candidate": {"authorized": after.authorized, "reason": why},
            })
    return {
        "attestationType": att_type,
        "current_hash": current.hash,
        "candidate_hash": candidate.hash,
        **counts,
        "flipped": flips,
    }
