"""MAA's TPM attestation protocol (``POST /attest/Tpm``), without the HTTP.

The exchange (maa-api.md §4, tpm.md §3) is carried in ``{"data": base64url(ASCII JSON)}`` whose JSON is
``{"payload": message}``:

1. init ``{"type": "aikcert"}`` -> ``{"challenge": b64url(16 random bytes), "service_context": opaque}``;
2. ``{"request": JWS}`` -> ``{"report": JWT}``.

The service keeps no state between the two round trips: ``service_context`` is base64url of MAA's outer
shape ``{"ProtectionKeyName": ..., "ProtectedContext": ...}`` where ``ProtectedContext`` is AES-256-GCM
(``nonce || ciphertext``) over ``{"challenge", "exp"}``, with the key name as associated data. The key is
derived by HKDF-SHA256 from a secret of the service (see :func:`derive_context_key`); its name is the first
20 bytes of SHA-256 over the key, upper-case hex, so a context sealed by another server key is recognised
as such and refused. Forged or tampered contexts fail the GCM tag; expired ones fail on ``exp``.

The signed request is a compact JWS (``PS256``/``RS256``, also 384/512; ``typ`` ``attReq`` or
``attReqV2``) over ``{"att_type": "basic", "att_data": {...}}``, signed by the key it carries:
``request_key.jwk`` when present (v2), else ``attest_key`` (v1) -- proof of possession of the key the token
binds in ``cnf``. When ``request_key.info.tpm_quote`` is present the quote's qualifying data must be
``H(UTF8(jwk) || 0x00 || challenge)`` (``H`` from ``hash_alg``, ``jwk`` serialised as compact JSON with
sorted keys); otherwise it must be the challenge itself.

TPM evidence inside ``att_data.tpm_att_data`` is accepted in two shapes:

- v1 (MAA's Windows fields): ``srtm_boot_log`` (b64url TCG log), ``aik_cert``, ``aik_pub``, and
  ``current_claim``, b64url of either

  * Windows' platform claim (``NCryptCreateClaim``, PCPTool's ``PCP_PLATFORM_ATTESTATION_BLOB``):
    little-endian ``{Magic 'SDAP' | '2DAP', Platform (2 = TPM 2.0), HeaderSize, cbPcrValues, cbQuote,
    cbSignature, cbLog[, PcrAlgorithmId ('2DAP')]}``, then the 24 PCR values of one bank (SHA-1 for
    'SDAP'), the TPMS_ATTEST, the bare RSA signature and the (filtered) TCG log, which stands in for
    ``srtm_boot_log`` when that is absent. The signature is RSASSA with the hash of the AK's fixed
    scheme when ``aik_pub`` is a TPM public area, else SHA-1 (what PCPTool's quote requests) -- which
    the verifier refuses: SHA-1 quote signatures are not accepted;
  * or an ASCII JSON text (or the JSON object itself) with MAA v2's field names, Affidavit's own form:
    ``{"quote": b64url TPMS_ATTEST, "signature": b64url TPMT_SIGNATURE,
    "pcrs": [{"algorithm": 11, "values": [{"index": 0, "digest": b64url}, ...]}, ...]}``, banks listed
    in the order of the quote's selection.
- v2: ``current_attestation`` = ``{"logs": [{"type": "TCG", "log": b64url}], "aik_cert", "aik_pub",
  "pcrs", "quote", "signature"}``.

``aik_cert`` is base64(url) DER or PEM text; ``aik_pub`` is a JWK object, or base64(url) of the AK's
TPM2B_PUBLIC / TPMT_PUBLIC (what the Affidavit client sends, so that the verifier can check the AK's
attributes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from affidavit import strict_json
from affidavit.evidence.tpm.request import (  # noqa: F401 -- re-exported: the protocol's evidence
    PCP_MAGIC_V1,
    PCP_MAGIC_V2,
    ClientEvidence,
    extract_evidence,
    json_member,
    parse_pcp_claim,
)
from affidavit.jose import (
    TPM_REQUEST_ALGS,
    JoseError,
    PublicKey,
    b64url,
    canonical_jwk,
    parse_compact,
    public_key_from_jwk,
    verify_signature,
)
from affidavit.jose.jwk import PUBLIC_MEMBERS, public_members
from affidavit.service.decode import b64decode_lenient
from affidavit.service.errors import ServiceError

CHALLENGE_BYTES = 16
CONTEXT_TTL_SECONDS = 300
MAX_BODY_BYTES = 8 * 1024 * 1024
_CONTEXT_INFO = b"affidavit tpm service_context v1"

_BINDING_HASHES = {
    "sha-256": "sha256",
    "sha256": "sha256",
    "sha-384": "sha384",
    "sha384": "sha384",
    "sha-512": "sha512",
    "sha512": "sha512",
    "sha-1": "sha1",
    "sha1": "sha1",
}


class TpmProtocolError(ServiceError):
    """A TPM protocol message is malformed, unauthenticated, stale, or not what the step expects."""

    code = "InvalidParameter"


# ---------------------------------------------------------------------------------------------- encoding


def b64_decode(text: object, what: str) -> bytes:
    """``decode.b64decode_lenient`` (base64url or standard, padded or not), failing as a protocol error."""
    try:
        return b64decode_lenient(text, what)
    except ServiceError as exc:
        raise TpmProtocolError(exc.message) from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        obj = strict_json.loads(raw.decode("utf-8"))
    except (strict_json.DuplicateMember, strict_json.NonFiniteNumber) as exc:
        raise TpmProtocolError(f"{what} is not JSON text: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TpmProtocolError(f"{what} is not JSON text") from None
    if not isinstance(obj, dict):
        raise TpmProtocolError(f"{what} must be a JSON object")
    return obj


def decode_envelope(body: bytes) -> dict[str, Any]:
    """``{"data": b64url(JSON {"payload": message})}`` -> the message object."""
    if len(body) > MAX_BODY_BYTES:
        raise TpmProtocolError("request body too large")
    outer = _json_object(body, "request body")
    inner = _json_object(b64_decode(outer.get("data"), "data"), "data")
    message = inner.get("payload")
    if not isinstance(message, dict):
        raise TpmProtocolError('the protocol message must be {"payload": {...}}')
    return message


def encode_envelope(message: Mapping[str, Any]) -> dict[str, str]:
    """The response body; the inner text is ASCII, as the SDK decodes it with ``.decode("ascii")``."""
    text = json.dumps({"payload": message}, separators=(",", ":"), ensure_ascii=True)
    return {"data": b64url(text.encode("ascii"))}


# --------------------------------------------------------------------------------------- service context


def derive_context_key(secret: bytes) -> bytes:
    """AES-256 key for service contexts, derived so the secret itself is never used as a cipher key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_CONTEXT_INFO).derive(secret)


