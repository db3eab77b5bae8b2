"""``POST /attest/Tpm``: MAA's TPM protocol over HTTP (messages in ``affidavit.service.tpm_protocol``).

Keys: the ``service_context`` key is derived (HKDF) from the private key of a token-signing key in the
key ring, so every instance sharing the store can open every other's contexts, a key rotation does not
break a challenge in flight (retired keys still open the contexts they sealed), and no extra secret has to
be kept. A challenge is single-use within this process; across instances only its expiry
(``CONTEXT_TTL_SECONDS``) bounds a replay.

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
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from affidavit.service.common import state_of
from affidavit.service.decode import check_api_version, read_body
from affidavit.service.errors import JSON_MEDIA, POLICY_EVALUATION, ServiceError
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
MAX_TRACKED_CHALLENGES = 100_000


class ChallengeLedger:
    """Challenges already answered in this process, kept until their context would have expired."""

    def __init__(self) -> None:
        self._used: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, challenge: bytes, now: float) -> None:
        with self._lock:
            while self._used and (next(iter(self._used.values())) < now
                                  or len(self._used) >= MAX_TRACKED_CHALLENGES):
                self._used.popitem(last=False)
            if challenge in self._used:
                raise TpmProtocolError("this challenge was already used; start again with an init message")
            self._used[challenge] = now + CONTEXT_TTL_SECONDS


def _sealers(state: ServiceState) -> list[ContextSealer]:
    """One sealer per signing key in the ring, the current key's first."""
    ring = state.keyring()
    keys = [ring.current, *(r.key for r in getattr(ring, "retired", ()))]
    out = []
    for key in keys:
        secret = key.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        out.append(ContextSealer(derive_context_key(secret)))
    return out


def _open_context(state: ServiceState, context: object, now: float) -> bytes:
    """Open with the ring's key the context names; a name no key has fails in the current key's check."""
    sealers = _sealers(state)
    name = context_key_name(context)
    sealer = next((s for s in sealers if s.key_name == name), sealers[0])
    return sealer.open(context, now)


def _ledger(request: Request) -> ChallengeLedger:
    ledger = getattr(request.app.state, "affidavit_tpm_ledger", None)
    if ledger is None:
        ledger = ChallengeLedger()
        request.app.state.affidavit_tpm_ledger = ledger
    return ledger


def _policy_incoming(claims: Mapping[str, Any], evidence: ClientEvidence) -> list[Any]:
    from affidavit.policy import Claim
    from affidavit.service.pipeline import incoming_claim_list

    incoming = incoming_claim_list(claims, {})
    incoming.extend(Claim(name, value, vtype, "CustomClaim") for name, value, vtype in evidence.custom_claims)
    return incoming


def _lifetime_seconds(properties: Mapping[str, Any], ring: Any) -> int:
    from affidavit.policy import PROPERTY_DEFAULTS

    minutes = properties.get("report_validity_in_minutes", PROPERTY_DEFAULTS["report_validity_in_minutes"])
    if isinstance(minutes, list):
        minutes = minutes[-1] if minutes else PROPERTY_DEFAULTS["report_validity_in_minutes"]
    seconds = int(minutes) * 60
    cap = getattr(ring, "max_token_lifetime", None)
    return min(seconds, int(cap.total_seconds())) if cap is not None else seconds


def attest_report(state: ServiceState, message: Mapping[str, Any], ledger: ChallengeLedger) -> str:
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
    ledger.claim(challenge, now.timestamp())
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

    service_claims: dict[str, Any] = {"x-ms-attestation-type": "tpm", **result.claims}
    phash = policy_hash(choice.text)
    extra: dict[str, Any] = {"x-ms-policy-hash": phash}
    if choice.signer_jwk is not None:
        extra["x-ms-policy-signer"] = dict(choice.signer_jwk)
    outcome = evaluate(compiled, _policy_incoming({**service_claims, **extra}, evidence))
    if not outcome.authorized:
        raise ServiceError(f"the attestation policy did not authorize: {outcome.reason}",
                           code=POLICY_EVALUATION)

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


def _handle(state: ServiceState, body: bytes, ledger: ChallengeLedger) -> dict[str, Any]:
    message = decode_envelope(body)
    if "request" in message:
        return {"report": attest_report(state, message, ledger)}
    check_init(message)
    return challenge_message(_sealers(state)[0], state.clock().timestamp())


async def attest_tpm(request: Request) -> Response:
    state = state_of(request)
    check_api_version(request)
    body = await read_body(request, state.config.max_body_bytes)
    answer = await run_in_threadpool(_handle, state, body, _ledger(request))
    if "report" not in answer:
        note(request, outcome="challenge")  # the first round: metrics count it apart from attestations
    return JSONResponse(encode_envelope(answer), media_type=JSON_MEDIA)
