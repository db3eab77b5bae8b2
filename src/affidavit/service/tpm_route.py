"""``POST /attest/Tpm``: MAA's TPM protocol over HTTP (messages in ``affidavit.service.tpm_protocol``).

Keys: the ``service_context`` key is derived (HKDF) from a random secret of its own, kept in the
database sealed under the key-encryption key like the signing keys (``store.TPM_CONTEXT_SECRET``), so
every instance sharing the store can open every other's contexts, a signing-key rotation does not touch
it, and it does not depend on a private key that may live in an HSM.

Single use: a challenge answers one request across the whole service. The ledger is the store's
``tpm_challenges`` table (``Store.consume_tpm_challenge``), shared by every worker and every server on
the database, keyed by the challenge and kept until its context can no longer be opened
(``CONTEXT_TTL_SECONDS`` plus ``LEDGER_SKEW`` for clocks that differ between servers); rows are dropped
only once expired, so no flood of requests can evict a live one. A challenge is consumed only by a
request whose signatures checked (the request JWS, then the TPM quote over the challenge): a forged
request cannot burn the challenge of a legitimate one, and of two identical valid requests exactly one
gets a report.

AK trust: ``affidavit serve --tpm-aik-root PEM``, ``--tpm-aik-intermediate PEM`` (CA certificates) and
``--tpm-registered-ak PEM`` (AK public keys trusted without a certificate), each repeatable and also
``AFFIDAVIT_TPM_AIK_ROOT`` / ``_AIK_INTERMEDIATE`` / ``_REGISTERED_AK`` (path-separator lists), reach the
app as ``ServiceConfig.extra`` (``tpm_aik_roots``, ``tpm_aik_intermediates``, ``tpm_registered_aks``). A
kind given no file falls back to ``tpm-aik-roots.pem``, ``tpm-aik-intermediates.pem`` or
``tpm-registered-aks.pem`` in the data directory when it exists. ``service.state.tpm_trust`` reads it
once per worker, at start, into the state's long-lived ``TpmVerifier`` (verified AK chains and per-event
results are reused across requests); a change needs a restart. The policy's configuration rules
(``require_valid_aik_cert``, ``required_pcr_mask``) are applied to each verification; the default
(empty) Tpm policy denies until an operator sets one.

The report token carries the TPM's scalar incoming claims (``aikValidated``, ``aikPubHash``,
``tpmVersion``, ``secureBootEnabled``, ...; the large ``events``/``bootEvents``/``pcrs`` JSON only when the
policy issues them), ``x-ms-policy`` (the policy-issued claims, as in MAA's real TPM tokens), ``cnf``
(the request key), ``x-ms-tpm-request-key``, ``rp_data``/``nonce``, ``x-ms-ver``, ``jti``. Its lifetime is
``report_validity_in_minutes`` (MAA's TPM default, one day), capped at the key ring's token lifetime so that
a token never outlives the publication of its signing key.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from affidavit.service.common import state_of
from affidavit.service.decode import check_api_version, read_body
from affidavit.service.errors import JSON_MEDIA, ServiceError
from affidavit.service.observe import note
from affidavit.service.state import ServiceState
from affidavit.service.tpm_protocol import (
    CONTEXT_TTL_SECONDS,
    ClientEvidence,
    ContextSealer,
    SignedRequest,
    TpmProtocolError,
    b64_decode,
    challenge_message,
    check_init,
    check_request_challenge,
    context_key_name,
    decode_envelope,
    derive_context_key,
    encode_envelope,
    expected_qualifying_data,
    extract_evidence,
    public_jwk,
    verify_request,
)

# Claims of verify_tpm's result that are JSON documents for policies, not token claims.
JSON_CLAIMS = frozenset({"events", "bootEvents", "pcrs"})
LEDGER_SKEW = 300  # seconds a used challenge is kept past its context's lifetime: servers' clocks differ


def consume_challenge(state: ServiceState, challenge: bytes, now: float) -> None:
    """Mark ``challenge`` answered in the store's ledger; a second use, anywhere, is refused."""
    expires = int(now) + CONTEXT_TTL_SECONDS + LEDGER_SKEW
    if not state.store.consume_tpm_challenge(challenge, expires_at=expires, now=int(now)):
        raise TpmProtocolError("this challenge was already used; start again with an init message")


def _sealers(state: ServiceState) -> list[ContextSealer]:
    """The sealers this server opens contexts with (the first seals new ones): the database's secret."""
    sealer = getattr(state, "_tpm_sealer", None)
    if sealer is None:
        if not state.context_key:
            raise ServiceError("the TPM service_context secret is not loaded", code="configuration")
        sealer = ContextSealer(derive_context_key(state.context_key))
        state._tpm_sealer = sealer  # type: ignore[attr-defined]
    return [sealer]


def _open_context(state: ServiceState, context: object, now: float) -> bytes:
    """Open with the ring's key the context names; a name no key has fails in the current key's check."""
    sealers = _sealers(state)
    name = context_key_name(context)
    sealer = next((s for s in sealers if s.key_name == name), sealers[0])
    return sealer.open(context, now)


def _policy_incoming(claims: Mapping[str, Any], evidence: ClientEvidence) -> list[Any]:
    from affidavit.service.pipeline import incoming_claim_list

    return incoming_claim_list(claims, {}, custom=evidence.custom_claims)