@dataclass(frozen=True)
class ContextSealer:
    """Seals and opens ``service_context`` values with one AES-256-GCM key."""

    key: bytes

    @property
    def key_name(self) -> str:
        return hashlib.sha256(self.key).digest()[:20].hex().upper()

    def seal(self, challenge: bytes, now: float, ttl: int = CONTEXT_TTL_SECONDS) -> str:
        name = self.key_name
        plain = json.dumps({"challenge": b64url(challenge), "exp": int(now) + ttl}, separators=(",", ":"))
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(self.key).encrypt(nonce, plain.encode("ascii"), name.encode("ascii"))
        outer = {"ProtectionKeyName": name, "ProtectedContext": b64url(sealed)}
        return b64url(json.dumps(outer, separators=(",", ":")).encode("ascii"))

    def open(self, context: object, now: float) -> bytes:
        """The challenge a context carries; raises when forged, tampered, expired or foreign."""
        outer = _json_object(b64_decode(context, "service_context"), "service_context")
        name, sealed_text = outer.get("ProtectionKeyName"), outer.get("ProtectedContext")
        if not isinstance(name, str) or not isinstance(sealed_text, str):
            raise TpmProtocolError("service_context lacks ProtectionKeyName/ProtectedContext")
        if not hmac.compare_digest(name.encode("utf-8", "replace"), self.key_name.encode("ascii")):
            raise TpmProtocolError("service_context was sealed with a key this service does not hold")
        sealed = b64_decode(sealed_text, "ProtectedContext")
        if len(sealed) < 12 + 16:
            raise TpmProtocolError("service_context is truncated")
        try:
            plain = AESGCM(self.key).decrypt(sealed[:12], sealed[12:], name.encode("ascii"))
        except InvalidTag:
            raise TpmProtocolError("service_context is not authentic (forged or tampered)") from None
        inner = _json_object(plain, "service_context")
        exp = inner.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise TpmProtocolError("service_context carries no expiry")
        if now > exp:
            raise TpmProtocolError("service_context has expired; start again with an init message")
        challenge = b64_decode(inner.get("challenge"), "challenge")
        if len(challenge) != CHALLENGE_BYTES:
            raise TpmProtocolError("service_context carries a malformed challenge")
        return challenge


def context_key_name(context: object) -> str | None:
    """The ``ProtectionKeyName`` a context claims (unauthenticated: only to pick the key to try)."""
    try:
        outer = _json_object(b64_decode(context, "service_context"), "service_context")
    except TpmProtocolError:
        return None
    name = outer.get("ProtectionKeyName")
    return name if isinstance(name, str) else None


def challenge_message(sealer: ContextSealer, now: float, ttl: int = CONTEXT_TTL_SECONDS) -> dict[str, str]:
    """The answer to ``{"type": "aikcert"}``."""
    challenge = os.urandom(CHALLENGE_BYTES)
    return {"challenge": b64url(challenge), "service_context": sealer.seal(challenge, now, ttl)}


def check_init(message: Mapping[str, Any]) -> None:
    kind = message.get("type")
    if kind != "aikcert":
        raise TpmProtocolError(f'unsupported init type {kind!r}; the only type is "aikcert"')


# --------------------------------------------------------------------------------------------- JWS / JWK


def jwk_public_key(jwk: object, what: str = "jwk") -> PublicKey:
    """An RSA (2048..8192 bits) or EC (P-256/384/521) public key from a JWK object (``affidavit.jose``)."""
    try:
        return public_key_from_jwk(jwk, what)
    except JoseError as exc:
        raise TpmProtocolError(exc.message) from None


