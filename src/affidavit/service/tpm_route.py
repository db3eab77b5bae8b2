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

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from affidavit.attestation_types import AttestationType, lookup
from affidavit.evidence.contract import EvidenceInput
from affidavit.service.common import state_of
from affidavit.service.decode import check_api_version, read_body
from affidavit.service.errors import JSON_MEDIA
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
    context_key_name,
    decode_envelope,
    derive_context_key,
    encode_envelope,
    expected_qualifying_data,
    public_jwk,
    verify_request,
)

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


def open_request(
    state: ServiceState, message: Mapping[str, Any], ledger: ChallengeLedger
) -> AttestationInput:
    """Check a signed request (signature, ``rp_data``, the sealed challenge, single use) and turn it into
    the pipeline's input: the ``att_data`` for the TPM verifier, bound to the challenge, and the request's
    own token claims."""
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

    claims: dict[str, Any] = {"ver": "1.0", "cnf": {"jwk": public_jwk(request.signing_jwk)}}
    if request.request_key is not None:
        info = request.request_key.get("info")
        claims["x-ms-tpm-request-key"] = {"jwk": public_jwk(request.signing_jwk),
                                          **({"info": info} if isinstance(info, dict) else {})}
    if rp_data is not None:
        claims["rp_data"] = rp_data
        claims["nonce"] = rp_data
    return AttestationInput(
        evidence=EvidenceInput(b"", document=att_data, nonce=expected_qualifying_data(request, challenge)),
        request_claims=claims,
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
        submitted = await run_in_threadpool(open_request, state, message, _ledger(request))
        answer = {"report": await issue(state, entry or lookup("Tpm"), submitted)}
    else:
        check_init(message)
        answer = await run_in_threadpool(_challenge, state)
    return JSONResponse(encode_envelope(answer), media_type=JSON_MEDIA)