def _lifetime_seconds(properties: Mapping[str, Any], ring: Any) -> int:
    from affidavit.policy import PROPERTY_DEFAULTS

    minutes = properties.get("report_validity_in_minutes", PROPERTY_DEFAULTS["report_validity_in_minutes"])
    if isinstance(minutes, list):
        minutes = minutes[-1] if minutes else PROPERTY_DEFAULTS["report_validity_in_minutes"]
    seconds = int(minutes) * 60
    cap = getattr(ring, "max_token_lifetime", None)
    return min(seconds, int(cap.total_seconds())) if cap is not None else seconds


def attest_report(state: ServiceState, message: Mapping[str, Any]) -> str:
    """Verify a signed request and return the report token (raises a layer's error otherwise)."""
    from affidavit.evidence.tpm import TpmEvidence
    from affidavit.policy import PROPERTY_DEFAULTS, configuration_properties, evaluate, policy_hash
    from affidavit.service.common import sign
    from affidavit.service.policies import stored_policy_choice

    now = state.clock()
    request: SignedRequest = verify_request(message)
    att_data = request.att_data
    rp_data = att_data.get("rp_data")
    if rp_data is not None and (not isinstance(rp_data, str) or len(rp_data) > 4096):
        raise TpmProtocolError("rp_data must be base64url text of at most 4096 characters")
    if rp_data is not None:
        b64_decode(rp_data, "rp_data")
    challenge = _open_context(state, att_data.get("service_context"), now.timestamp())
    check_request_challenge(att_data, challenge)
    evidence = extract_evidence(att_data)

    choice = stored_policy_choice(state, "Tpm")
    compiled = state.compiler.compile(choice.text)
    config = {**PROPERTY_DEFAULTS, **configuration_properties(compiled)}
    tpm_evidence = TpmEvidence(
        quote=evidence.quote,
        signature=evidence.signature,
        pcrs=evidence.pcr_map(),
        ak_public=evidence.aik_pub if isinstance(evidence.aik_pub, bytes) else _aik_key(evidence),
        ak_certificate=evidence.aik_cert,
        event_log=evidence.event_log,
    )
    with state.tpm_lock:  # the verifier's caches are not thread-safe; requests run in worker threads
        result = state.tpm_verifier.verify(
            tpm_evidence,
            expected_qualifying_data(request, challenge),
            state.evidence_clock(),
            require_valid_aik_cert=bool(config["require_valid_aik_cert"]),
            required_pcr_mask=int(config["required_pcr_mask"]),
        )
    consume_challenge(state, challenge, now.timestamp())  # both signatures checked: now it is spent

    service_claims: dict[str, Any] = {"x-ms-attestation-type": "tpm", **result.claims}
    phash = policy_hash(choice.text)
    extra: dict[str, Any] = {"x-ms-policy-hash": phash}
    if choice.signer_jwk is not None:
        extra["x-ms-policy-signer"] = dict(choice.signer_jwk)
    incoming = _policy_incoming({**service_claims, **extra}, evidence)
    if state.shadow is not None:
        state.shadow.record("Tpm", now, incoming)
    outcome = evaluate(compiled, incoming)
    if not outcome.authorized:
        from affidavit.service.pipeline import denial_error

        raise denial_error(compiled, incoming)

    iat = int(now.timestamp())
    token: dict[str, Any] = {k: v for k, v in service_claims.items() if k not in JSON_CLAIMS}
    token.update(extra)
    token.update({
        "x-ms-ver": "1.0",
        "ver": "1.0",
        "x-ms-policy": dict(outcome.claims),
        "cnf": {"jwk": public_jwk(request.signing_jwk)},
        "jti": secrets.token_hex(32),
        "iss": state.issuer,
        "iat": iat,
        "nbf": iat,
        "exp": iat + _lifetime_seconds({**config, **outcome.properties}, state.keyring()),
    })
    if request.request_key is not None:
        token["x-ms-tpm-request-key"] = {"jwk": public_jwk(request.signing_jwk),
                                         **({"info": request.request_key["info"]}
                                            if isinstance(request.request_key.get("info"), dict) else {})}
    if rp_data is not None:
        token["rp_data"] = rp_data
        token["nonce"] = rp_data
    return sign(state, token)


def _aik_key(evidence: ClientEvidence) -> Any:
    """MAA's ``aik_pub`` JWK as a public key (None when absent: the certificate's key is used)."""
    from affidavit.service.tpm_protocol import jwk_public_key

    return None if evidence.aik_pub is None else jwk_public_key(evidence.aik_pub, "aik_pub")


def _handle(state: ServiceState, body: bytes) -> dict[str, Any]:
    message = decode_envelope(body)
    if "request" in message:
        return {"report": attest_report(state, message)}
    check_init(message)
    return challenge_message(_sealers(state)[0], state.clock().timestamp())


async def attest_tpm(request: Request) -> Response:
    state = state_of(request)
    check_api_version(request)
    body = await read_body(request, state.config.max_body_bytes)
    answer = await run_in_threadpool(_handle, state, body)
    if "report" not in answer:
        note(request, outcome="challenge")  # the first round: metrics count it apart from attestations
    return JSONResponse(encode_envelope(answer), media_type=JSON_MEDIA)