PUBLIC_JWK_MEMBERS = PUBLIC_MEMBERS
public_jwk = public_members


@dataclass(frozen=True)
class SignedRequest:
    """A verified ``attReq`` JWS: its header, the ``att_data`` and the key that signed it."""

    header: dict[str, Any]
    att_type: str
    att_data: dict[str, Any]
    signing_jwk: dict[str, Any]
    request_key: dict[str, Any] | None


def verify_request(message: Mapping[str, Any]) -> SignedRequest:
    """Parse ``{"request": JWS}`` and check the JWS was signed by the key it carries."""
    jws = message.get("request")
    if not isinstance(jws, str):
        raise TpmProtocolError('expected {"request": "<JWS>"} or {"type": "aikcert"}')
    try:
        compact = parse_compact(jws, "request JWS")
        payload = compact.payload_object("request JWS payload")
    except JoseError as exc:
        raise TpmProtocolError(exc.message) from None
    header = compact.header
    alg, typ = header.get("alg"), header.get("typ")
    if alg not in TPM_REQUEST_ALGS:
        expected = " or ".join(sorted(TPM_REQUEST_ALGS))
        raise TpmProtocolError(f"request JWS algorithm {alg!r} is not accepted ({expected} expected)")
    if typ is not None and typ not in ("attReq", "attReqV2", "JWT"):
        raise TpmProtocolError(f"request JWS typ {typ!r} is not attReq")
    if payload is None:
        raise TpmProtocolError("request JWS payload is empty")
    att_type = payload.get("att_type", "basic")
    att_data = payload.get("att_data")
    if att_type == "vbs":
        raise TpmProtocolError("VBS attestation (att_type vbs) is not supported; send att_type basic")
    if att_type != "basic":
        raise TpmProtocolError(f"unknown att_type {att_type!r}")
    if not isinstance(att_data, dict):
        raise TpmProtocolError("att_data must be an object")
    request_key = att_data.get("request_key")
    if request_key is not None:
        request_key = json_member(request_key, "request_key", TpmProtocolError)
        if not isinstance(request_key, dict):
            raise TpmProtocolError("request_key must be an object with a jwk")
        jwk = json_member(request_key.get("jwk"), "request_key.jwk", TpmProtocolError)
    else:
        jwk = json_member(att_data.get("attest_key"), "attest_key", TpmProtocolError)
    if jwk is None:
        raise TpmProtocolError("the request carries neither request_key nor attest_key")
    key = jwk_public_key(jwk, "request key")
    try:
        verify_signature(compact, key, TPM_REQUEST_ALGS)
    except JoseError:
        raise TpmProtocolError(
            f"the request's {alg} signature does not verify with its request key (or does not fit it)"
        ) from None
    assert isinstance(jwk, dict)  # jwk_public_key accepted it
    return SignedRequest(header, att_type, att_data, dict(jwk), request_key)


def expected_qualifying_data(request: SignedRequest, challenge: bytes) -> bytes:
    """What the quote's ``extraData`` must hold: the challenge, or its hash binding to the request key."""
    rk = request.request_key
    info = rk.get("info") if rk else None
    if isinstance(info, dict) and "tpm_quote" in info:
        quote_info = info.get("tpm_quote")
        alg = quote_info.get("hash_alg", "sha-256") if isinstance(quote_info, dict) else None
        name = _BINDING_HASHES.get(str(alg).lower())
        if name is None:
            raise TpmProtocolError(f"request_key.info.tpm_quote.hash_alg {alg!r} is not supported")
        text = canonical_jwk(request.signing_jwk).encode("utf-8")
        return hashlib.new(name, text + b"\x00" + challenge).digest()
    if isinstance(info, dict) and info:
        raise TpmProtocolError("request_key binding other than tpm_quote is not supported")
    return challenge


def checked_key_info(request: SignedRequest) -> dict[str, Any]:
    """The request key's ``info`` as the token may state it: the binding this service checked (the
    ``tpm_quote`` hash), nothing else a client put there (a ``tpm_certify`` would claim a TPM2_Certify
    that was never verified). Call after :func:`expected_qualifying_data` accepted the request."""
    rk = request.request_key
    info = rk.get("info") if rk else None
    if not isinstance(info, dict) or "tpm_quote" not in info:
        return {}
    quote_info = info.get("tpm_quote")
    return {"tpm_quote": {"hash_alg": quote_info.get("hash_alg", "sha-256") if isinstance(quote_info, dict)
                          else None}}


# ------------------------------------------------------------------------------------------ TPM evidence
# The decoders of the evidence inside ``att_data`` live in the evidence layer (``evidence.tpm.request``).


def check_request_challenge(att_data: Mapping[str, Any], challenge: bytes) -> None:
    """A challenge echoed in ``att_data`` (v2) must be the one the context carries."""
    echoed = att_data.get("challenge")
    if echoed is not None and not hmac.compare_digest(b64_decode(echoed, "challenge"), challenge):
        raise TpmProtocolError("att_data.challenge differs from the challenge in service_context")
