"""Compact JWS (RFC 7515): one parser, one signature check with an algorithm allow-list per use.

Uses and their allow-lists:
- :data:`TOKEN_ALGS`: attestation tokens a relying party verifies by default: what the issuers sign
  (Affidavit RS256 or ES256, MAA RS256); a caller may widen it for its own issuer;
- :data:`TPM_REQUEST_ALGS`: the TPM protocol's ``attReq`` signed by the request key: PS256 as MAA
  documents it, and RS256 (which ``affidavit.client.tpm`` can send);
- :data:`POLICY_ALGS`: policy-management JWS. MAA's SDK writes ``"alg": "RSA256"`` for RS256 and puts the
  signer under ``jwk.x5c``: that non-standard shape is handled at its edge, ``tokens.jws``.

``alg: none`` is never on a list: callers that accept unsecured JWS (draft-policy results, unsigned
policies) check for it themselves, before calling :func:`verify_signature`. A ``crit`` header is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from affidavit.jose.b64 import b64url, b64url_decode
from affidavit.jose.errors import JoseError
from affidavit.jose.jwk import check_key
from affidavit.jose.strict_json import loads_object
from affidavit.jose.verify import ALGORITHMS, ES_CURVES, HASHES, signature_ok

TOKEN_ALGS = frozenset({"RS256", "ES256"})
TPM_REQUEST_ALGS = frozenset({"PS256", "RS256"})
POLICY_ALGS = frozenset({"RS256"})
_WS = " \t\r\n"


@dataclass(frozen=True)
class CompactJws:
    """A parsed, not yet verified, compact JWS."""

    text: str
    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    def payload_object(self, what: str = "JWS payload") -> dict[str, Any] | None:
        """The payload as a strict JSON object; None when the payload segment is empty."""
        return loads_object(self.payload, what) if self.payload else None


def parse_compact(text: str | bytes, what: str = "JWS") -> CompactJws:
    """Split and decode a compact JWS (surrounding whitespace ignored); the header must be a JSON object
    with a non-empty string ``alg``. Nothing is verified yet."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise JoseError(f"{what} is not ASCII", code="malformed_jws") from None
    if not isinstance(text, str):
        raise JoseError(f"{what} must be text", code="malformed_jws")
    text = text.strip(_WS)
    parts = text.split(".")
    if len(parts) != 3:
        raise JoseError(f"{what} must have 3 segments, not {len(parts)}", code="malformed_jws")
    head_b64, body_b64, sig_b64 = parts
    header = loads_object(b64url_decode(head_b64, what=f"{what} header"), f"{what} header")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise JoseError(f"{what} header has no alg", code="malformed_jws")
    payload = b64url_decode(body_b64, what=f"{what} payload")
    signature = b64url_decode(sig_b64, what=f"{what} signature")
    return CompactJws(text, header, payload, f"{head_b64}.{body_b64}".encode("ascii"), signature)


def verify_signature(
    jws: CompactJws, key: object, allowed: frozenset[str], *, alg: str | None = None
) -> None:
    """Raise unless ``jws`` is signed by ``key`` with an algorithm in ``allowed`` (``alg`` overrides the
    header's, for an edge that maps a non-standard name) and ``key`` meets the key policy."""
    if "crit" in jws.header:
        raise JoseError("JWS critical header parameters are not supported", code="unsupported_alg")
    alg = alg or jws.alg
    if alg not in allowed:
        raise JoseError(f"JWS alg {alg!r} is not accepted here ({', '.join(sorted(allowed))})",
                        code="unsupported_alg")
    check_key(key, "JWS signing key")
    if not signature_ok(alg, key, jws.signing_input, jws.signature):
        raise JoseError(f"JWS {alg} signature does not verify (or does not fit the key)",
                        code="bad_signature")


def sign_compact(
    header: Mapping[str, Any], payload: bytes, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
) -> str:
    """A compact JWS over ``payload`` with ``header["alg"]`` (RS*/PS* with salt = hash length, ES* on the
    alg's curve)."""
    alg = str(header.get("alg"))
    if alg not in ALGORITHMS:
        raise JoseError(f"cannot sign with alg {alg!r}", code="unsupported_alg")
    head = b64url(json.dumps(dict(header), separators=(",", ":")).encode("utf-8"))
    signing_input = f"{head}.{b64url(payload)}".encode("ascii")
    family, hash_alg = alg[:2], HASHES[alg[2:]]()
    if family == "ES" and isinstance(key, ec.EllipticCurvePrivateKey):
        if type(key.curve) is not ES_CURVES[alg[2:]]:
            raise JoseError(f"alg {alg} does not fit a {key.curve.name} key", code="unsupported_alg")
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hash_alg)))
        size = (key.curve.key_size + 7) // 8
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    elif family in ("RS", "PS") and isinstance(key, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=padding.PSS.DIGEST_LENGTH)
            if family == "PS" else padding.PKCS1v15()
        )
        signature = key.sign(signing_input, pad, hash_alg)
    else:
        raise JoseError(f"alg {alg} does not fit the key", code="unsupported_alg")
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"


__all__ = [
    "POLICY_ALGS",
    "TOKEN_ALGS",
    "TPM_REQUEST_ALGS",
    "CompactJws",
    "parse_compact",
    "sign_compact",
    "verify_signature",
]
