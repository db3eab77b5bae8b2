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

from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from affidavit.attestation_types import AttestationType, lookup
from affidavit.evidence.contract import EvidenceInput
from affidavit.service.common import state_of
from affidavit.service.decode import check_api_version, read_body
from affidavit.service.errors import JSON_MEDIA, ServiceError
from affidavit.service.observe import note
from affidavit.service.pipeline import AttestationInput, issue
from affidavit.service.state import ServiceState
from affidavit.service.tpm_protocol import (
    CONTEXT_TTL_SECONDS,
    ContextSealer,
    SignedRequest,
    TpmProtocolError,
    b64_decode,
    challenge_message,
    check_init,
    check_request_challenge,
    checked_key_info,
    context_key_name,
    decode_envelope,
    derive_context_key,
    encode_envelope,
    expected_qualifying_data,
    public_jwk,
    verify_request,
)

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


def open_request(state: ServiceState, message: Mapping[str, Any]) -> AttestationInput:
    """Check a signed request (signature, ``rp_data``, the sealed challenge) and turn it into the
    pipeline's input: the ``att_data`` for the TPM verifier, bound to the challenge, the request's own
    token claims, and the challenge's spending once the quote verified (``on_verified``)."""
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
    seconds = now.timestamp()

    def spend() -> None:  # both signatures checked (the request JWS, the quote): now it is spent
        consume_challenge(state, challenge, seconds)

    nonce = expected_qualifying_data(request, challenge)
    claims: dict[str, Any] = {"ver": "1.0", "cnf": {"jwk": public_jwk(request.signing_jwk)}}
    if request.request_key is not None:
        info = request.request_key.get("info")
        claims["x-ms-tpm-request-key"] = {"jwk": public_jwk(request.signing_jwk),
                                          **({"info": checked_key_info(request)} if isinstance(info, dict)
                                             else {})}
    if rp_data is not None:
        claims["rp_data"] = rp_data
        claims["nonce"] = rp_data
    return AttestationInput(
        evidence=EvidenceInput(b"", document=att_data, nonce=nonce),
        request_claims=claims,
        on_verified=spend,
    )


def _challenge(state: ServiceState) -> dict[str, Any]:
    return challenge_message(_sealers(state)[0], state.clock().timestamp())


async def attest_tpm(request: Request, entry: AttestationType | None = None) -> Response:
    state = state_of(request)
    check_api_version(request)
    body = await read_body(request, state.config.max_body_bytes)
    message = decode_envelope(body)
    answer: dict[str, Any]
    if "request" in message:
        submitted = await run_in_threadpool(open_request, state, message)
        answer = {"report": await issue(state, entry or lookup("Tpm"), submitted)}
    else:
        check_init(message)
        answer = await run_in_threadpool(_challenge, state)
        note(request, outcome="challenge")  # the first round: metrics count it apart from attestations
    return JSONResponse(encode_envelope(answer), media_type=JSON_MEDIA)
